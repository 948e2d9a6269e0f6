"""What the commands share: the usage error, exit codes, notes, input files
and the options of several commands."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USAGE = 0, 1, 2


CHECKPOINT_HELP = (
    "a torch.save file of any name (.pt, .pth, .bin, .pth.tar, none), "
    ".safetensors, .npz, or a sharded checkpoint's index JSON or folder"
)


BATCH_FIRST_NOTE = (
    "a state_dict does not record batch_first: pass --batch-first to convert "
    "if the model was built with batch_first=True (input (N, L, H_in))"
)


NONLINEARITY_NOTE = (
    "a state_dict does not record an nn.RNN's nonlinearity: tanh is assumed; "
    "pass --nonlinearity relu to convert if the model was built with "
    "nonlinearity='relu'"
)


def nonlinearity_note(layer: Any, recorded: Any) -> str | None:
    """What to say of an RNN's nonlinearity (None for other cells)."""
    if not layer.cell.spec.nonlinearities:
        return None
    if hasattr(recorded, "nonlinearity"):
        return f"nonlinearity={layer.nonlinearity!r}, as the pickled model records it"
    return f"built with nonlinearity={layer.nonlinearity!r}; {NONLINEARITY_NOTE}"


class CliError(Exception):
    """A problem with the user's input: printed without a traceback, exit 2."""


def add_trust_pickle(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load torch files that hold other objects than tensors, e.g. a "
        "whole model written by torch.save(model), whose classes must be "
        "importable (the current folder is searched). Unpickling runs any code "
        "the file names: only for files you trust",
    )


def add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verify",
        action="store_true",
        help="run torch (float64, the reference, and float32) and the written "
        "model on the same input and judge each output's error as tflstm's "
        "tests do (at most 4x torch's own float32 error, with a floor of 4 "
        "ulps of the tensor's magnitude); exit 1 above it",
    )
    p.add_argument(
        "--inputs",
        metavar="FILE",
        help="with --verify: a .npy or .npz file of your own inputs, laid out "
        "as the layer's input (each array one input, or a stack of them one "
        "dimension up). Default: a random standard-normal input",
    )
    p.add_argument(
        "--atol",
        type=float,
        help="with --verify: judge by a fixed tolerance on the max abs error "
        "instead of the rule above (added to --rtol's)",
    )
    p.add_argument(
        "--rtol",
        type=float,
        help="with --verify: judge by a tolerance relative to each tensor's "
        "largest magnitude instead of the rule above",
    )


def existing(path: str) -> Path:
    if not os.path.exists(path):
        raise CliError(f"no such file: {path!r}")
    return Path(path)


@contextlib.contextmanager
def pickles(args: argparse.Namespace) -> Iterator[None]:
    """With --trust-pickle: one warning on stderr, before anything is loaded."""
    from converters.checkpoint import UnsafePickleWarning

    if args.trust_pickle:
        # As `python -c` would: a whole model's classes may live in the
        # current folder, and the unpickler imports them by name.
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        print(
            f"tflstm-convert {args.command}: warning: --trust-pickle: torch files "
            "are unpickled without weights_only, which runs any code they name; "
            "use it only for files you trust",
            file=sys.stderr,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafePickleWarning)
        yield


def no_recurrent(checkpoint: str, infos: dict) -> str:
    found = (
        "no parameters of an nn.LSTM, nn.GRU, nn.RNN or their cells found in "
        f"{checkpoint!r}"
    )
    if not infos:
        return f"{found}: it holds no tensors"
    shown = [f"{key} {tuple(info.shape)}" for key, info in list(infos.items())[:5]]
    more = f", ... ({len(infos) - 5} more)" if len(infos) > 5 else ""
    return f"{found}: it holds {len(infos)} tensors: {', '.join(shown)}{more}"


def load_arrays(path: str, option: str) -> list:
    """The arrays of the .npy/.npz file that `option` names."""
    import numpy as np

    suffix = Path(path).suffix
    if suffix not in (".npy", ".npz"):
        raise CliError(
            f"expected {option} to be a .npy or .npz file. Received: {path!r}"
        )
    try:
        loaded = np.load(existing(path), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path!r} as {suffix}: {e}") from e
    arrays = [loaded] if suffix == ".npy" else [loaded[k] for k in loaded.files]
    if not arrays:
        raise CliError(f"expected at least one array in {path!r}. Received: none")
    return arrays


def split_inputs(
    arrays: list, path: str, *, cell: bool, input_size: int, batch_first: bool
) -> list:
    """Each array as inputs of the layer: one input, or a stack of them."""
    import numpy as np

    one = 2 if cell else 3
    if cell:
        layout = "(N, H_in)"
    else:
        layout = "(N, L, H_in)" if batch_first else "(L, N, H_in)"
    inputs = []
    for array in arrays:
        if (
            array.ndim not in (one, one + 1)
            or array.shape[-1] != input_size
            or 0 in array.shape
        ):
            raise CliError(
                f"expected the arrays of {path!r} to be inputs {layout} with "
                f"H_in={input_size} ({one}-D: one input; {one + 1}-D: a stack "
                f"of them). Received: an array of shape {array.shape}"
            )
        if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
            raise CliError(
                f"expected the arrays of {path!r} to hold finite numbers. "
                f"Received: an array of dtype {array.dtype} with other values"
            )
        inputs += [array] if array.ndim == one else list(array)
    return inputs


def batches(inputs: list, path: str, batch_axis: int, batch_size: int) -> list:
    """`inputs` cut into batches of `batch_size` (a model's static batch)."""
    import numpy as np

    batches = []
    for x in inputs:
        if x.shape[batch_axis] % batch_size:
            raise CliError(
                f"expected the inputs of {path!r} to have a batch size that is a "
                f"multiple of --batch-size {batch_size}. Received: an input of "
                f"shape {x.shape}"
            )
        batches += np.split(x, x.shape[batch_axis] // batch_size, axis=batch_axis)
    return batches


def check_verify_options(args: argparse.Namespace) -> None:
    for option in ("inputs", "atol", "rtol"):
        if getattr(args, option) is not None and not args.verify:
            raise CliError(f"--{option} applies to --verify")
    for option in ("atol", "rtol"):
        value = getattr(args, option)
        if value is not None and not value >= 0:
            raise CliError(
                f"expected --{option} to be a number >= 0. Received: {value}"
            )


def torch_args(layer) -> str:
    from converters import torch_config

    return "(" + ", ".join(f"{k}={v}" for k, v in torch_config(layer).items()) + ")"


def recorded_settings(module: Any) -> str:
    """What a whole pickled model records of an nn.LSTM (nn.GRU, nn.RNN) and
    a state_dict does not."""
    settings = (
        f"batch_first={bool(module.batch_first)}, dropout={float(module.dropout)}"
    )
    if hasattr(module, "nonlinearity"):
        settings += f", nonlinearity={module.nonlinearity!r}"
    return settings
