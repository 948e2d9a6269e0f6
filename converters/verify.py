"""Run torch and tflstm on the same input and judge how far apart they are.

The judgement is the test suite's (`_tflstm.tolerance`): a float32 result is
compared with a **float64** torch run, next to torch's own float32 error on
the same input, with a floor of a few ulps of each tensor's magnitude. So a
port as accurate as torch passes whatever the magnitude of its states (a
cell state of 15 carries 1e-5 of float32 rounding), and a wrong one fails.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, NamedTuple

import numpy as np

from _tflstm.extras import require
from _tflstm.tolerance import (
    ATOL,
    FLOAT32_ERROR_FLOOR_ULPS,
    FLOAT32_ERROR_RATIO,
    float32_error_bound,
)
from converters.torch_io import Layer
from tflstm._cell_layer import CellLayer

__all__ = [
    "Report",
    "TensorError",
    "compare",
    "format_report",
    "random_input",
    "random_lengths",
    "torch_forward",
]

# What `random_input` draws, as `--verify` prints it.
RANDOM_INPUT = "standard normal"


def random_input(layer: Layer, *, steps: int = 20, batch: int = 3, seed: int = 0):
    """A standard-normal input of the layer's layout, in float64."""
    rng = np.random.default_rng(seed)
    if isinstance(layer, CellLayer):
        return rng.standard_normal((batch, layer.input_size))
    if layer.batch_first:
        return rng.standard_normal((batch, steps, layer.input_size))
    return rng.standard_normal((steps, batch, layer.input_size))


def random_lengths(steps: int, batch: int, *, seed: int = 0) -> np.ndarray:
    """Unsorted int32 sequence lengths in [1, steps], holding 1 and `steps`
    when `batch >= 2` (the edge cases of packed sequences)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, steps + 1, size=batch)
    if batch >= 2:
        lengths[:2] = [steps, 1]
    return rng.permutation(lengths).astype("int32")


class TensorError(NamedTuple):
    """One tensor's error against torch's float64 run, and what it may be.

    Attributes:
        abs: Max abs error.
        rel: `abs` over the reference's largest magnitude.
        bound: The largest `abs` allowed (the report's rule).
        torch_abs: torch's own float32 max abs error on the same input, for
            the float32 rule; `None` where the rule does not use it.
    """

    abs: float
    rel: float
    bound: float
    torch_abs: float | None = None

    @property
    def ok(self) -> bool:
        return self.abs <= self.bound


class Report(dict):
    """`compare`'s result: `{tensor name: TensorError}` and the rule applied
    (`str(report)` is the table `--verify` prints)."""

    def __init__(self, errors: dict[str, TensorError], rule: str) -> None:
        super().__init__(errors)
        self.rule = rule

    @property
    def ok(self) -> bool:
        """Whether every tensor is within its bound."""
        return all(e.ok for e in self.values())

    @property
    def worst(self) -> str:
        """The tensor nearest to (or furthest above) its bound."""
        return max(self, key=lambda k: self[k].abs / max(self[k].bound, 1e-300))

    def __str__(self) -> str:
        return format_report(self)


def _rule(dtype: str, atol: float | None, rtol: float | None) -> str:
    if atol is not None or rtol is not None:
        parts = [f"atol {atol:.0e}"] if atol is not None else []
        if rtol is not None:
            parts.append(f"rtol {rtol:.0e} x the tensor's largest magnitude")
        return f"max abs error against torch in float64 <= {' + '.join(parts)}"
    if dtype == "float64":
        return f"max abs error against torch in float64 <= {ATOL['float64']:.0e}"
    return (
        "max abs error against torch in float64 <= "
        f"{FLOAT32_ERROR_RATIO['inference']:g} x max(torch's own float32 error, "
        f"{FLOAT32_ERROR_FLOOR_ULPS} ulps of the tensor's largest magnitude)"
    )


def torch_forward(module: Any, input: Any, hx: Any = None, lengths: Any = None) -> Any:
    """`module(input, hx)`, or with `lengths` torch's packed-sequence run of a
    right-padded batch (`pack_padded_sequence(..., enforce_sorted=False)`,
    then `pad_packed_sequence` with zeros to the input's length); an
    unbatched input runs on its first `lengths` steps, padded with zeros.
    Torch tensors in and out, so gradients flow (tests/oracle.py uses it)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    if lengths is None:
        return module(input, hx)
    if input.dim() == 2:  # unbatched: torch has no packed form; slice and pad
        n = int(np.reshape(lengths, ()))
        output, state = module(input[:n], hx)
        pad = output.new_zeros((input.shape[0] - n, output.shape[1]))
        return torch.cat([output, pad]), state
    first = module.batch_first
    packed = pack_padded_sequence(
        input, torch.as_tensor(lengths, dtype=torch.int64), first, enforce_sorted=False
    )
    output, state = module(packed, hx)
    steps = input.shape[1 if first else 0]
    return pad_packed_sequence(output, first, total_length=steps)[0], state


def _outputs(module: Any, x: np.ndarray, lengths: np.ndarray | None, dtype: str):
    """torch's outputs in `dtype`, flat, as float64 numpy arrays."""
    import torch

    # A copy: the caller's module keeps its dtype and training mode.
    module = copy.deepcopy(module).to(getattr(torch, dtype)).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch on CPU notes that oneDNN lacks projections; not the user's concern.
        warnings.filterwarnings("ignore", "LSTM with projections is not supported")
        result = torch_forward(module, torch.from_numpy(x.astype(dtype)), None, lengths)
    return [t.numpy().astype("float64") for t in _flat(result)]


def _flat(result: Any) -> list:
    """torch's (or tflstm's) return value as a flat list: `(output, (h_n,
    c_n))`, `(output, h_n)`, `(h_1, c_1)` or `h_1`."""
    if not isinstance(result, (tuple, list)):
        return [result]
    return [t for part in result for t in _flat(part)]


def output_names(layer: Any) -> tuple[str, ...]:
    """The names of a layer's flat outputs: `output` and `{state}_n`, or a
    cell's `{state}_1` (`("output", "h_n", "c_n")` for an LSTM). `layer`: a
    tflstm layer, or a stand-in with `cell` and `one_step` (the CLI's)."""
    states = layer.cell.spec.states
    if getattr(layer, "one_step", isinstance(layer, CellLayer)):
        return tuple(f"{s}_1" for s in states)
    return ("output", *(f"{s}_n" for s in states))


def compare(
    layer: Layer,
    module: Any,
    x: np.ndarray | None = None,
    sequence_lengths: np.ndarray | None = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
) -> Report:
    """Runs `layer` and torch's `module` on the same input and judges every
    output by the test suite's rule (`_tflstm.tolerance`).

    The reference is torch in float64 on the input as the layer sees it. A
    float32 layer's error is judged next to torch's own float32 error:
    `error <= 4 * max(torch_error, 4 ulps of the tensor's largest magnitude)`;
    a float64 layer's against 1e-10. `atol`/`rtol` replace the rule by
    `error <= atol + rtol * largest magnitude`.

    Args:
        layer: A tflstm layer, or a callable with the same call convention,
            `compute_dtype` and `cell` (e.g. a loaded SavedModel's signature
            wrapped by the CLI).
        module: The torch module (`torch.nn.LSTM`, `nn.GRU`, ...) it was
            converted from.
        x: The input; defaults to `random_input(layer)`.
        sequence_lengths: Optional lengths of a right-padded batch: torch
            then runs `pack_padded_sequence(..., enforce_sorted=False)` and
            `layer` is called with `sequence_lengths=`.
        atol: A fixed tolerance on the max abs error, instead of the rule.
        rtol: A tolerance relative to each tensor's largest magnitude (added
            to `atol`), instead of the rule.

    Returns:
        A `Report`: `{"output", "h_n", "c_n"}` for an LSTM, `{"output",
        "h_n"}` for a GRU, `{"h_1", "c_1"}` for an LSTMCell, `{"h_1"}` for a
        GRUCell, each a `TensorError`; `report.ok` is the verdict.

    >>> import torch
    >>> module = torch.nn.LSTM(3, 4)
    >>> import converters
    >>> report = compare(converters.from_torch(module), module)
    >>> sorted(report), report.ok
    (['c_n', 'h_n', 'output'], True)
    """
    require("torch", extra="torch", purpose="compare")
    x = random_input(layer) if x is None else np.asarray(x)
    dtype = "float64" if layer.compute_dtype == "float64" else "float32"
    x = x.astype(dtype)  # what the layer sees; the reference runs on it too
    reference = _outputs(module, x, sequence_lengths, "float64")
    own = None
    if dtype != "float64" and atol is None and rtol is None:
        own = _outputs(module, x, sequence_lengths, "float32")
    if sequence_lengths is None:
        got = layer(x)
    else:
        got = layer(x, sequence_lengths=sequence_lengths)
    names = output_names(layer)
    got = _flat(got)
    errors = {}
    for i, (name, want, value) in enumerate(zip(names, reference, got, strict=True)):
        scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
        err = float(np.abs(np.asarray(value, dtype="float64") - want).max(initial=0))
        torch_abs = None
        if atol is not None or rtol is not None:
            bound = (atol or 0.0) + (rtol or 0.0) * scale
        elif own is None:
            bound = ATOL["float64"]
        else:
            torch_abs = float(np.abs(own[i] - want).max(initial=0.0))
            bound = float32_error_bound(torch_abs, want, "inference")
        errors[name] = TensorError(err, err / scale, bound, torch_abs)
    return Report(errors, _rule(dtype, atol, rtol))


def format_report(report: Report) -> str:
    """The table `tflstm-convert --verify` prints: each tensor's error, the
    float32 error of torch itself, the bound, and the rule."""
    lines = [
        f"{'tensor':8s} {'max abs':>10s} {'max rel':>10s} {'torch f32':>10s} "
        f"{'bound':>10s}"
    ]
    for name, e in report.items():
        own = "-" if e.torch_abs is None else f"{e.torch_abs:.2e}"
        flag = "" if e.ok else "  above the bound"
        lines.append(
            f"{name:8s} {e.abs:10.2e} {e.rel:10.2e} {own:>10s} {e.bound:10.2e}{flag}"
        )
    lines.append(f"rule: {report.rule}")
    return "\n".join(lines)
