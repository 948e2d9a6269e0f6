"""Run torch and tflstm on the same input and report how far apart they are."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import tflstm
from converters.torch_io import Layer


def random_input(layer: Layer, *, steps: int = 20, batch: int = 3, seed: int = 0):
    """A standard-normal input of the layer's layout, in float64."""
    rng = np.random.default_rng(seed)
    if isinstance(layer, tflstm.LSTMCell):
        return rng.standard_normal((batch, layer.input_size))
    if layer.batch_first:
        return rng.standard_normal((batch, steps, layer.input_size))
    return rng.standard_normal((steps, batch, layer.input_size))


def compare(layer: Layer, module: Any, x: np.ndarray | None = None) -> dict:
    """Max abs and max rel error of every output of `layer` against `module`.

    Args:
        layer: A tflstm layer, or a callable with the same call convention
            and `compute_dtype` (e.g. a loaded SavedModel's signature).
        module: The `torch.nn.LSTM` (or `LSTMCell`) it was converted from.
        x: The input; defaults to `random_input(layer)`. Both run in the
            layer's compute dtype (torch in float32 for float16/bfloat16).

    Returns:
        `{"output": (abs, rel), "h_n": ..., "c_n": ...}` for an LSTM,
        `{"h_1": ..., "c_1": ...}` for a cell; rel is relative to the largest
        magnitude of torch's tensor.
    """
    import torch

    x = random_input(layer) if x is None else np.asarray(x)
    dtype = "float64" if layer.compute_dtype == "float64" else "float32"
    module = module.to(getattr(torch, dtype)).eval()
    with torch.no_grad(), warnings.catch_warnings():
        # torch on CPU notes that oneDNN lacks projections; not the user's concern.
        warnings.filterwarnings("ignore", "LSTM with projections is not supported")
        want = module(torch.from_numpy(x.astype(dtype)))
    got = layer(x.astype(dtype))
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
