"""`tflstm-convert convert`: one recurrent module of a checkpoint to a .keras file, a
SavedModel or a .tflite model, and `--verify`."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from typing import Any

from _tflstm.extras import require
from converters.cli._common import (
    BATCH_FIRST_NOTE,
    EXIT_OK,
    CliError,
    batches,
    check_verify_options,
    existing,
    load_arrays,
    no_recurrent,
    nonlinearity_note,
    pickles,
    recorded_settings,
    split_inputs,
    torch_args,
)
from converters.cli.judge import judge, reload
from converters.cli.outputs import make_parent, model_format


def _choose(checkpoint: Any, args: argparse.Namespace) -> tuple[str, Any]:
    """The prefix (normalized) and spec of the module to convert: --prefix's,
    or the only one in the file. Reads keys and shapes only."""
    from converters.discover import find_recurrent, infer_spec, normalize_prefix, select

    infos = checkpoint.infos()
    if args.prefix is not None:
        prefix = normalize_prefix(args.prefix)
        return prefix, infer_spec(select(infos, prefix), prefix)
    specs = find_recurrent(infos)
    if not specs:
        raise CliError(no_recurrent(args.checkpoint, infos))
    if len(specs) > 1:
        found = ", ".join(s.prefix for s in specs)
        raise CliError(
            f"{args.checkpoint!r} holds {len(specs)} recurrent modules; choose "
            "one with "
            f"--prefix. Prefixes: {found}"
        )
    return normalize_prefix(specs[0].prefix), specs[0]


def _check_convert_options(args: argparse.Namespace, fmt: str) -> None:
    if args.sequence_lengths and fmt == "keras":
        raise CliError(
            "--sequence-lengths applies to --format savedmodel or tflite (a "
            ".keras layer takes sequence_lengths= at call time)"
        )
    if args.quantize and fmt != "tflite":
        raise CliError("--quantize applies to --format tflite")
    if args.representative_data and args.quantize not in ("dynamic", "int8"):
        raise CliError(
            "--representative-data applies to --quantize int8 or dynamic (int8 "
            "calibrates the activations' ranges on it, both check the cell "
            "state's range on it, and --verify runs on it)"
        )
    check_verify_options(args)


def run_convert(args: argparse.Namespace) -> int:
    fmt = model_format(args.output, args.format)
    _check_convert_options(args, fmt)
    data = inputs = None
    if args.representative_data:
        data = load_arrays(args.representative_data, "--representative-data")
    if args.inputs:
        inputs = load_arrays(args.inputs, "--inputs")
    if args.verify:  # before any work: what --verify needs is installed
        require("torch", extra="torch", purpose="--verify")
        if fmt == "tflite":
            require("ai_edge_litert", extra="litert", purpose="--verify of a .tflite")
    path = existing(args.checkpoint)

    from converters.checkpoint import open_checkpoint

    with pickles(args):
        checkpoint = open_checkpoint(path, trust_pickle=args.trust_pickle)
        prefix, spec = _choose(checkpoint, args)
        recorded = checkpoint.submodule(prefix)
        data, inputs = _laid_out(args, fmt, spec, recorded, data, inputs)
        make_parent(args.output)

        import converters

        layer = converters.from_torch(
            path,
            prefix=prefix,
            batch_first=args.batch_first or None,
            nonlinearity=args.nonlinearity,
            dtype=args.dtype,
            trust_pickle=args.trust_pickle,
        )
        params = None
        if args.verify:  # torch runs the checkpoint's own weights
            params = converters.load_checkpoint(
                path, prefix=prefix, trust_pickle=args.trust_pickle
            )
    if args.quantize == "int8" and data is None:
        data = _random_calibration(layer, args)
    # "dynamic" checks the cell state's range on the data, or on --inputs.
    checked = inputs if data is None and args.quantize == "dynamic" else data
    reasons = _write(layer, args, fmt, checked)
    _print_notes(layer, args, fmt, recorded)
    if not args.verify:
        return EXIT_OK
    module = converters.torch_module_from(
        params,
        prefix,
        batch_first=getattr(layer, "batch_first", False),
        nonlinearity=getattr(layer, "nonlinearity", None),
    )
    runs = _verification_runs(layer, args, inputs, data)
    atol, rtol, absent = _tolerance(args)
    why = _why(layer, args, [x for x, _ in runs], reasons)
    served = reload(args.output, fmt, layer)  # the written file, not the layer
    return judge(served, module, runs, atol, rtol, absent=absent, why=why)


def _laid_out(
    args: argparse.Namespace,
    fmt: str,
    spec: Any,
    recorded: Any,
    data: list | None,
    inputs: list | None,
) -> tuple[list | None, list | None]:
    """The --representative-data and --inputs arrays as the layer's inputs,
    checked against its configuration before any work; --inputs of a .tflite
    model cut into its batch size."""
    cell = spec.is_cell
    if cell and (args.sequence_lengths or args.quantize == "int8"):
        option = "--sequence-lengths" if args.sequence_lengths else "--quantize int8"
        raise CliError(f"{option} needs an nn.{spec.cell.layer}, not an nn.{spec.kind}")
    if args.quantize == "int8" and spec.kind != "LSTM":
        raise CliError(
            "--quantize int8 needs an nn.LSTM (TFLite's fused LSTM op), not an "
            f"nn.{spec.kind}: use --quantize dynamic or float16"
        )
    batch_first = args.batch_first or bool(getattr(recorded, "batch_first", False))
    shape = dict(cell=cell, input_size=spec.input_size, batch_first=batch_first)
    if data is not None:
        data = split_inputs(data, args.representative_data, **shape)
    if inputs is not None:
        inputs = split_inputs(inputs, args.inputs, **shape)
        if fmt == "tflite":
            axis = 0 if cell or batch_first else 1
            inputs = batches(inputs, args.inputs, axis, args.batch_size)
    return data, inputs


def _random_calibration(layer: Any, args: argparse.Namespace) -> list:
    """int8 without --representative-data: random inputs, and a warning."""
    import converters

    print(
        f"tflstm-convert {args.command}: WARNING: --quantize int8 without "
        "--representative-data: calibrating on random standard-normal "
        "inputs. The int8 model's activation ranges then fit those, not "
        "your data, and inputs of another scale or sign can lose most of "
        "their precision. Pass --representative-data with a few batches "
        "of real inputs (.npy/.npz).",
        file=sys.stderr,
    )
    return [
        converters.random_input(layer, steps=50, batch=args.batch_size, seed=s)
        for s in range(1, 9)
    ]


def _print_notes(layer: Any, args: argparse.Namespace, fmt: str, recorded: Any) -> None:
    """What was written, and what the user must know to use it."""
    from tflstm._recurrent import RecurrentLayer

    print(f"wrote {args.output}: {layer.__class__.__name__}{torch_args(layer)}")
    said = False  # the pickled model's settings, the nonlinearity included
    if isinstance(layer, RecurrentLayer):
        said = hasattr(recorded, "batch_first")
        if said:
            settings = recorded_settings(recorded)
            print(f"note: {settings}, as the pickled model records them")
        else:
            print(f"note: {BATCH_FIRST_NOTE}")
    note = nonlinearity_note(layer, recorded)
    if note is not None and not said:
        print(f"note: {note}")
    if fmt == "keras":
        print(
            "note: load it with `import tflstm` first (which registers the "
            f"layer with Keras), then keras.saving.load_model({args.output!r})"
        )


def _verification_runs(
    layer: Any, args: argparse.Namespace, inputs: list | None, data: list | None
) -> list[tuple[Any, Any]]:
    """(input, lengths) pairs to verify on: --inputs, the first input of the
    quantization data, or a random input; random lengths with
    --sequence-lengths. Says which."""
    import numpy as np

    import converters
    from tflstm._cell_layer import CellLayer

    cell = isinstance(layer, CellLayer)
    if inputs is not None:
        source = f"{len(inputs)} input(s) of {args.inputs}"
    elif data is not None:  # quantized: on inputs like those it was calibrated on
        batch_axis = 0 if cell or layer.batch_first else 1
        inputs = [np.take(data[0], range(args.batch_size), axis=batch_axis)]
        named = args.representative_data or "the random calibration inputs"
        source = f"the first input of {named}"
    else:
        inputs = [converters.random_input(layer, batch=args.batch_size)]
        source = (
            f"a random input, {converters.verify.RANDOM_INPUT} (pass --inputs "
            "FILE.npy|.npz to verify on your own)"
        )
    print(f"verifying on {source}: shape {inputs[0].shape}")
    if not args.sequence_lengths:
        return [(x, None) for x in inputs]
    time_axis = 1 if layer.batch_first else 0
    runs = [
        (
            x,
            converters.random_lengths(
                x.shape[time_axis], x.shape[1 - time_axis], seed=i
            ),
        )
        for i, x in enumerate(inputs)
    ]
    more = " (random for each input)" if len(runs) > 1 else ""
    print(f"sequence_lengths: {runs[0][1].tolist()}{more}")
    return runs


def _tolerance(
    args: argparse.Namespace,
) -> tuple[float | None, float | None, tuple[str, ...]]:
    """--atol/--rtol, else a quantized mode's tolerance (None: the float32
    rule), and the outputs the model does not produce; says which."""
    atol, rtol = args.atol, args.rtol
    absent: tuple[str, ...] = ()
    if args.quantize:
        from tflstm.tflite import QUANTIZED_RTOL

        if atol is None and rtol is None:
            rtol = QUANTIZED_RTOL[args.quantize]
            print(
                f"quantize={args.quantize}: tolerance {rtol:.0e} of each "
                "tensor's largest magnitude (max rel)"
            )
        if args.quantize == "int8" and args.sequence_lengths:
            absent = ("c_n",)
            print(
                "c_n: not produced by an int8 model with sequence lengths "
                "(see tflstm.tflite)"
            )
    return atol, rtol, absent


def _why(
    layer: Any, args: argparse.Namespace, inputs: list, reasons: list[str]
) -> Callable[[], list[str]]:
    """Why a quantized model failed --verify (asked only if it did): what the
    export warned, else what the verified inputs show, else the general cause."""

    def why() -> list[str]:
        if not args.quantize:
            return []
        from tflstm.tflite import quantization_risks

        found = quantization_risks(
            layer, args.quantize, inputs, source="the verified inputs"
        )
        return (
            reasons
            or found
            or [
                f"quantize={args.quantize!r} rounds the weights (and, but for "
                "float16, the activations) to fewer bits, which on these inputs "
                "costs more than the tolerance (over a sequence, the errors also "
                "add up over the steps that the cell state remembers); no "
                "heavy-tailed weights or large cell state were found. Compare "
                "the modes on your own inputs (--inputs): --quantize float16 "
                "keeps float32 math at about half the float size"
            ]
        )

    return why


def _write(layer: Any, args: argparse.Namespace, fmt: str, data: Any) -> list[str]:
    """Writes the output; returns why a quantized model may miss its
    tolerance, as `export_tflite` warned (also printed as warnings)."""
    import converters
    from tflstm._cell_layer import CellLayer

    if fmt == "savedmodel":
        from tflstm.export import export_saved_model

        export_saved_model(layer, args.output, sequence_lengths=args.sequence_lengths)
        return []
    if fmt == "keras":  # batch-major at the model's boundary, for predict/fit
        converters.keras_model(layer).save(args.output)
        return []
    from tflstm.tflite import QuantizationWarning, export_tflite

    with warnings.catch_warnings(record=True) as caught:  # export_tflite is quiet
        warnings.simplefilter("always", QuantizationWarning)
        export_tflite(
            layer,
            args.output,
            batch_size=args.batch_size,
            sequence_lengths=args.sequence_lengths,
            quantize=args.quantize,
            # int8 calibrates on it; both 8-bit modes check the cell state's
            # range on it (a cell runs one step: no range to check).
            representative_data=None if isinstance(layer, CellLayer) else data,
        )
    reasons = []
    for warning in caught:
        if issubclass(warning.category, QuantizationWarning):
            reasons.append(str(warning.message))
            print(
                f"tflstm-convert {args.command}: warning: {warning.message}",
                file=sys.stderr,
            )
        else:  # not ours to judge: as it would have been shown
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return reasons
