"""Finding the LSTMs in a state_dict and inferring their configuration.

Pure functions of keys and shapes: nothing here imports torch, TensorFlow or
Keras, so that `tflstm-convert list` starts in a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

from _tflstm.params import lstm_cell_param_shapes, lstm_param_shapes

_KEY = re.compile(
    r"^(?P<prefix>(?:.*\.)?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
    r"(?:_l(?P<layer>\d+)(?P<reverse>_reverse)?)?$"
)


@dataclasses.dataclass(frozen=True)
class LSTMSpec:
    """One `nn.LSTM` (`kind="LSTM"`) or `nn.LSTMCell` found in a state_dict.

    `prefix` is the module's name in the model, as `nn.Module.get_submodule`
    and `from_torch(..., prefix=)` take it: `"encoder.rnn"` for the keys
    `encoder.rnn.weight_ih_l0`, ...; `""` at the root. The other fields are the
    constructor arguments inferred from the shapes (`num_layers`,
    `bidirectional` and `proj_size` are 1, False, 0 for a cell).
    """

    prefix: str
    kind: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    bidirectional: bool = False
    proj_size: int = 0

    def layer_kwargs(self) -> dict[str, Any]:
        """Arguments for `tflstm.LSTM(...)` or `tflstm.LSTMCell(...)`."""
        kwargs = dict(
            input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias
        )
        if self.kind == "LSTM":
            kwargs.update(
                num_layers=self.num_layers,
                bidirectional=self.bidirectional,
                proj_size=self.proj_size,
            )
        return kwargs

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The keys (without prefix) and shapes that torch would hold."""
        if self.kind == "LSTM":
            return lstm_param_shapes(**self.layer_kwargs())
        return lstm_cell_param_shapes(**self.layer_kwargs())

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


def infer_spec(params: Mapping[str, Any], prefix: str = "") -> LSTMSpec:
    """Infers the configuration of one LSTM or LSTMCell from its parameters.

    Args:
        params: `{name: array}` with the prefix already removed, e.g.
            `{"weight_ih_l0": ..., "weight_hh_l0": ...}`.
        prefix: Only used in messages and in the returned spec.

    Raises:
        ValueError: if the keys mix LSTM and LSTMCell names, or if any key or
            shape is inconsistent with the configuration read off
            `weight_ih_l0` (`weight_ih`), `bias_ih_l0` and `weight_hr_l0`.
    """
    prefix = prefix.rstrip(".")
    where = f"at prefix {prefix!r}" if prefix else "at the root"
    matches = {name: _KEY.match(name) for name in params}
    layered = {n: m for n, m in matches.items() if m and m["layer"] is not None}
    kind = "LSTM" if layered else "LSTMCell"
    if layered and len(layered) != len(params):
        plain = sorted(set(params) - set(layered))
        raise ValueError(
            f"The parameters {where} mix nn.LSTM names (weight_ih_l0, ...) with "
            f"other names. Received: {', '.join(plain)}"
        )
    suffix = "_l0" if kind == "LSTM" else ""
    w_ih = params.get(f"weight_ih{suffix}")
    if (
        w_ih is None
        or len(_shape(w_ih)) != 2
        or _shape(w_ih)[0] % 4
        or 0 in _shape(w_ih)
    ):
        got = "no such key" if w_ih is None else f"shape {_shape(w_ih)}"
        raise ValueError(
            f"Cannot infer the configuration of the nn.{kind} {where}: expected "
            f"`weight_ih{suffix}` of shape (4*hidden_size, input_size). "
            f"Received: {got}"
        )
    gate_rows, input_size = _shape(w_ih)
    spec: dict[str, Any] = dict(
        prefix=prefix,
        kind=kind,
        input_size=input_size,
        hidden_size=gate_rows // 4,
        bias=f"bias_ih{suffix}" in params or f"bias_hh{suffix}" in params,
    )
    if kind == "LSTM":
        layers = {int(layered[n]["layer"]) for n in params}
        w_hr = params.get("weight_hr_l0")
        spec.update(
            num_layers=max(layers) + 1,
            bidirectional=any(layered[n]["reverse"] for n in params),
            proj_size=_shape(w_hr)[0] if w_hr is not None and _shape(w_hr) else 0,
        )
    result = LSTMSpec(**spec)
    if result.proj_size and result.proj_size >= result.hidden_size:
        raise ValueError(
            f"Inconsistent nn.LSTM parameters {where}: `weight_hr_l0` gives "
            f"proj_size={result.proj_size}, expected smaller than "
            f"hidden_size={result.hidden_size}."
        )
    check_state_dict(result.param_shapes(), params, f"the nn.{kind} inferred {where}")
    return result


def find_lstms(
    source: Mapping[str, Any] | str | os.PathLike, *, trust_pickle: bool = False
) -> list[LSTMSpec]:
    """Every `nn.LSTM` and `nn.LSTMCell` in a (whole-model) state_dict.

    >>> import numpy as np
    >>> sd = {"embed.weight": np.zeros((10, 3)),
    ...       "rnn.weight_ih_l0": np.zeros((8, 3)),
    ...       "rnn.weight_hh_l0": np.zeros((8, 2))}
    >>> [spec.describe() for spec in find_lstms(sd)]
    ['rnn: nn.LSTM(input_size=3, hidden_size=2, bias=False, num_layers=1, \
bidirectional=False, proj_size=0)']

    Args:
        source: A state_dict (values with a `.shape`: tensors, arrays,
            `converters.TensorInfo`), or a checkpoint path (any format of
            `converters.load_checkpoint`), of which only the keys and shapes
            are read.
        trust_pickle: For a path, as in `converters.load_checkpoint`.

    Raises:
        ValueError: if a group of LSTM-named parameters is inconsistent.
    """
    if isinstance(source, (str, os.PathLike)):
        from converters.checkpoint import read_shapes

        source = read_shapes(source, trust_pickle=trust_pickle)
    return [infer_spec(p, prefix) for prefix, p in sorted(_groups(source).items())]


def select(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The parameters of the LSTM at `prefix`, the prefix removed.

    Raises:
        ValueError: if nothing LSTM-like sits at `prefix`; the message lists the
            prefixes that do hold one.
    """
    prefix = normalize_prefix(prefix)
    groups = _groups(state_dict)
    if prefix not in groups:
        found = [show_prefix(p) for p in sorted(groups)]
        held = (
            f"The checkpoint holds LSTM parameters at the prefixes: {', '.join(found)}"
            if found
            else "The checkpoint holds no nn.LSTM or nn.LSTMCell parameters"
        )
        raise ValueError(f"No LSTM parameters at prefix {show_prefix(prefix)}. {held}")
    return groups[prefix]
