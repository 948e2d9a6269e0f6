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
from _tflstm.params import cell_param_shapes, layer_param_shapes
from converters.checkpoint import open_checkpoint
from converters.checkpoint.base import is_module, to_numpy
from converters.discover import (
    RecurrentSpec,
    check_state_dict,
    infer_spec,
    normalize_prefix,
    select,
)
from tflstm._cell_layer import CellLayer
from tflstm._recurrent import RecurrentLayer

# tflstm.LSTM, GRU, RNN and their cells
Layer = RecurrentLayer | CellLayer
Source = Any  # nn.LSTM, nn.GRU, nn.RNN, their cells, nn.Module, a state_dict or a path


def layer_class(kind: str) -> type[Layer]:
    """The tflstm class of a torch class name (`"GRU"` -> `tflstm.GRU`)."""
    return getattr(tflstm, kind)


def torch_kind(layer: Any) -> str:
    """The torch class name of a tflstm layer (`tflstm.GRU` -> `"GRU"`)."""
    if not isinstance(layer, (RecurrentLayer, CellLayer)):
        raise TypeError(
            "Expected a tflstm layer (tflstm.LSTM, GRU, RNN or their cells). "
            f"Received: an object of type {type(layer).__name__}"
        )
    spec = layer.cell.spec
    return spec.cell if isinstance(layer, CellLayer) else spec.layer


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
    nonlinearity: str | None = None,
    dtype: str | None = None,
    trust_pickle: bool = False,
) -> Layer:
    """Builds the tflstm layer (`tflstm.LSTM`, `GRU`, `RNN`, their cells)
    of the torch module whose weights `source` holds.

    The module and its configuration (`input_size, hidden_size, num_layers,
    bias, bidirectional, proj_size`) are inferred from the parameter names and
    shapes (`weight_hh`'s rows over columns: 4 for an LSTM, 3 for a GRU, 1
    for an RNN); an inconsistent set is an error that lists every problem.

    Args:
        source: An `nn.LSTM`, `nn.GRU`, `nn.RNN` or their cells; any `nn.Module`
            holding one at `prefix`; a state_dict of torch tensors or numpy
            arrays; or a checkpoint path (see `converters.load_checkpoint`),
            of which only the tensors under `prefix` are read.
        prefix: Where the module sits in a whole-model state_dict, e.g.
            `"encoder.rnn"` (a trailing "." is optional). Defaults to `""`,
            the root; `converters.find_recurrent` lists the prefixes.
        batch_first: Defaults to the module's own value when `source` holds an
            `nn.LSTM`/`nn.GRU` module (a module, or a file of a whole model written by
            `torch.save(model)` and read with `trust_pickle=True`), else
            `False` (a state_dict does not record it).
        dropout: The same, defaulting to the module's value, else `0.0`.
        nonlinearity: An `nn.RNN`'s or `nn.RNNCell`'s (`"tanh"` or
            `"relu"`): the module's own value where `source` holds the
            module, else `"tanh"`, torch's default (a state_dict does not
            record it). Refused for the other cells.
        dtype: The layer's dtype. Defaults to `"float64"` for float64 weights
            and `"float32"` otherwise: float16 and bfloat16 checkpoints are
            widened to float32, exactly.
        trust_pickle: For a checkpoint path: load a torch file that holds
            other objects than tensors (e.g. `torch.save(model)`), which can
            run code; see `converters.load_checkpoint`. Defaults to `False`.

    Returns:
        The tflstm class of torch's name: `tflstm.LSTM` for `nn.LSTM` weights,
        `tflstm.GRUCell` for `nn.GRUCell` weights (names without the `_l0`
        suffix), ...

    Raises:
        ValueError: if no recurrent module sits at `prefix` (the message names
            those that do), or if the parameters are inconsistent.
    """
    prefix = normalize_prefix(prefix)
    params, read, module = _params_of(source, prefix, trust_pickle)
    spec = infer_spec(params, prefix)
    kwargs = spec.layer_kwargs()
    if not spec.is_cell:
        kwargs["batch_first"] = (
            batch_first
            if batch_first is not None
            else bool(getattr(module, "batch_first", False))
        )
        kwargs["dropout"] = (
            dropout if dropout is not None else float(getattr(module, "dropout", 0.0))
        )
    elif batch_first is not None or dropout is not None:
        raise ValueError(
            f"`batch_first` and `dropout` do not apply to an nn.{spec.kind}. "
            f"Received: batch_first={batch_first}, dropout={dropout}"
        )
    kwargs.update(cell_options(spec, module, nonlinearity))

    # Each weight is created from its tensor, read one at a time (no random
    # initialisation, no copy): a checkpoint's LSTM costs about its size in
    # memory (benchmarks/checkpoint_memory.py).
    def initial(name: str) -> Callable:
        return lambda shape, dtype=None: read(name).astype(dtype, copy=False)

    values = {name: initial(name) for name in spec.param_shapes()}
    return layer_class(spec.kind).from_weights(
        values, **kwargs, dtype=dtype or _default_dtype(params)
    )


def cell_options(
    spec: RecurrentSpec, module: Any, nonlinearity: str | None
) -> dict[str, Any]:
    """The constructor's arguments that a state_dict does not record and
    that only some cells have (an RNN's `nonlinearity`): the caller's value,
    else the torch module's, else torch's default."""
    choices = spec.cell.nonlinearities
    if not choices:
        if nonlinearity is not None:
            raise ValueError(
                f"`nonlinearity` applies to an nn.RNN or nn.RNNCell, not to an "
                f"nn.{spec.kind}. Received: nonlinearity={nonlinearity!r}"
            )
        return {}
    if nonlinearity is None:
        nonlinearity = getattr(module, "nonlinearity", choices[0])
    return {"nonlinearity": nonlinearity}


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
    torch_kind(layer)  # a tflstm layer, or a TypeError
    spec = layer.cell.spec
    if isinstance(layer, RecurrentLayer):
        shapes = layer_param_shapes(
            spec,
            layer.input_size,
            layer.hidden_size,
            layer.num_layers,
            layer.bias,
            layer.bidirectional,
            layer.proj_size,
        )
    else:
        shapes = cell_param_shapes(
            spec, layer.input_size, layer.hidden_size, layer.bias
        )
    return [getattr(layer, name) for name in shapes]


def to_torch(layer: Layer) -> dict[str, np.ndarray]:
    """The layer's weights as a state_dict with torch's module's (`nn.LSTM`,
    `nn.GRU`, ...) exact keys, order and shapes, as numpy arrays (copies).

    `module.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads
    it; `to_torch_module` does this for you.
    """
    return {v.name: np.array(v.numpy()) for v in _torch_weights(layer)}


def torch_config(layer: Layer) -> dict[str, Any]:
    """The torch constructor's arguments (`torch.nn.LSTM(...)`, `nn.GRU`, ...)
    of a tflstm layer."""
    torch_kind(layer)  # a tflstm layer, or a TypeError
    config = layer.get_config()
    keys = ["input_size", "hidden_size", "bias"]
    if isinstance(layer, RecurrentLayer):
        keys += ["num_layers", "batch_first", "dropout", "bidirectional"]
        keys += ["proj_size"] if layer.cell.spec.projection else []
    keys += ["nonlinearity"] if layer.cell.spec.nonlinearities else []
    return {k: config[k] for k in keys}


def to_torch_module(layer: Layer):
    """The torch module (`torch.nn.LSTM`, `nn.GRU`, ...) with the layer's
    configuration and weights, in the layer's dtype (float16/bfloat16 layers
    give float32)."""
    torch = require("torch", extra="torch", purpose="to_torch_module")

    module_cls = getattr(torch.nn, torch_kind(layer))
    state_dict = {k: torch.from_numpy(v) for k, v in to_torch(layer).items()}
    dtype = next(iter(state_dict.values())).dtype
    if dtype not in (torch.float32, torch.float64):
        state_dict = {k: v.float() for k, v in state_dict.items()}
        dtype = torch.float32
    module = module_cls(**torch_config(layer), dtype=dtype)
    module.load_state_dict(state_dict, strict=True)
    return module


def torch_module_from(
    state_dict: Mapping[str, Any],
    prefix: str = "",
    *,
    batch_first: bool = False,
    nonlinearity: str | None = None,
):
    """A torch module (`torch.nn.LSTM`, `nn.GRU`, ...) built by torch itself
    from the parameters at `prefix`: the independent reference for `compare`
    (`nonlinearity`: an RNN's, as in `from_torch`). float64 for float64
    parameters (rounding them to float32 would make the reference differ
    from a float64 layer by float32's rounding), else float32."""
    torch = require("torch", extra="torch", purpose="torch_module_from")

    params = {k: to_numpy(v) for k, v in select(state_dict, prefix).items()}
    spec = infer_spec(params, normalize_prefix(prefix))
    kwargs = spec.layer_kwargs()
    if not spec.is_cell:
        kwargs["batch_first"] = batch_first
    kwargs.update(cell_options(spec, None, nonlinearity))
    dtype = _default_dtype(params)
    module = getattr(torch.nn, spec.kind)(**kwargs, dtype=getattr(torch, dtype))
    tensors = {k: torch.from_numpy(v.astype(dtype)) for k, v in params.items()}
    module.load_state_dict(tensors, strict=True)
    return module
