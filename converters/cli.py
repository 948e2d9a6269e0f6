"""`tflstm-convert`: list, convert and verify the LSTMs of PyTorch checkpoints.

Exit codes: 0 success; 1 a `--verify` error above tolerance; 2 bad usage or
input (a missing file, an unreadable checkpoint, a prefix that matches nothing).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Before TensorFlow is imported (lazily, by the commands): no start-up banner.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_OK, EXIT_VERIFY_FAILED, EXIT_USAGE = 0, 1, 2

EPILOG = """examples:
  tflstm-convert list model.pt
  tflstm-convert convert model.pt encoder.keras --prefix encoder.rnn --verify
  tflstm-convert to-torch encoder.keras encoder_lstm.safetensors --verify
"""


class CliError(Exception):
    """A problem with the user's input: printed without a traceback, exit 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflstm-convert",
        description="Port the LSTMs of PyTorch checkpoints to TensorFlow/Keras "
        "(tflstm) and back, with the same numbers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "list",
        help="list the nn.LSTM/nn.LSTMCell modules in a checkpoint",
        description="List every nn.LSTM and nn.LSTMCell in a checkpoint, with "
        "its prefix and inferred configuration.",
    )
    p.add_argument("checkpoint", help=".pt/.pth/.bin/.ckpt, .safetensors or .npz")

    p = sub.add_parser(
        "convert",
        help="convert one LSTM of a checkpoint to a .keras file or a SavedModel",
        description="Convert the LSTM (or LSTMCell) at --prefix to a tflstm "
        "layer and save it as a .keras model (input -> (output, (h_n, c_n))) "
        "or as a SavedModel.",
    )
    p.add_argument("checkpoint", help=".pt/.pth/.bin/.ckpt, .safetensors or .npz")
    p.add_argument(
        "output", help="the .keras file, or the SavedModel directory, to write"
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
        "--prefix",
        help="the LSTM's prefix in the checkpoint, e.g. encoder.rnn (default: "
        "the only LSTM in the file)",
    )
    p.add_argument(
        "--batch-first", action="store_true", help="build with batch_first=True"
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="layer dtype (default: float64 for float64 weights, else float32)",
    )
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


def _cmd_list(args: argparse.Namespace) -> int:
    import converters

    state_dict = converters.load_checkpoint(_existing(args.checkpoint))
    specs = converters.find_lstms(state_dict)
    if not specs:
        raise CliError(
            f"no nn.LSTM or nn.LSTMCell parameters in {args.checkpoint!r} "
            f"({len(state_dict)} tensors, none named weight_ih*)"
        )
    for spec in specs:
        n = sum(state_dict[spec.prefix + k].size for k in spec.param_shapes())
        print(f"{spec.describe()}  [{n:,} parameters]")
    return EXIT_OK


def _verify(layer, module, atol: float, x=None, sequence_lengths=None) -> int:
    import converters

    report = converters.compare(layer, module, x, sequence_lengths)
    print(converters.format_report(report))
    worst = max(a for a, _ in report.values())
    if worst > atol:
        print(f"FAILED: max abs error {worst:.2e} > atol {atol:.0e}", file=sys.stderr)
        return EXIT_VERIFY_FAILED
    print(f"OK: max abs error {worst:.2e} <= atol {atol:.0e}")
    return EXIT_OK


def _cmd_convert(args: argparse.Namespace) -> int:
    import keras

    import converters
    import tflstm

    if args.format == "keras" and Path(args.output).suffix != ".keras":
        raise CliError(f"expected an output file ending in .keras, got {args.output!r}")
    if args.sequence_lengths and args.format == "keras":
        raise CliError(
            "--sequence-lengths applies to --format savedmodel or tflite (a "
            ".keras layer takes sequence_lengths= at call time)"
        )
    state_dict = converters.load_checkpoint(_existing(args.checkpoint))
    prefix = args.prefix
    if prefix is None:
        specs = converters.find_lstms(state_dict)
        if len(specs) != 1:
            found = ", ".join(repr(s.prefix) for s in specs) or "none"
            raise CliError(
                f"{args.checkpoint!r} holds {len(specs)} LSTMs; choose one with "
                f"--prefix. Prefixes: {found}"
            )
        prefix = specs[0].prefix
    layer = converters.from_torch(
        state_dict,
        prefix=prefix,
        batch_first=args.batch_first or None,
        dtype=args.dtype,
    )
    if args.sequence_lengths and not isinstance(layer, tflstm.LSTM):
        raise CliError("--sequence-lengths needs an nn.LSTM, not an nn.LSTMCell")
    lengths = args.sequence_lengths
    if args.format == "savedmodel":
        from tflstm.export import export_saved_model

        export_saved_model(layer, args.output, sequence_lengths=lengths)
    elif args.format == "tflite":
        from tflstm.tflite import export_tflite

        export_tflite(
            layer, args.output, batch_size=args.batch_size, sequence_lengths=lengths
        )
    else:
        if isinstance(layer, tflstm.LSTM):
            inputs = keras.Input(batch_shape=(None, None, layer.input_size))
        else:
            inputs = keras.Input((layer.input_size,))
        keras.Model(inputs, layer(inputs), name=layer.name).save(args.output)
    print(f"wrote {args.output}: {layer.__class__.__name__}{_args(layer)}")
    if args.verify:
        # torch runs the checkpoint's own weights; tflstm runs the written file.
        module = converters.torch_module_from(
            state_dict, prefix, batch_first=getattr(layer, "batch_first", False)
        )
        served = _reload(args.output, args.format, layer)
        x = converters.random_input(layer, batch=args.batch_size)
        seq_lengths = None
        if lengths:
            steps = x.shape[1 if layer.batch_first else 0]
            seq_lengths = converters.random_lengths(steps, args.batch_size)
            print(f"sequence_lengths: {seq_lengths.tolist()}")
        return _verify(served, module, args.atol, x, seq_lengths)
    return EXIT_OK


def _reload(path: str, fmt: str, layer):
    """The written artefact, as a callable with the layer's call convention."""
    import keras
    import tensorflow as tf

    if fmt == "keras":
        return keras.saving.load_model(path).layers[-1]
    if fmt == "tflite":
        from tflstm.tflite import run_tflite

        flatbuffer, config = Path(path).read_bytes(), layer.get_config()

        class ServedTFLite:  # what `compare` needs of a layer, backed by LiteRT
            compute_dtype = "float32"

            def __call__(self, x, sequence_lengths=None):
                return run_tflite(
                    flatbuffer, config, x, sequence_lengths=sequence_lengths
                )

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
    import keras

    import converters
    import tflstm  # noqa: F401  (registers the layers for load_model)

    path = _existing(args.model)
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
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CliError, FileNotFoundError, ValueError, TypeError, ImportError) as e:
        print(f"tflstm-convert {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
