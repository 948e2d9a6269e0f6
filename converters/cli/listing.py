"""`tflstm-convert list`: keys and shapes only; imports neither TensorFlow nor
Keras (an import-linter contract)."""

from __future__ import annotations

import argparse

from converters.cli._common import (
    BATCH_FIRST_NOTE,
    EXIT_OK,
    NONLINEARITY_NOTE,
    CliError,
    existing,
    no_recurrent,
    pickles,
    recorded_settings,
)


def run_list(args: argparse.Namespace) -> int:
    from converters.checkpoint import open_checkpoint
    from converters.discover import find_recurrent, normalize_prefix

    path = existing(args.checkpoint)
    with pickles(args):
        checkpoint = open_checkpoint(path, trust_pickle=args.trust_pickle)
        infos = checkpoint.infos()
        specs = find_recurrent(infos)
        if not specs:
            raise CliError(no_recurrent(args.checkpoint, infos))
        unrecorded = rnn_unrecorded = False
        for spec in specs:
            prefix = normalize_prefix(spec.prefix)
            n = sum(infos[prefix + k].size for k in spec.param_shapes())
            line = f"{spec.describe()}  [{n:,} parameters]"
            module = checkpoint.submodule(prefix)
            if not spec.is_cell:
                if hasattr(module, "batch_first"):
                    line += f"  recorded: {recorded_settings(module)}"
                else:
                    unrecorded = True
            elif hasattr(module, "nonlinearity"):
                line += f"  recorded: nonlinearity={module.nonlinearity!r}"
            if spec.cell.nonlinearities and not hasattr(module, "nonlinearity"):
                rnn_unrecorded = True
            print(line)
    if unrecorded:
        print(f"note: {BATCH_FIRST_NOTE}")
    if rnn_unrecorded:
        print(f"note: {NONLINEARITY_NOTE}")
    return EXIT_OK
