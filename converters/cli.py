"""`tflstm-convert`: list, convert and verify the LSTMs of PyTorch checkpoints.

Exit codes: 0 success; 1 a `--verify` error above tolerance; 2 bad usage or
input (a missing file, an unreadable checkpoint, a prefix that matches nothing,
a missing optional dependency).

`list` reads only keys and shapes and imports neither TensorFlow nor Keras;
`convert` and `to-torch` import TensorFlow without its start-up log lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _tflstm import __version__
from _tflstm.extras import require

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USAGE = 0, 1, 2

CHECKPOINT_HELP = (
    "a torch.save file of any name (.pt, .pth, .bin, .pth.tar, none), "
    ".safetensors, .npz, or a sharded checkpoint's index JSON or folder"
)

BATCH_FIRST_NOTE = (
    "a state_dict does not record batch_first: pass --batch-first to convert "
    "if the model was built with batch_first=True (input (N, L, H_in))"
)

# What each format of `convert` writes, and the name that says so.
MODEL_FORMATS = {
    "keras": "a .keras file",
    "savedmodel": "a SavedModel folder (a name without a suffix)",
    "tflite": "a .tflite file",
}
MODEL_SUFFIXES = {".keras": "keras", ".tflite": "tflite"}
# What `to-torch` writes (`converters.save_state_dict`), by suffix.
STATE_DICT_SUFFIXES = {
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".ckpt": "torch",
    ".safetensors": "safetensors",
    ".npz": "npz",
}

EPILOG = """formats written by convert (from the output's name, or --format):
  keras       NAME.keras: a .keras model, input -> (output, h_n, c_n); load
              it with `import tflstm` then keras.saving.load_model(path)
  savedmodel  NAME (a folder): a TensorFlow SavedModel for TF Serving (no
              tflstm needed to serve)
  tflite      NAME.tflite: a .tflite model for LiteRT (builtin ops only);
              --quantize dynamic (int8 weights) or int8 (full integer)

--verify runs torch in float64 (the reference) and in float32, and the
written model, on the same input, and judges each output as tflstm's tests
do: its error may be at most 4x torch's own float32 error (with a floor of
4 ulps of the tensor's largest magnitude), so states of any magnitude pass
when the port is as exact as torch. --atol/--rtol replace that rule.

examples:
  tflstm-convert list model.pt
  tflstm-convert convert model.pt encoder.keras --prefix encoder.rnn --verify
  tflstm-convert convert model.pt encoder.tflite --prefix encoder.rnn \\
      --verify --inputs features.npy
  tflstm-convert convert model.pt encoder.tflite --prefix encoder.rnn \\
      --quantize int8 --representative-data features.npy --verify
  tflstm-convert to-torch encoder.keras encoder_lstm.safetensors --verify
"""


class CliError(Exception):
    """A problem with the user's input: printed without a traceback, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflstm-convert",
        description="Port the LSTMs of PyTorch checkpoints to TensorFlow/Keras "
        "(tflstm) as .keras, SavedModel or TFLite models, and back, with the "
        "same numbers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "list",
        help="list the nn.LSTM/nn.LSTMCell modules in a checkpoint",
        description="List every nn.LSTM and nn.LSTMCell in a checkpoint, with "
        "its prefix (as --prefix takes it) and inferred configuration. Reads "
        "only keys and shapes.",
    )
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    _add_trust_pickle(p)

    p = sub.add_parser(
        "convert",
        help="convert one LSTM of a checkpoint to a .keras file, a SavedModel "
        "or a .tflite model",
        description="Convert the LSTM (or LSTMCell) at --prefix to a tflstm "
        "layer and save it as a .keras model (input -> (output, (h_n, c_n))), "
        "a SavedModel (TF Serving) or a .tflite model (LiteRT).",
    )
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument(
        "output",
        help="what to write: NAME.keras, NAME.tflite, or a SavedModel folder "
        "(a name without a suffix); a missing parent folder is created",
    )
    p.add_argument(
        "--format",
        choices=list(MODEL_FORMATS),
        help="keras: a .keras model; savedmodel: a TensorFlow SavedModel for "
        "TF Serving, signatures serving_default (input) and with_state (input, "
        "h_0, c_0); tflite: a .tflite model for LiteRT (builtin ops only, "
        "states as inputs and outputs). Default: from the output's name; a "
        "--format that contradicts the name is an error",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="with --format tflite: the batch size the model is built for (default: 1)",
    )
    p.add_argument(
        "--sequence-lengths",
        action="store_true",
        help="with --format savedmodel or tflite: the model also takes an int32 "
        "input sequence_lengths (N,), PyTorch's packed-sequence semantics for "
        "right-padded batches",
    )
    p.add_argument(
        "--quantize",
        choices=["dynamic", "int8", "float16"],
        help="with --format tflite: dynamic: int8 weights, float activations "
        "(about 0.26x the size); int8: full integer with a 16-bit cell state, "
        "calibrated on --representative-data (about 0.27x); float16: float16 "
        "weights, float32 math (about 0.5x), for models whose long memory or "
        "heavy-tailed weights 8 bits do not serve (the export warns). --verify "
        "then checks the error relative to each tensor's largest magnitude "
        "against the mode's tolerance (2%% dynamic, 5%% int8, 1%% float16), "
        "which it prints; the README's accuracy table says what holds on "
        "real checkpoints",
    )
    p.add_argument(
        "--representative-data",
        metavar="FILE",
        help="with --quantize: a .npy or .npz file of real inputs laid out as "
        "the layer's input: each 3-D array is one input, a 4-D array a stack "
        "of them; their batch size a multiple of --batch-size. int8 calibrates "
        "on them (without them, on random inputs, with a warning); --verify "
        "runs on the first of them unless --inputs is given",
    )
    p.add_argument(
        "--prefix",
        help="the LSTM's prefix in the checkpoint, as `list` prints it, e.g. "
        "encoder.rnn (default: the only LSTM in the file)",
    )
    p.add_argument(
        "--batch-first",
        action="store_true",
        help="build with batch_first=True; a state_dict does not record it, so "
        "it must match how the model was used (default: False, or what a whole "
        "pickled model records)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="layer dtype (default: float64 for float64 weights, else float32)",
    )
    _add_trust_pickle(p)
    _add_verify(p)

    p = sub.add_parser(
        "to-torch",
        help="write the weights of a tflstm .keras file as a PyTorch state_dict",
        description="Write the weights of the tflstm layer in a .keras file as "
        "a state_dict for torch.nn.LSTM / nn.LSTMCell (.pt, .safetensors, .npz).",
    )
    p.add_argument("model", help="a .keras file holding a tflstm.LSTM or LSTMCell")
    p.add_argument(
        "output",
        help="the .pt/.pth/.bin/.ckpt, .safetensors or .npz file to write; a "
        "missing parent folder is created",
    )
    p.add_argument(
        "--format",
        choices=sorted(set(STATE_DICT_SUFFIXES.values())),
        help="torch (.pt/.pth/.bin/.ckpt), safetensors or npz. Default: from "
        "the output's name; a --format that contradicts the name is an error",
    )
    p.add_argument("--layer", help="the layer's name, if the model holds several")
    _add_verify(p)
    return parser


def _add_trust_pickle(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load torch files that hold other objects than tensors, e.g. a "
        "whole model written by torch.save(model), whose classes must be "
        "importable (the current folder is searched). Unpickling runs any code "
        "the file names: only for files you trust",
    )


def _add_verify(p: argparse.ArgumentParser) -> None:
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


def _existing(path: str) -> Path:
    if not os.path.exists(path):
        raise CliError(f"no such file: {path!r}")
    return Path(path)


@contextlib.contextmanager
def _pickles(args: argparse.Namespace) -> Iterator[None]:
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


def _no_lstm(checkpoint: str, infos: dict) -> str:
    found = f"no nn.LSTM or nn.LSTMCell parameters found in {checkpoint!r}"
    if not infos:
        return f"{found}: it holds no tensors"
    shown = [f"{key} {tuple(info.shape)}" for key, info in list(infos.items())[:5]]
    more = f", ... ({len(infos) - 5} more)" if len(infos) > 5 else ""
    return f"{found}: it holds {len(infos)} tensors: {', '.join(shown)}{more}"


def _recorded(module: Any) -> str:
    """What a whole pickled model records of an nn.LSTM and a state_dict does not."""
    return f"batch_first={bool(module.batch_first)}, dropout={float(module.dropout)}"


def _cmd_list(args: argparse.Namespace) -> int:
    from converters.checkpoint import open_checkpoint
    from converters.discover import find_lstms, normalize_prefix

    path = _existing(args.checkpoint)
    with _pickles(args):
        checkpoint = open_checkpoint(path, trust_pickle=args.trust_pickle)
        infos = checkpoint.infos()
        specs = find_lstms(infos)
        if not specs:
            raise CliError(_no_lstm(args.checkpoint, infos))
        unrecorded = False
        for spec in specs:
            prefix = normalize_prefix(spec.prefix)
            n = sum(infos[prefix + k].size for k in spec.param_shapes())
            line = f"{spec.describe()}  [{n:,} parameters]"
            if spec.kind == "LSTM":
                module = checkpoint.submodule(prefix)
                if hasattr(module, "batch_first"):
                    line += f"  recorded: {_recorded(module)}"
                else:
                    unrecorded = True
            print(line)
    if unrecorded:
        print(f"note: {BATCH_FIRST_NOTE}")
    return EXIT_OK


# -- output names ---------------------------------------------------------------


def _model_format(output: str, given: str | None) -> str:
    """The format `convert` writes: the one the output's name says, which a
    --format must not contradict."""
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)) or not path.suffix:
        implied: str | None = "savedmodel"
    else:
        implied = MODEL_SUFFIXES.get(path.suffix.lower())
    if implied is None:
        raise CliError(
            "expected the output to end in .keras (a Keras model) or .tflite "
            "(LiteRT), or to be a folder without a suffix (a SavedModel). "
            f"Received: {output!r}"
        )
    if given is not None and given != implied:
        suffix = {"keras": ".keras", "tflite": ".tflite", "savedmodel": ""}[given]
        raise CliError(
            f"--format {given} writes {MODEL_FORMATS[given]}, but the output "
            f"{output!r} names {MODEL_FORMATS[implied]}: name it "
            f"{str(path.with_suffix(suffix))!r}, or leave --format out (the "
            "format follows the name)"
        )
    return implied


def _state_dict_format(output: str, given: str | None) -> str:
    """The format `to-torch` writes, from the output's suffix."""
    path = Path(output)
    implied = STATE_DICT_SUFFIXES.get(path.suffix.lower())
    if implied is None:
        raise CliError(
            "expected the output to end in .pt, .pth, .bin, .ckpt (torch), "
            f".safetensors or .npz. Received: {output!r}"
        )
    if given is not None and given != implied:
        names = [s for s, f in STATE_DICT_SUFFIXES.items() if f == given]
        raise CliError(
            f"--format {given} writes a {' or '.join(names)} file, but the "
            f"output {output!r} names a {implied} file: name it "
            f"{str(path.with_suffix(names[0]))!r}, or leave --format out (the "
            "format follows the name)"
        )
    return implied


def _make_parent(output: str) -> None:
    """Creates the output's missing parent folder (before any work)."""
    parent = Path(output).parent
    if parent.exists() and not parent.is_dir():
        raise CliError(
            f"expected the output's parent {str(parent)!r} to be a folder. "
            "Received: a file"
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"cannot create the folder {str(parent)!r}: {e}") from e


# -- inputs -----------------------------------------------------------------------


def _load_arrays(path: str, option: str) -> list:
    """The arrays of the .npy/.npz file that `option` names."""
    import numpy as np

    suffix = Path(path).suffix
    if suffix not in (".npy", ".npz"):
        raise CliError(
            f"expected {option} to be a .npy or .npz file. Received: {path!r}"
        )
    try:
        loaded = np.load(_existing(path), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path!r} as {suffix}: {e}") from e
    arrays = [loaded] if suffix == ".npy" else [loaded[k] for k in loaded.files]
    if not arrays:
        raise CliError(f"expected at least one array in {path!r}. Received: none")
    return arrays


def _split_inputs(
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


def _batches(inputs: list, path: str, batch_axis: int, batch_size: int) -> list:
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


# -- convert ------------------------------------------------------------------------


def _choose(checkpoint: Any, args: argparse.Namespace) -> tuple[str, Any]:
    """The prefix (normalized) and spec of the LSTM to convert: --prefix's,
    or the only one in the file. Reads keys and shapes only."""
    from converters.discover import find_lstms, infer_spec, normalize_prefix, select

    infos = checkpoint.infos()
    if args.prefix is not None:
        prefix = normalize_prefix(args.prefix)
        return prefix, infer_spec(select(infos, prefix), prefix)
    specs = find_lstms(infos)
    if not specs:
        raise CliError(_no_lstm(args.checkpoint, infos))
    if len(specs) > 1:
        found = ", ".join(s.prefix for s in specs)
        raise CliError(
            f"{args.checkpoint!r} holds {len(specs)} LSTMs; choose one with "
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
    _check_verify_options(args)


def _check_verify_options(args: argparse.Namespace) -> None:
    for option in ("inputs", "atol", "rtol"):
        if getattr(args, option) is not None and not args.verify:
            raise CliError(f"--{option} applies to --verify")
    for option in ("atol", "rtol"):
        value = getattr(args, option)
        if value is not None and not value >= 0:
            raise CliError(
                f"expected --{option} to be a number >= 0. Received: {value}"
            )


def _cmd_convert(args: argparse.Namespace) -> int:
    fmt = _model_format(args.output, args.format)
    _check_convert_options(args, fmt)
    data = inputs = None
    if args.representative_data:
        data = _load_arrays(args.representative_data, "--representative-data")
    if args.inputs:
        inputs = _load_arrays(args.inputs, "--inputs")
    if args.verify:  # before any work: what --verify needs is installed
        require("torch", extra="torch", purpose="--verify")
        if fmt == "tflite":
            require("ai_edge_litert", extra="litert", purpose="--verify of a .tflite")
    path = _existing(args.checkpoint)

    from converters.checkpoint import open_checkpoint

    with _pickles(args):
        checkpoint = open_checkpoint(path, trust_pickle=args.trust_pickle)
        prefix, spec = _choose(checkpoint, args)
        cell = spec.kind == "LSTMCell"
        recorded = None if cell else checkpoint.submodule(prefix)
        if cell and (args.sequence_lengths or args.quantize == "int8"):
            option = (
                "--sequence-lengths" if args.sequence_lengths else "--quantize int8"
            )
            raise CliError(f"{option} needs an nn.LSTM, not an nn.LSTMCell")
        batch_first = args.batch_first or bool(getattr(recorded, "batch_first", False))
        shape = dict(cell=cell, input_size=spec.input_size, batch_first=batch_first)
        if data is not None:
            data = _split_inputs(data, args.representative_data, **shape)
        if inputs is not None:
            inputs = _split_inputs(inputs, args.inputs, **shape)
            if fmt == "tflite":
                axis = 0 if cell or batch_first else 1
                inputs = _batches(inputs, args.inputs, axis, args.batch_size)
        _make_parent(args.output)

        import tflstm  # first: TensorFlow without its start-up lines

        # isort: split
        import converters

        layer = converters.from_torch(
            path,
            prefix=prefix,
            batch_first=args.batch_first or None,
            dtype=args.dtype,
            trust_pickle=args.trust_pickle,
        )
        params = None
        if args.verify:  # torch runs the checkpoint's own weights
            params = converters.load_checkpoint(
                path, prefix=prefix, trust_pickle=args.trust_pickle
            )
    if args.quantize == "int8" and data is None:
        data = [
            converters.random_input(layer, steps=50, batch=args.batch_size, seed=s)
            for s in range(1, 9)
        ]
        print(
            f"tflstm-convert {args.command}: WARNING: --quantize int8 without "
            "--representative-data: calibrating on random standard-normal "
            "inputs. The int8 model's activation ranges then fit those, not "
            "your data, and inputs of another scale or sign can lose most of "
            "their precision. Pass --representative-data with a few batches "
            "of real inputs (.npy/.npz).",
            file=sys.stderr,
        )
    # "dynamic" checks the cell state's range on the data, or on --inputs.
    checked = inputs if data is None and args.quantize == "dynamic" else data
    reasons = _write(layer, args, fmt, checked)
    print(f"wrote {args.output}: {layer.__class__.__name__}{_args(layer)}")
    if isinstance(layer, tflstm.LSTM):
        if hasattr(recorded, "batch_first"):
            print(f"note: {_recorded(recorded)}, as the pickled model records them")
        else:
            print(f"note: {BATCH_FIRST_NOTE}")
    if fmt == "keras":
        print(
            "note: load it with `import tflstm` first (which registers the "
            f"layer with Keras), then keras.saving.load_model({args.output!r})"
        )
    if not args.verify:
        return EXIT_OK
    return _verify_written(
        layer,
        args,
        fmt,
        params=params,
        prefix=prefix,
        inputs=inputs,
        data=data,
        reasons=reasons,
    )


def _verify_written(
    layer: Any,
    args: argparse.Namespace,
    fmt: str,
    *,
    params: Any,
    prefix: str,
    inputs: list | None,
    data: list | None,
    reasons: list[str],
) -> int:
    """`convert --verify`: the written file against torch on the checkpoint's
    own weights, on --inputs, the first input of the quantization data, or a
    random input."""
    import numpy as np

    import converters
    import tflstm

    module = converters.torch_module_from(
        params, prefix, batch_first=getattr(layer, "batch_first", False)
    )
    served = _reload(args.output, fmt, layer)
    if inputs is not None:
        source = f"{len(inputs)} input(s) of {args.inputs}"
    elif data is not None:  # quantized: on inputs like those it was calibrated on
        x = data[0]
        cell = isinstance(layer, tflstm.LSTMCell)
        batch_axis = 0 if cell or layer.batch_first else 1
        inputs = [np.take(x, range(args.batch_size), axis=batch_axis)]
        named = args.representative_data or "the random calibration inputs"
        source = f"the first input of {named}"
    else:
        inputs = [converters.random_input(layer, batch=args.batch_size)]
        source = (
            f"a random input, {converters.verify.RANDOM_INPUT} (pass --inputs "
            "FILE.npy|.npz to verify on your own)"
        )
    print(f"verifying on {source}: shape {inputs[0].shape}")
    runs: list[tuple[Any, Any]] = [(x, None) for x in inputs]
    if args.sequence_lengths:
        time_axis = 1 if layer.batch_first else 0
        batch_axis = 1 - time_axis
        runs = [
            (
                x,
                converters.random_lengths(
                    x.shape[time_axis], x.shape[batch_axis], seed=i
                ),
            )
            for i, x in enumerate(inputs)
        ]
        first = runs[0][1].tolist()
        more = " (random for each input)" if len(runs) > 1 else ""
        print(f"sequence_lengths: {first}{more}")
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

    def why() -> list[str]:  # a failing quantized model: what the export saw
        if not args.quantize:
            return []
        from tflstm.tflite import quantization_risks

        found = quantization_risks(
            layer, args.quantize, [x for x, _ in runs], source="the verified inputs"
        )
        return (
            reasons
            or found
            or [
                f"quantize={args.quantize!r} rounds the weights (and, but for "
                "float16, the activations) at every step, and the errors add up "
                "over the steps that the cell state remembers; no heavy-tailed "
                "weights or large cell state were found, so compare the modes on "
                "your data: --quantize float16 keeps float32 math at about half "
                "the float size"
            ]
        )

    return _verify(served, module, runs, atol, rtol, absent=absent, why=why)


def _write(layer: Any, args: argparse.Namespace, fmt: str, data: Any) -> list[str]:
    """Writes the output; returns why a quantized model may miss its
    tolerance, as `export_tflite` warned (also printed as warnings)."""
    import converters
    import tflstm

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
            representative_data=None if isinstance(layer, tflstm.LSTMCell) else data,
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


def _verify(
    served: Any,
    module: Any,
    runs: Sequence[tuple[Any, Any]],
    atol: float | None,
    rtol: float | None,
    *,
    absent: Sequence[str] = (),
    why: Callable[[], list[str]] = list,
) -> int:
    """Judges `served` against torch on each (input, lengths) run, prints the
    worst of each tensor over the runs, and the verdict; the exit code."""
    import converters

    worst: dict = {}
    rule = ""
    for x, lengths in runs:
        report = converters.compare(served, module, x, lengths, atol=atol, rtol=rtol)
        rule = report.rule
        for name, error in report.items():
            if name in absent:
                continue
            if name not in worst or _share(error) > _share(worst[name]):
                worst[name] = error
    report = converters.Report(worst, rule)
    print(converters.format_report(report))
    if report.ok:
        name = report.worst
        print(
            f"OK: every tensor within its bound (nearest: {name}, at "
            f"{_share(report[name]):.2f} of it)"
        )
        return EXIT_OK
    for name, error in report.items():
        if not error.ok:
            print(
                f"FAILED: {name}: max abs error {error.abs:.2e} > bound "
                f"{error.bound:.2e} (max rel {error.rel:.2e})",
                file=sys.stderr,
            )
    if atol is not None or rtol is not None:
        for reason in why():
            print(f"why: {reason}", file=sys.stderr)
        print(
            f"the bound: {rule}. To judge by another tolerance, pass --atol/--rtol.",
            file=sys.stderr,
        )
    else:
        print(
            "the written model differs from torch by more than float32 rounding "
            "explains (the rule above). To judge by a fixed tolerance instead, "
            "pass --atol and/or --rtol.",
            file=sys.stderr,
        )
    return EXIT_VERIFY_FAILED


def _share(error: Any) -> float:
    """How much of its bound an error uses."""
    return error.abs / max(error.bound, 1e-300)


def _reload(path: str, fmt: str, layer):
    """The written artefact, as a callable with the layer's call convention."""
    import tflstm  # first: TensorFlow without its start-up lines

    # isort: split
    import keras
    import numpy as np
    import tensorflow as tf

    import converters

    if fmt == "keras":
        model = keras.saving.load_model(path)

        class ServedKeras:  # `compare` calls it as the layer: through predict
            compute_dtype = layer.compute_dtype

            def __call__(self, x, sequence_lengths=None):
                x = np.asarray(x, self.compute_dtype)
                if isinstance(layer, tflstm.LSTMCell):  # input, h_0, c_0
                    zeros = np.zeros((len(x), layer.hidden_size), x.dtype)
                    feed = [x, zeros, zeros][: len(model.inputs)]
                    return tuple(model.predict(feed, batch_size=2, verbose=0))
                if not layer.batch_first:  # the model is batch-major
                    x = x.transpose(1, 0, 2)
                outputs = model.predict(x, batch_size=2, verbose=0)
                return converters.torch_layout(layer, outputs)

        return ServedKeras()
    if fmt == "tflite":
        from tflstm.tflite import run_tflite

        flatbuffer, config = Path(path).read_bytes(), layer.get_config()

        class ServedTFLite:  # what `compare` needs of a layer, backed by LiteRT
            compute_dtype = "float32"

            def __call__(self, x, sequence_lengths=None):
                result = run_tflite(  # quiet: it filters LiteRT's log lines
                    flatbuffer, config, x, sequence_lengths=sequence_lengths
                )
                if isinstance(layer, tflstm.LSTMCell):  # (h_1, c_1)
                    return result
                output, (h_n, c_n) = result
                if c_n is None:  # not produced: left out of the report
                    c_n = np.full((*h_n.shape[:2], config["hidden_size"]), np.nan)
                return output, (h_n, c_n)

        return ServedTFLite()
    served = tf.saved_model.load(path).signatures["serving_default"]

    class Served:  # what `compare` needs of a layer, backed by the SavedModel
        compute_dtype = layer.compute_dtype

        def __call__(self, x, sequence_lengths=None):
            kwargs = {"input": tf.constant(x)}
            if sequence_lengths is not None:
                kwargs["sequence_lengths"] = tf.constant(sequence_lengths, tf.int32)
            out = served(**kwargs)
            if "h_1" in out:
                return out["h_1"], out["c_1"]
            return out["output"], (out["h_n"], out["c_n"])

    return Served()


def _args(layer) -> str:
    from converters import torch_config

    return "(" + ", ".join(f"{k}={v}" for k, v in torch_config(layer).items()) + ")"


def _tflstm_layers(layer) -> list:
    import tflstm

    found = [layer] if isinstance(layer, (tflstm.LSTM, tflstm.LSTMCell)) else []
    for child in getattr(layer, "layers", []):
        found += _tflstm_layers(child)
    return found


def _cmd_to_torch(args: argparse.Namespace) -> int:
    _state_dict_format(args.output, args.format)
    _check_verify_options(args)
    inputs = _load_arrays(args.inputs, "--inputs") if args.inputs else None
    if args.verify:
        require("torch", extra="torch", purpose="--verify")
    path = _existing(args.model)

    import tflstm  # (first: quiet TensorFlow; registers the layers)

    # isort: split
    import keras

    import converters

    try:
        model = keras.saving.load_model(path)
    except Exception as e:  # Keras raises several types for a bad file
        raise CliError(f"cannot load {args.model!r} as a .keras model: {e}") from e
    layers = _tflstm_layers(model)
    if args.layer is not None:
        layers = [lyr for lyr in layers if lyr.name == args.layer]
    if len(layers) != 1:
        names = ", ".join(repr(lyr.name) for lyr in _tflstm_layers(model)) or "none"
        named = f" named {args.layer!r}" if args.layer else ""
        raise CliError(
            f"expected one tflstm layer{named} in {args.model!r}; it holds: "
            f"{names} (choose with --layer)"
        )
    layer = layers[0]
    cell = isinstance(layer, tflstm.LSTMCell)
    if inputs is not None:
        inputs = _split_inputs(
            inputs,
            args.inputs,
            cell=cell,
            input_size=layer.input_size,
            batch_first=getattr(layer, "batch_first", False),
        )
    _make_parent(args.output)
    converters.save_state_dict(converters.to_torch(layer), args.output)
    kind = type(layer).__name__
    print(f"wrote {args.output}: state_dict of torch.nn.{kind}{_args(layer)}")
    if not args.verify:
        return EXIT_OK
    import torch

    module = converters.to_torch_module(layer)
    saved = converters.load_checkpoint(args.output)  # what was written, reread
    module.load_state_dict({k: torch.from_numpy(v) for k, v in saved.items()})
    if inputs is None:
        inputs = [converters.random_input(layer)]
        source = (
            f"a random input, {converters.verify.RANDOM_INPUT} (pass --inputs "
            "FILE.npy|.npz to verify on your own)"
        )
    else:
        source = f"{len(inputs)} input(s) of {args.inputs}"
    print(f"verifying on {source}: shape {inputs[0].shape}")
    runs = [(x, None) for x in inputs]
    return _verify(layer, module, runs, args.atol, args.rtol)


COMMANDS = {"list": _cmd_list, "convert": _cmd_convert, "to-torch": _cmd_to_torch}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs `tflstm-convert` with `argv` (default: `sys.argv[1:]`); the exit code."""
    # A command-line program may choose TensorFlow's log level; run-time INFO
    # and WARNING lines of TensorFlow's C++ code say nothing to its users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CliError, FileNotFoundError, ValueError, TypeError, ImportError) as e:
        print(f"tflstm-convert {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
