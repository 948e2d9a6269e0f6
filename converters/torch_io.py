"""PyTorch <-> tflstm: modules, state_dicts and checkpoint files.

The parameter names are the same on both sides (tflstm keeps PyTorch's), so
the mapping is the identity on names and shapes: nothing is transposed,
reordered or summed, and a round trip is bit-exact.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

import tflstm
from converters.checkpoint import load_checkpoint
from converters.discover import check_state_dict, infer_spec, normalize_prefix, select

Layer = tflstm.LSTM | tflstm.LSTMCell
Source = Any  # nn.LSTM, nn.LSTMCell, nn.Module, a state_dict or a path


def _is_torch_module(obj: Any) -> bool:
    return any(
        c.__module__.startswith("torch.nn") and c.__name__ == "Module"
        for c in type(obj).__mro__
    )


def _state_dict_of(source: Source, prefix: str) -> tuple[dict[str, Any], Any]:
    """The flat state_dict of `source`, and the torch submodule at `prefix`."""
    if _is_torch_module(source):
        sub = source.get_submodule(prefix.rstrip(".")) if prefix else source
        return dict(source.state_dict()), sub
    if isinstance(source, (str, os.PathLike)):
        return load_checkpoint(source), None
    if isinstance(source, Mapping):
        return dict(source), None
    raise TypeError(
        "Expected `source` to be a torch.nn.Module, a state_dict (a mapping of "
        "names to tensors or arrays) or a checkpoint path. "
        f"Received: an object of type {type(source).__name__}"
    )


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    tensor = value.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        tensor = tensor.float()  # numpy has no bfloat16; the widening is exact
    return tensor.numpy()


def _default_dtype(params: Mapping[str, np.ndarray]) -> str:
    dtypes = {a.dtype for a in params.values()}
    return "float64" if dtypes == {np.dtype("float64")} else "float32"


def from_torch(
    source: Source,
    *,
    prefix: str = "",
    batch_first: bool | None = None,
    dropout: float | None = None,
    dtype: str | None = None,
) -> Layer:
    """Builds a `tflstm.LSTM` (or `tflstm.LSTMCell`) holding PyTorch's weights.

    The configuration (`input_size, hidden_size, num_layers, bias,
    bidirectional, proj_size`) is inferred from the parameter names and shapes;
    an inconsistent set is an error that lists every problem.

    Args:
        source: An `nn.LSTM` or `nn.LSTMCell`; any `nn.Module` holding one at
            `prefix`; a state_dict of torch tensors or numpy arrays; or a
            checkpoint path (see `converters.load_checkpoint`).
        prefix: Where the LSTM sits in a whole-model state_dict, e.g.
            `"encoder.rnn"` (a trailing "." is optional). Defaults to `""`,
            the root; `converters.find_lstms` lists the prefixes.
        batch_first: Defaults to the module's own value when `source` holds an
            `nn.LSTM` module, else `False` (a state_dict does not record it).
        dropout: The same, defaulting to the module's value, else `0.0`.
        dtype: The layer's dtype. Defaults to `"float64"` for float64 weights
            and `"float32"` otherwise: float16 and bfloat16 checkpoints are
            widened to float32, exactly.

    Returns:
        `tflstm.LSTM` for `nn.LSTM` weights, `tflstm.LSTMCell` for
        `nn.LSTMCell` weights (names without the `_l0` suffix).

    Raises:
        ValueError: if no LSTM sits at `prefix` (the message names those that
            do), or if the parameters are inconsistent.
    """
    prefix = normalize_prefix(prefix)
    state_dict, module = _state_dict_of(source, prefix)
    params = {k: _numpy(v) for k, v in select(state_dict, prefix).items()}
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
        layer_cls: type = tflstm.LSTM
    else:
        if batch_first is not None or dropout is not None:
            raise ValueError(
                "`batch_first` and `dropout` do not apply to an nn.LSTMCell. "
                f"Received: batch_first={batch_first}, dropout={dropout}"
            )
        layer_cls = tflstm.LSTMCell
    layer = layer_cls(**kwargs, dtype=dtype or _default_dtype(params))
    load_weights(layer, params)
    return layer


def load_weights(layer: Layer, state_dict: Mapping[str, Any]) -> None:
    """Assigns a PyTorch state_dict (no prefix) to an existing tflstm layer.

    Strict, as `load_state_dict(strict=True)`: every missing, unexpected or
    mismatched key is reported in one `ValueError` before anything is assigned.
    Values are cast to the layer's variable dtype.
    """
    expected = {v.name: tuple(v.shape) for v in _torch_weights(layer)}
    arrays = {k: _numpy(v) for k, v in state_dict.items()}
    check_state_dict(expected, arrays, f"{type(layer).__name__} {layer.name!r}")
    for variable in _torch_weights(layer):
        variable.assign(tf.cast(arrays[variable.name], variable.dtype))


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
    import torch

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
    import torch

    params = {k: _numpy(v) for k, v in select(state_dict, prefix).items()}
    spec = infer_spec(params, normalize_prefix(prefix))
    kwargs = spec.layer_kwargs()
    if spec.kind == "LSTM":
        module = torch.nn.LSTM(**kwargs, batch_first=batch_first)
    else:
        module = torch.nn.LSTMCell(**kwargs)
    tensors = {k: torch.from_numpy(v.astype("float32")) for k, v in params.items()}
    module.load_state_dict(tensors, strict=True)
    return module
