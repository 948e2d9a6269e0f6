"""The command line: `tflstm-convert --help` and each command's."""

from __future__ import annotations

import argparse

from _tflstm import __version__
from converters.cli._common import CHECKPOINT_HELP, add_trust_pickle, add_verify
from converters.cli.outputs import MODEL_FORMATS, STATE_DICT_SUFFIXES

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tflstm-convert",
        description="Port the LSTMs, GRUs and RNNs of PyTorch checkpoints to "
        "TensorFlow/Keras "
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
        help="list the recurrent modules (nn.LSTM, nn.GRU, nn.RNN, their cells) "
        "in a "
        "checkpoint",
        description="List every nn.LSTM, nn.GRU, nn.RNN and their cells in a "
        "checkpoint, with "
        "its prefix (as --prefix takes it) and inferred configuration. Reads "
        "only keys and shapes.",
    )
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    add_trust_pickle(p)

    p = sub.add_parser(
        "convert",
        help="convert one recurrent module of a checkpoint to a .keras file, a "
        "SavedModel "
        "or a .tflite model",
        description="Convert the nn.LSTM, nn.GRU or nn.RNN (or its cell) at "
        "--prefix to a "
        "tflstm "
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
        "which it prints; the accuracy table of the export guide "
        "(docs/guides/export.md) says what holds on real checkpoints",
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
        help="the module's prefix in the checkpoint, as `list` prints it, e.g. "
        "encoder.rnn (default: the only recurrent module in the file)",
    )
    p.add_argument(
        "--batch-first",
        action="store_true",
        help="build with batch_first=True; a state_dict does not record it, so "
        "it must match how the model was used (default: False, or what a whole "
        "pickled model records)",
    )
    p.add_argument(
        "--nonlinearity",
        choices=["tanh", "relu"],
        help="an nn.RNN's or nn.RNNCell's nonlinearity; a state_dict does not "
        "record it, so it must match how the model was built (default: tanh, "
        "or what a whole pickled model records)",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="layer dtype (default: float64 for float64 weights, else float32)",
    )
    add_trust_pickle(p)
    add_verify(p)

    p = sub.add_parser(
        "to-torch",
        help="write the weights of a tflstm .keras file as a PyTorch state_dict",
        description="Write the weights of the tflstm layer in a .keras file as "
        "a state_dict for torch.nn.LSTM / nn.GRU / nn.RNN / their cells (.pt, "
        ".safetensors, "
        ".npz).",
    )
    p.add_argument(
        "model", help="a .keras file holding a tflstm.LSTM, GRU, RNN or their cells"
    )
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
    add_verify(p)
    return parser
