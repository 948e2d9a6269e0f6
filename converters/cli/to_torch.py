"""`tflstm-convert to-torch`: the weights of a tflstm .keras file as a PyTorch
state_dict."""

from __future__ import annotations

import argparse

from _tflstm.extras import require
from converters.cli._common import (
    EXIT_OK,
    CliError,
    check_verify_options,
    existing,
    load_arrays,
    split_inputs,
    torch_args,
)
from converters.cli.judge import judge
from converters.cli.outputs import make_parent, state_dict_format


def _tflstm_layers(layer) -> list:
    from tflstm._cell_layer import CellLayer
    from tflstm._recurrent import RecurrentLayer

    found = [layer] if isinstance(layer, (RecurrentLayer, CellLayer)) else []
    for child in getattr(layer, "layers", []):
        found += _tflstm_layers(child)
    return found


def run_to_torch(args: argparse.Namespace) -> int:
    state_dict_format(args.output, args.format)
    check_verify_options(args)
    inputs = load_arrays(args.inputs, "--inputs") if args.inputs else None
    if args.verify:
        require("torch", extra="torch", purpose="--verify")
    path = existing(args.model)

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
    cell = "num_layers" not in layer.get_config()
    if inputs is not None:
        inputs = split_inputs(
            inputs,
            args.inputs,
            cell=cell,
            input_size=layer.input_size,
            batch_first=getattr(layer, "batch_first", False),
        )
    make_parent(args.output)
    converters.save_state_dict(converters.to_torch(layer), args.output)
    kind = type(layer).__name__
    print(f"wrote {args.output}: state_dict of torch.nn.{kind}{torch_args(layer)}")
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
    return judge(layer, module, runs, args.atol, args.rtol)
