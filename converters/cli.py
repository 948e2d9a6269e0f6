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
from collections.abc import Iterator, Sequence
from pathlib import Path

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

EPILOG = """formats written by convert (--format):
  keras       a .keras model, input -> (output, (h_n, c_n)); load it with
              `import tflstm` then keras.saving.load_model(path)
  savedmodel  a TensorFlow SavedModel for TF Serving (no tflstm needed to serve)
  tflite      a .tflite model for LiteRT (fused LSTM op, builtin ops only);
              --quantize dynamic (int8 weights) or int8 (full integer)

examples:
  tflstm-convert list model.pt
  tflstm-convert convert model.pt encoder.keras --prefix encoder.rnn --verify
  tflstm-convert convert model.pt encoder.tflite --prefix encoder.rnn --format tflite
  tflstm-convert convert model.pt encoder.tflite --prefix encoder.rnn --format tflite \
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
        help="the .keras file, SavedModel directory or .tflite file to write",
    )
    p.add_argument(
        "--format",
        choices=["keras", "savedmodel", "tflite"],
        default="keras",
        help="keras: a .keras model (default); savedmodel: a TensorFlow "
        "SavedModel for TF Serving, signatures serving_default (input) and "
        "with_state (input, h_0, c_0); tflite: a .tflite model for LiteRT "
        "(fused LSTM op, builtin ops only, states as inputs and outputs)",
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
        choices=["dynamic", "int8"],
        help="with --format tflite: dynamic: int8 weights, float activations "
        "(about 0.26x the size; error ~0.5-1%% of the output's scale); int8: "
        "full integer with a 16-bit cell state, calibrated on "
        "--representative-data (about 0.27x; ~1-3%%). --verify then checks the "
        "error relative to each tensor's largest magnitude against the "
        "mode's tolerance, which it prints (--atol applies to float models)",
    )
    p.add_argument(
        "--representative-data",
        metavar="FILE",
        help="with --quantize int8: a .npy or .npz file of inputs laid out as "
        "the layer's input: each 3-D array is one input, a 4-D array a stack "
        "of them; their batch size a multiple of --batch-size. --verify then "
        "runs on the first input. Without it, int8 calibrates on random inputs "
        "(with a warning)",
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
        "it must match how the model was used (default: False)",
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
    p.add_argument("output", help="the .pt/.pth/.bin, .safetensors or .npz to write")
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
        help="run torch and TensorFlow on the same random input and print max "
        "abs/rel errors; exit 1 above --atol",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=1e-5,
        help="--verify tolerance on the max abs error (default: 1e-5)",
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


def _cmd_list(args: argparse.Namespace) -> int:
    from converters.checkpoint import read_shapes
    from converters.discover import find_lstms, normalize_prefix

    path = _existing(args.checkpoint)
    with _pickles(args):
        infos = read_shapes(path, trust_pickle=args.trust_pickle)
    specs = find_lstms(infos)
    if not specs:
        raise CliError(_no_lstm(args.checkpoint, infos))
    for spec in specs:
        keys = [normalize_prefix(spec.prefix) + k for k in spec.param_shapes()]
        n = sum(infos[key].size for key in keys)
        print(f"{spec.describe()}  [{n:,} parameters]")
    if any(spec.kind == "LSTM" for spec in specs):
        print(f"note: {BATCH_FIRST_NOTE}")
    return EXIT_OK


def _verify(
    layer,
    module,
    atol: float,
    x=None,
    sequence_lengths=None,
    *,
    rtol: float | None = None,
    absent: Sequence[str] = (),
) -> int:
    """Prints the report; with `rtol`, checks the errors relative to each
    tensor's largest magnitude instead of `atol`. `absent`: outputs the
    model does not produce (left out of the report)."""
    import converters

    report = converters.compare(layer, module, x, sequence_lengths)
    for name in absent:
        del report[name]
    print(converters.format_report(report))
    if rtol is not None:
        worst = max(r for _, r in report.values())
        if worst > rtol:
            print(
                f"FAILED: max rel error {worst:.2e} > rtol {rtol:.0e}", file=sys.stderr
            )
            return EXIT_VERIFY_FAILED
        print(f"OK: max rel error {worst:.2e} <= rtol {rtol:.0e}")
        return EXIT_OK
    worst = max(a for a, _ in report.values())
    if worst > atol:
        print(f"FAILED: max abs error {worst:.2e} > atol {atol:.0e}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    print(f"OK: max abs error {worst:.2e} <= atol {atol:.0e}")
    return EXIT_OK


def _representative_data(path: str) -> list:
    """The inputs of a .npy/.npz file: each 3-D array one input, a 4-D array
    a stack of them."""
    import numpy as np

    suffix = Path(path).suffix
    if suffix not in (".npy", ".npz"):
        raise CliError(
            "expected --representative-data to be a .npy or .npz file. "
            f"Received: {path!r}"
        )
    try:
        loaded = np.load(_existing(path), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path!r} as {suffix}: {e}") from e
    arrays = [loaded] if suffix == ".npy" else [loaded[k] for k in loaded.files]
    inputs = []
    for array in arrays:
        if array.ndim not in (3, 4):
            raise CliError(
                f"expected the arrays of {path!r} to be 3-D (one input) or 4-D "
                f"(a stack of inputs). Received: an array of shape {array.shape}"
            )
        inputs += [array] if array.ndim == 3 else list(array)
    if not inputs:
        raise CliError(f"expected at least one array in {path!r}. Received: none")
    return inputs


def _only_prefix(path: Path, checkpoint: str, trust_pickle: bool) -> str:
    """The prefix of the one LSTM in the file; an error if there are several."""
    from converters.checkpoint import read_shapes
    from converters.discover import find_lstms

    infos = read_shapes(path, trust_pickle=trust_pickle)
    specs = find_lstms(infos)
    if not specs:
        raise CliError(_no_lstm(checkpoint, infos))
    if len(specs) > 1:
        found = ", ".join(s.prefix for s in specs)
        raise CliError(
            f"{checkpoint!r} holds {len(specs)} LSTMs; choose one with --prefix. "
            f"Prefixes: {found}"
        )
    return specs[0].prefix


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.format == "keras" and Path(args.output).suffix != ".keras":
        raise CliError(f"expected an output file ending in .keras, got {args.output!r}")
    if args.sequence_lengths and args.format == "keras":
        raise CliError(
            "--sequence-lengths applies to --format savedmodel or tflite (a "
            ".keras layer takes sequence_lengths= at call time)"
        )
    if args.quantize and args.format != "tflite":
        raise CliError("--quantize applies to --format tflite")
    if args.representative_data and args.quantize != "int8":
        raise CliError(
            "--representative-data applies to --quantize int8 (it calibrates "
            "the activations' ranges)"
        )
    data = None
    if args.representative_data:
        data = _representative_data(args.representative_data)
    if args.verify:  # before any work: what --verify needs is installed
        require("torch", extra="torch", purpose="--verify")
        if args.format == "tflite":
            require("ai_edge_litert", extra="litert", purpose="--verify of a .tflite")
    path = _existing(args.checkpoint)

    import tflstm  # first: TensorFlow without its start-up lines

    # isort: split

    import numpy as np

    import converters

    with _pickles(args):
        prefix = args.prefix
        if prefix is None:
            prefix = _only_prefix(path, args.checkpoint, args.trust_pickle)
        layer = converters.from_torch(
            path,
            prefix=prefix,
            batch_first=args.batch_first or None,
            dtype=args.dtype,
            trust_pickle=args.trust_pickle,
        )
        if args.verify:  # torch runs the checkpoint's own weights
            params = converters.load_checkpoint(
                path, prefix=prefix, trust_pickle=args.trust_pickle
            )
    if args.sequence_lengths and not isinstance(layer, tflstm.LSTM):
        raise CliError("--sequence-lengths needs an nn.LSTM, not an nn.LSTMCell")
    if args.quantize == "int8" and not isinstance(layer, tflstm.LSTM):
        raise CliError("--quantize int8 needs an nn.LSTM, not an nn.LSTMCell")
    lengths = args.sequence_lengths
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
    if args.format == "savedmodel":
        from tflstm.export import export_saved_model

        export_saved_model(layer, args.output, sequence_lengths=lengths)
    elif args.format == "tflite":
        from _tflstm.quiet import TFLITE_NOISE, filtered_stderr
        from tflstm.tflite import export_tflite

        with filtered_stderr(TFLITE_NOISE):
            export_tflite(
                layer,
                args.output,
                batch_size=args.batch_size,
                sequence_lengths=lengths,
                quantize=args.quantize,
                representative_data=data,
            )
    else:  # batch-major at the model's boundary, for predict/fit/evaluate
        converters.keras_model(layer).save(args.output)
    print(f"wrote {args.output}: {layer.__class__.__name__}{_args(layer)}")
    if isinstance(layer, tflstm.LSTM):
        print(f"note: {BATCH_FIRST_NOTE}")
    if args.format == "keras":
        print(
            "note: load it with `import tflstm` first (which registers the "
            f"layer with Keras), then keras.saving.load_model({args.output!r})"
        )
    if args.verify:  # tflstm runs the written file, not the layer in memory
        module = converters.torch_module_from(
            params, prefix, batch_first=getattr(layer, "batch_first", False)
        )
        served = _reload(args.output, args.format, layer)
        x = converters.random_input(layer, batch=args.batch_size)
        if data is not None:  # int8: on inputs like those it was calibrated on
            x = data[0]
            batch_axis = 0 if getattr(layer, "batch_first", False) else 1
            x = np.take(x, range(args.batch_size), axis=batch_axis).astype("float64")
            source = args.representative_data or "the random calibration inputs"
            print(f"verifying on the first input of {source}: shape {x.shape}")
        seq_lengths = None
        if lengths:
            steps = x.shape[1 if layer.batch_first else 0]
            seq_lengths = converters.random_lengths(steps, args.batch_size)
            print(f"sequence_lengths: {seq_lengths.tolist()}")
        rtol, absent = None, ()
        if args.quantize:
            from tflstm.tflite import QUANTIZED_RTOL

            rtol = QUANTIZED_RTOL[args.quantize]
            print(
                f"quantize={args.quantize}: tolerance {rtol:.0e} of each "
                "tensor's largest magnitude (max rel)"
            )
            if args.quantize == "int8" and lengths:
                absent = ("c_n",)
                print(
                    "c_n: not produced by an int8 model with sequence lengths "
                    "(see tflstm.tflite)"
                )
        return _verify(
            served, module, args.atol, x, seq_lengths, rtol=rtol, absent=absent
        )
    return EXIT_OK


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
                if isinstance(layer, tflstm.LSTMCell):
                    return tuple(model.predict(x, batch_size=2, verbose=0))
                if not layer.batch_first:  # the model is batch-major
                    x = x.transpose(1, 0, 2)
                outputs = model.predict(x, batch_size=2, verbose=0)
                return converters.torch_layout(layer, outputs)

        return ServedKeras()
    if fmt == "tflite":
        import numpy as np

        from _tflstm.quiet import TFLITE_NOISE, filtered_stderr
        from tflstm.tflite import run_tflite

        flatbuffer, config = Path(path).read_bytes(), layer.get_config()

        class ServedTFLite:  # what `compare` needs of a layer, backed by LiteRT
            compute_dtype = "float32"

            def __call__(self, x, sequence_lengths=None):
                with filtered_stderr(TFLITE_NOISE):
                    result = run_tflite(
                        flatbuffer, config, x, sequence_lengths=sequence_lengths
                    )
                if "num_layers" not in config:  # an LSTMCell: (h_1, c_1)
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
    if args.verify:
        require("torch", extra="torch", purpose="--verify")
    path = _existing(args.model)

    import tflstm  # noqa: F401  (first: quiet TensorFlow; registers the layers)

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
    converters.save_state_dict(converters.to_torch(layer), args.output)
    kind = type(layer).__name__
    print(f"wrote {args.output}: state_dict of torch.nn.{kind}{_args(layer)}")
    if args.verify:
        import torch

        module = converters.to_torch_module(layer)
        saved = converters.load_checkpoint(args.output)  # what was written, reread
        module.load_state_dict({k: torch.from_numpy(v) for k, v in saved.items()})
        return _verify(layer, module, args.atol)
    return EXIT_OK


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
