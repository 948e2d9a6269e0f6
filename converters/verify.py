"""Run torch and tflstm on the same input and report how far apart they are."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import tflstm
from _tflstm.extras import require
from converters.torch_io import Layer


def random_input(layer: Layer, *, steps: int = 20, batch: int = 3, seed: int = 0):
    """A standard-normal input of the layer's layout, in float64."""
    rng = np.random.default_rng(seed)
    if isinstance(layer, tflstm.LSTMCell):
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


def _torch_packed(module: Any, x: Any, lengths: np.ndarray):
    """torch's packed run of a right-padded batch, padded back with zeros."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    packed = pack_padded_sequence(
        x,
        torch.as_tensor(lengths, dtype=torch.int64),
        batch_first=module.batch_first,
        enforce_sorted=False,
    )
    output, state = module(packed)
    steps = x.shape[1 if module.batch_first else 0]
    output, _ = pad_packed_sequence(
        output, batch_first=module.batch_first, total_length=steps
    )
    return output, state


def compare(
    layer: Layer,
    module: Any,
    x: np.ndarray | None = None,
    sequence_lengths: np.ndarray | None = None,
) -> dict:
    """Max abs and max rel error of every output of `layer` against `module`.

    Args:
        layer: A tflstm layer, or a callable with the same call convention
            and `compute_dtype` (e.g. a loaded SavedModel's signature).
        module: The `torch.nn.LSTM` (or `LSTMCell`) it was converted from.
        x: The input; defaults to `random_input(layer)`. Both run in the
            layer's compute dtype (torch in float32 for float16/bfloat16).
        sequence_lengths: Optional lengths of a right-padded batch: torch
            then runs `pack_padded_sequence(..., enforce_sorted=False)` and
            `layer` is called with `sequence_lengths=`.

    Returns:
        `{"output": (abs, rel), "h_n": ..., "c_n": ...}` for an LSTM,
        `{"h_1": ..., "c_1": ...}` for a cell; rel is relative to the largest
        magnitude of torch's tensor.
    """
    torch = require("torch", extra="torch", purpose="compare")

    x = random_input(layer) if x is None else np.asarray(x)
    dtype = "float64" if layer.compute_dtype == "float64" else "float32"
    module = module.to(getattr(torch, dtype)).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch on CPU notes that oneDNN lacks projections; not the user's concern.
        warnings.filterwarnings("ignore", "LSTM with projections is not supported")
        xt = torch.from_numpy(x.astype(dtype))
        if sequence_lengths is None:
            want = module(xt)
        else:
            want = _torch_packed(module, xt, sequence_lengths)
    if sequence_lengths is None:
        got = layer(x.astype(dtype))
    else:
        got = layer(x.astype(dtype), sequence_lengths=sequence_lengths)
    if isinstance(got[1], (tuple, list)):  # (output, (h_n, c_n))
        names = ("output", "h_n", "c_n")
        want, got = (want[0], *want[1]), (got[0], *got[1])
    else:
        names = ("h_1", "c_1")
    report = {}
    for name, w, g in zip(names, want, got, strict=True):
        w = w.numpy().astype("float64")
        err = np.abs(np.asarray(g, dtype="float64") - w)
        report[name] = (
            float(err.max()),
            float(err.max() / max(np.abs(w).max(), 1e-30)),
        )
    return report


def format_report(report: dict) -> str:
    lines = [f"{'tensor':8s} {'max abs':>10s} {'max rel':>10s}"]
    lines += [f"{k:8s} {a:10.2e} {r:10.2e}" for k, (a, r) in report.items()]
    return "\n".join(lines)
