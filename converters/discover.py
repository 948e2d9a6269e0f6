"""Finding the recurrent modules (`nn.LSTM`, `nn.GRU`, `nn.RNN`, their cells)
in a state_dict and inferring their configuration.

Pure functions of keys and shapes: nothing here imports torch, TensorFlow or
Keras, so that `tflstm-convert list` starts in a fraction of a second. The
cell comes from the shapes (`_tflstm.cells.by_gates`: `weight_hh` has 4
times as many rows as columns for an LSTM, 3 for a GRU, 1 for an RNN; a
`weight_hr` makes it a projected LSTM), its names from `_tflstm.params`.
An RNN's nonlinearity is not in a state_dict (`converters.from_torch` takes
it, defaulting to tanh).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from _tflstm.cells import CELLS, CellSpec, by_gates
from _tflstm.params import cell_param_shapes, layer_param_shapes

_KEY = re.compile(
    r"^(?P<prefix>(?:.*\.)?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
    r"(?:_l(?P<layer>\d+)(?P<reverse>_reverse)?)?$"
)


@dataclasses.dataclass(frozen=True)
class RecurrentSpec:
    """One recurrent module found in a state_dict: its torch class in `kind`
    (`"LSTM"`, `"LSTMCell"`, `"GRU"`, `"GRUCell"`, `"RNN"`, `"RNNCell"`,
    the same names in `tflstm`).

    `prefix` is the module's name in the model, as `nn.Module.get_submodule`
    and `from_torch(..., prefix=)` take it: `"encoder.rnn"` for the keys
    `encoder.rnn.weight_ih_l0`, ...; `""` at the root. The other fields are the
    constructor arguments inferred from the shapes (`num_layers`,
    `bidirectional` and `proj_size` are 1, False, 0 for a cell; `proj_size`
    is an LSTM's only).
    """

    prefix: str
    kind: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    proj_size: int = 0

    @property
    def cell(self) -> CellSpec:
        """The cell's registry entry (`_tflstm.cells.CELLS`)."""
        return next(c for c in CELLS.values() if self.kind in (c.layer, c.cell))

    @property
    def is_cell(self) -> bool:
        """A one-step module (`nn.LSTMCell`, `nn.GRUCell`, `nn.RNNCell`)."""
        return self.kind == self.cell.cell

    def layer_kwargs(self) -> dict[str, Any]:
        """Arguments for the tflstm class of the same name (`tflstm.LSTM(...)`)."""
        kwargs = dict(
            input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias
        )
        if not self.is_cell:
            kwargs.update(num_layers=self.num_layers, bidirectional=self.bidirectional)
            if self.cell.projection:
                kwargs.update(proj_size=self.proj_size)
        return kwargs

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The keys (without prefix) and shapes that torch would hold."""
        if self.is_cell:
            return cell_param_shapes(self.cell, **self.layer_kwargs())
        return layer_param_shapes(self.cell, **self.layer_kwargs())

    def describe(self) -> str:
        """E.g. `"encoder.rnn: nn.LSTM(input_size=40, ...)"`; `(root)` at the root."""
        args = ", ".join(f"{k}={v}" for k, v in self.layer_kwargs().items())
        return f"{self.prefix or '(root)'}: nn.{self.kind}({args})"


def normalize_prefix(prefix: str) -> str:
    """The keys' common start: `"encoder.rnn"` and `"encoder.rnn."` both give
    `"encoder.rnn."`; the root is `""`."""
    return prefix if not prefix or prefix.endswith(".") else prefix + "."


def show_prefix(prefix: str) -> str:
    """A prefix as the user passes it: `'encoder.rnn'`, or `'' (the root)`."""
    name = prefix.rstrip(".")
    return repr(name) if name else "'' (the root)"


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def _groups(state_dict: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Parameter-like keys grouped by prefix, the prefix stripped."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if match:
            name = key[len(match["prefix"]) :]
            groups.setdefault(match["prefix"], {})[name] = value
    return groups


def check_state_dict(
    expected: Mapping[str, tuple[int, ...]], actual: Mapping[str, Any], what: str
) -> None:
    """Strict loading: one `ValueError` that lists every missing, unexpected
    and mismatched key (with both shapes), as `load_state_dict(strict=True)`."""
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    mismatched = [
        f"{k}: expected {expected[k]}, received {_shape(actual[k])}"
        for k in expected
        if k in actual and _shape(actual[k]) != tuple(expected[k])
    ]
    if missing or unexpected or mismatched:
        lines = [f"The weights do not fit {what}."]
        if missing:
            lines.append(f"Missing keys: {', '.join(missing)}")
        if unexpected:
            lines.append(f"Unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            lines.append("Shape mismatches: " + "; ".join(mismatched))
        raise ValueError("\n".join(lines))


def _cell_of(params: Mapping[str, Any], suffix: str, where: str) -> CellSpec:
    """The cell whose parameters these are, from `weight_hh`'s shape (rows
    over columns: the gate count) or a projection (`weight_hr`: an LSTM)."""
    if f"weight_hr{suffix}" in params:
        return CELLS["lstm"]
    w_hh = params.get(f"weight_hh{suffix}")
    shape = None if w_hh is None else _shape(w_hh)
    if shape is not None and len(shape) == 2 and 0 not in shape:
        rows, columns = shape
        spec = by_gates(rows // columns) if rows % columns == 0 else None
        if spec is not None:
            return spec
    got = "no such key" if shape is None else f"shape {shape}"
    gates = ", ".join(
        f"({c.gates}*hidden_size, hidden_size) for an nn.{c.layer}"
        if c.gates > 1
        else f"(hidden_size, hidden_size) for an nn.{c.layer}"
        for c in CELLS.values()
    )
    raise ValueError(
        f"Cannot tell which recurrent module the parameters {where} belong to: "
        f"expected `weight_hh{suffix}` of shape {gates}. Received: {got}"
    )


def infer_spec(params: Mapping[str, Any], prefix: str = "") -> RecurrentSpec:
    """Infers the module (`nn.LSTM`, `nn.GRU`, `nn.RNN`, their cells) and
    configuration of one recurrent module from its parameters.

    Args:
        params: `{name: array}` with the prefix already removed, e.g.
            `{"weight_ih_l0": ..., "weight_hh_l0": ...}`.
        prefix: Only used in messages and in the returned spec.

    Raises:
        ValueError: if the keys mix layer and cell names, if `weight_hh`'s
            shape is no cell's, or if any key or shape is inconsistent with
            the configuration read off `weight_ih_l0` (`weight_ih`),
            `bias_ih_l0` and `weight_hr_l0`.
    """
    prefix = prefix.rstrip(".")
    where = f"at prefix {prefix!r}" if prefix else "at the root"
    matches = {name: _KEY.match(name) for name in params}
    layered = {n: m for n, m in matches.items() if m and m["layer"] is not None}
    if layered and len(layered) != len(params):
        plain = sorted(set(params) - set(layered))
        raise ValueError(
            f"The parameters {where} mix layer names (weight_ih_l0, ...) with "
            f"other names. Received: {', '.join(plain)}"
        )
    suffix = "_l0" if layered else ""
    cell = _cell_of(params, suffix, where)
    kind = cell.layer if layered else cell.cell
    w_ih = params.get(f"weight_ih{suffix}")
    gates = cell.gates
    if (
        w_ih is None
        or len(_shape(w_ih)) != 2
        or _shape(w_ih)[0] % gates
        or 0 in _shape(w_ih)
    ):
        got = "no such key" if w_ih is None else f"shape {_shape(w_ih)}"
        raise ValueError(
            f"Cannot infer the configuration of the nn.{kind} {where}: expected "
            f"`weight_ih{suffix}` of shape ({gates}*hidden_size, input_size). "
            f"Received: {got}"
        )
    gate_rows, input_size = _shape(w_ih)
    spec: dict[str, Any] = dict(
        prefix=prefix,
        kind=kind,
        input_size=input_size,
        hidden_size=gate_rows // gates,
        bias=f"bias_ih{suffix}" in params or f"bias_hh{suffix}" in params,
    )
    if layered:
        layers = {int(layered[n]["layer"]) for n in params}
        w_hr = params.get("weight_hr_l0")
        spec.update(
            num_layers=max(layers) + 1,
            bidirectional=any(layered[n]["reverse"] for n in params),
            proj_size=_shape(w_hr)[0] if w_hr is not None and _shape(w_hr) else 0,
        )
    result = RecurrentSpec(**spec)
    if result.proj_size and result.proj_size >= result.hidden_size:
        raise ValueError(
            f"Inconsistent nn.LSTM parameters {where}: `weight_hr_l0` gives "
            f"proj_size={result.proj_size}, expected smaller than "
            f"hidden_size={result.hidden_size}."
        )
    check_state_dict(result.param_shapes(), params, f"the nn.{kind} inferred {where}")
    return result


def find_recurrent(
    source: Mapping[str, Any] | str | os.PathLike, *, trust_pickle: bool = False
) -> list[RecurrentSpec]:
    """Every recurrent module (`nn.LSTM`, `nn.GRU`, `nn.RNN` and their
    cells) in a (whole-model) state_dict.

    >>> import numpy as np
    >>> sd = {"embed.weight": np.zeros((10, 3)),
    ...       "rnn.weight_ih_l0": np.zeros((8, 3)),
    ...       "rnn.weight_hh_l0": np.zeros((8, 2)),
    ...       "dec.weight_ih": np.zeros((6, 2)),
    ...       "dec.weight_hh": np.zeros((6, 2))}
    >>> for spec in find_recurrent(sd):
    ...     print(spec.describe())
    dec: nn.GRUCell(input_size=2, hidden_size=2, bias=False)
    rnn: nn.LSTM(input_size=3, hidden_size=2, bias=False, num_layers=1, \
bidirectional=False, proj_size=0)

    Args:
        source: A state_dict (values with a `.shape`: tensors, arrays,
            `converters.TensorInfo`), or a checkpoint path (any format of
            `converters.load_checkpoint`), of which only the keys and shapes
            are read.
        trust_pickle: For a path, as in `converters.load_checkpoint`.

    Raises:
        ValueError: if a group of recurrent parameters is inconsistent.
    """
    if isinstance(source, (str, os.PathLike)):
        from converters.checkpoint import read_shapes

        source = read_shapes(source, trust_pickle=trust_pickle)
    return [infer_spec(p, prefix) for prefix, p in sorted(_groups(source).items())]


def select(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The parameters of the recurrent module at `prefix`, the prefix removed.

    Raises:
        ValueError: if no recurrent module's parameters sit at `prefix`; the
            message lists the prefixes that do hold one.
    """
    prefix = normalize_prefix(prefix)
    groups = _groups(state_dict)
    if prefix not in groups:
        found = [show_prefix(p) for p in sorted(groups)]
        held = (
            "The checkpoint holds recurrent parameters (nn.LSTM, nn.GRU, nn.RNN or "
            f"their cells) at the prefixes: {', '.join(found)}"
            if found
            else "The checkpoint holds no parameters of an nn.LSTM, nn.GRU, nn.RNN "
            "or their cells"
        )
        raise ValueError(
            f"No recurrent parameters at prefix {show_prefix(prefix)}. {held}"
        )
    return groups[prefix]
