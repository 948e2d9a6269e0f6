"""PyTorch <-> tflstm: modules, state_dicts and checkpoint files.

The parameter names are the same on both sides (tflstm keeps PyTorch's), so
the mapping is the identity on names and shapes: nothing is transposed,
reordered or summed, and a round trip is bit-exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import tflstm
from _tflstm.extras import require
from converters.checkpoint import open_checkpoint
from converters.checkpoint.base import is_module, to_numpy
from converters.discover import check_state_dict, infer_spec, normalize_prefix, select

Layer = tflstm.LSTM | tflstm.LSTMCell
Source = Any  # nn.LSTM, nn.LSTMCell, nn.Module, a state_dict or a path


def _params_of(
    source: Source, prefix: str, trust_pickle: bool
) -> tuple[dict[str, Any], Callable[[str], np.ndarray], Any]:
    """The parameters at `prefix` (for a file: their shapes only), a function
    that reads one of them as numpy, and the torch submodule at `prefix`."""
    if isinstance(source, (str, os.PathLike)):
        checkpoint = open_checkpoint(source, trust_pickle=trust_pickle)
        # Of a sharded checkpoint, only the shards that hold the prefix are read.
        under = [k for k in checkpoint.keys() if k.startswith(prefix)]
        try:
            infos = select(checkpoint.infos(under), prefix)
        except ValueError:  # raised again, naming every prefix that holds one
            select(checkpoint.infos(), prefix)
            raise
        return (
            infos,
            lambda name: checkpoint.read([prefix + name])[prefix + name],
            checkpoint.submodule(prefix),  # a whole pickled model records more
        )
    module = None
    if is_module(source):
        module = source.get_submodule(prefix.rstrip(".")) if prefix else source
        source = source.state_dict()
    if isinstance(source, Mapping):
        params = select(source, prefix)
        return params, lambda name: to_numpy(params[name]), module
    raise TypeError(
        "Expected `source` to be a torch.nn.Module, a state_dict (a mapping of "
        "names to tensors or arrays) or a checkpoint path. "
        f"Received: an object of type {type(source).__name__}"
    )


def _default_dtype(params: Mapping[str, Any]) -> str:
    dtypes = {str(a.dtype).removeprefix("torch.") for a in params.values()}
    return "float64" if dtypes == {"float64"} else "float32"


def from_torch(
    source: Source,
    *,
    prefix: str = "",
    batch_first: bool | None = None,
    dropout: float | None = None,
    dtype: str | None = None,
    trust_pickle: bool = False,
) -> Layer:
    """Builds a `tflstm.LSTM` (or `tflstm.LSTMCell`) holding PyTorch's weights.

    The configuration (`input_size, hidden_size, num_layers, bias,
    bidirectional, proj_size`) is inferred from the parameter names and shapes;
    an inconsistent set is an error that lists every problem.

    Args:
        source: An `nn.LSTM` or `nn.LSTMCell`; any `nn.Module` holding one at
            `prefix`; a state_dict of torch tensors or numpy arrays; or a
            checkpoint path (see `converters.load_checkpoint`), of which only
            the tensors under `prefix` are read.
        prefix: Where the LSTM sits in a whole-model state_dict, e.g.
            `"encoder.rnn"` (a trailing "." is optional). Defaults to `""`,
            the root; `converters.find_lstms` lists the prefixes.
        batch_first: Defaults to the module's own value when `source` holds an
            `nn.LSTM` module (a module, or a file of a whole model written by
            `torch.save(model)` and read with `trust_pickle=True`), else
            `False` (a state_dict does not record it).
        dropout: The same, defaulting to the module's value, else `0.0`.
        dtype: The layer's dtype. Defaults to `"float64"` for float64 weights
            and `"float32"` otherwise: float16 and bfloat16 checkpoints are
            widened to float32, exactly.
        trust_pickle: For a checkpoint path: load a torch file that holds
            other objects than tensors (e.g. `torch.save(model)`), which can
            run code; see `converters.load_checkpoint`. Defaults to `False`.

    Returns:
        `tflstm.LSTM` for `nn.LSTM` weights, `tflstm.LSTMCell` for
        `nn.LSTMCell` weights (names without the `_l0` suffix).

    Raises:
        ValueError: if no LSTM sits at `prefix` (the message names those that
            do), or if the parameters are inconsistent.
    """
    prefix = normalize_prefix(prefix)
    params, read, module = _params_of(source, prefix, trust_pickle)
    spec = infer_spec(params, prefix)
    kwargs = spec.layer_kwargs()
    if spec.kind == "LSTM":
        kwargs["batch_first"] = (
            batch_first
            if batch_first is not None
            else bool(getattr(module, "batch_first", False))
        )
        kwargs["dropout"] = (
            dropout if dropout is not None else float(getattr(module, "dropout", 0.0))
        )
        layer_cls: type[tflstm.LSTM] | type[tflstm.LSTMCell] = tflstm.LSTM
    else:
        if batch_first is not None or dropout is not None:
            raise ValueError(
                "`batch_first` and `dropout` do not apply to an nn.LSTMCell. "
                f"Received: batch_first={batch_first}, dropout={dropout}"
            )
        layer_cls = tflstm.LSTMCell

    # Each weight is created from its tensor, read one at a time (no random
    # initialisation, no copy): a checkpoint's LSTM costs about its size in
    # memory (benchmarks/checkpoint_memory.py).
    def initial(name: str) -> Callable:
        return lambda shape, dtype=None: read(name).astype(dtype, copy=False)

    values = {name: initial(name) for name in spec.param_shapes()}
    return layer_cls.from_weights(
        values, **kwargs, dtype=dtype or _default_dtype(params)
    )


def load_weights(layer: Layer, state_dict: Mapping[str, Any]) -> None:
    """Assigns a PyTorch state_dict (no prefix) to an existing tflstm layer.

    Strict, as `load_state_dict(strict=True)`: every missing, unexpected or
    mismatched key is reported in one `ValueError` before anything is assigned.
    Values are cast to the layer's variable dtype.
    """
    expected = {v.name: tuple(v.shape) for v in _torch_weights(layer)}
    arrays = {k: to_numpy(v) for k, v in state_dict.items()}
    check_state_dict(expected, arrays, f"{type(layer).__name__} {layer.name!r}")
    for variable in _torch_weights(layer):
        variable.assign(arrays[variable.name].astype(variable.dtype))


def _torch_weights(layer: Layer) -> list:
    if not isinstance(layer, (tflstm.LSTM, tflstm.LSTMCell)):
        raise TypeError(
            "Expected a tflstm.LSTM or tflstm.LSTMCell layer. "
            f"Received: an object of type {type(layer).__name__}"
        )
    if isinstance(layer, tflstm.LSTM):
        shapes = tflstm.lstm_param_shapes(
            layer.input_size,
            layer.hidden_size,
            layer.num_layers,
            layer.bias,
            layer.bidirectional,
            layer.proj_size,
        )
    else:
        shapes = tflstm.lstm_cell_param_shapes(
            layer.input_size, layer.hidden_size, layer.bias
        )
    return [getattr(layer, name) for name in shapes]


def to_torch(layer: Layer) -> dict[str, np.ndarray]:
    """The layer's weights as a state_dict with `nn.LSTM`'s (or
    `nn.LSTMCell`'s) exact keys, order and shapes, as numpy arrays (copies).

    `module.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads
    it; `to_torch_module` does this for you.
    """
    return {v.name: np.array(v.numpy()) for v in _torch_weights(layer)}


def torch_config(layer: Layer) -> dict[str, Any]:
    """The `torch.nn.LSTM(...)` (or `LSTMCell`) arguments of a tflstm layer."""
    config = layer.get_config()
    keys = ["input_size", "hidden_size", "bias"]
    if isinstance(layer, tflstm.LSTM):
        keys += ["num_layers", "batch_first", "dropout", "bidirectional", "proj_size"]
    return {k: config[k] for k in keys}


def to_torch_module(layer: Layer):
    """A `torch.nn.LSTM` (or `nn.LSTMCell`) with the layer's configuration and
    weights, in the layer's dtype (float16/bfloat16 layers give float32)."""
    torch = require("torch", extra="torch", purpose="to_torch_module")

    module_cls = torch.nn.LSTM if isinstance(layer, tflstm.LSTM) else torch.nn.LSTMCell
    state_dict = {k: torch.from_numpy(v) for k, v in to_torch(layer).items()}
    dtype = next(iter(state_dict.values())).dtype
    if dtype not in (torch.float32, torch.float64):
        state_dict = {k: v.float() for k, v in state_dict.items()}
        dtype = torch.float32
    module = module_cls(**torch_config(layer), dtype=dtype)
    module.load_state_dict(state_dict, strict=True)
    return module


def torch_module_from(
    state_dict: Mapping[str, Any], prefix: str = "", *, batch_first: bool = False
):
    """A float32 `torch.nn.LSTM` (or `nn.LSTMCell`) built by torch itself from
    the parameters at `prefix`: the independent reference for `compare`."""
    torch = require("torch", extra="torch", purpose="torch_module_from")

    params = {k: to_numpy(v) for k, v in select(state_dict, prefix).items()}
    spec = infer_spec(params, normalize_prefix(prefix))
    kwargs = spec.layer_kwargs()
    if spec.kind == "LSTM":
        module = torch.nn.LSTM(**kwargs, batch_first=batch_first)
    else:
        module = torch.nn.LSTMCell(**kwargs)
    tensors = {k: torch.from_numpy(v.astype("float32")) for k, v in params.items()}
    module.load_state_dict(tensors, strict=True)
    return module
