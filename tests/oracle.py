"""Runs torch and tflstm on the same weights and inputs, and compares them.

torch is the oracle: every expected number in the tests comes from here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import torch

# The tolerances and the float32 rule for long sequences and large layers
# (tests/test_long.py) are the library's: `tflstm-convert --verify` and
# `converters.compare` judge the same way.
from _tflstm.tolerance import (  # noqa: F401  (re-exported for the tests)
    ATOL,
    FLOAT32_ERROR_FLOOR_ULPS,
    FLOAT32_ERROR_RATIO,
    float32_error_bound,
)
from converters.verify import torch_forward

TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def copy_torch_weights(module: torch.nn.Module, layer) -> None:
    """Assigns every torch parameter to the tflstm variable of the same name.

    The two must hold the same names with the same shapes; a test of its own
    pins that, so this never hides a missing or extra weight.
    """
    params = dict(module.named_parameters())
    ours = {v.name: v for v in layer.weights if v.trainable}
    if params.keys() != ours.keys():
        raise AssertionError(f"torch {sorted(params)} != tflstm {sorted(ours)}")
    for name, param in params.items():
        ours[name].assign(param.detach().cpu().numpy().astype(ours[name].dtype))


def weight_errors(module: torch.nn.Module, layer) -> dict[str, float]:
    """Max abs difference of every torch parameter and the tflstm weight of
    the same name (after training both, say)."""
    return {
        name: float(np.abs(getattr(layer, name).numpy() - p.detach().numpy()).max())
        for name, p in module.named_parameters()
    }


def _states(hx, convert):
    """torch's `hx` converted: a tuple `(h_0, c_0)` (an LSTM's) stays a tuple,
    one array `h_0` (a GRU's) stays one tensor."""
    if isinstance(hx, (tuple, list)):
        return tuple(convert(s) for s in hx)
    return convert(hx)


def _named_states(hxt) -> dict:
    """The initial states by name, for the gradients' keys."""
    states = hxt if isinstance(hxt, tuple) else (hxt,)
    return dict(zip(("h_0", "c_0"), states, strict=False))


def _cotangents(shapes: Sequence[tuple[int, ...]], dtype: str, seed: int):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def run_torch(
    module, x, hx=None, *, dtype="float64", seed=1, lengths=None, **call_kwargs
):
    """Output tensors and gradients of a fixed random linear loss, in numpy.
    `hx` as torch takes it: `(h_0, c_0)` for an LSTM, `h_0` for a GRU.

    With `lengths`, a batched input runs as torch's packed sequence
    (`pack_padded_sequence(..., enforce_sorted=False)`, then
    `pad_packed_sequence`); an unbatched one runs on its first `lengths`
    steps, its output padded with zeros.
    """
    module = module.to(TORCH_DTYPES[dtype])
    xt = torch.tensor(x, dtype=TORCH_DTYPES[dtype], requires_grad=True)
    inputs = {"input": xt}
    hxt = None
    if hx is not None:
        hxt = _states(
            hx, lambda s: torch.tensor(s, dtype=TORCH_DTYPES[dtype], requires_grad=True)
        )
        inputs.update(_named_states(hxt))
    if lengths is None:
        outs = _flatten(module(xt, hxt, **call_kwargs))
    else:
        outs = _flatten(torch_forward(module, xt, hxt, lengths))
    cots = _cotangents([tuple(o.shape) for o in outs], dtype, seed)
    loss = sum((o * torch.from_numpy(g)).sum() for o, g in zip(outs, cots, strict=True))
    names = list(inputs) + [n for n, _ in module.named_parameters()]
    tensors = list(inputs.values()) + [p for _, p in module.named_parameters()]
    grads = torch.autograd.grad(loss, tensors)
    result = {f"out{i}": o.detach().numpy() for i, o in enumerate(outs)}
    result.update({f"grad_{n}": g.numpy() for n, g in zip(names, grads, strict=True)})
    return result


def run_tflstm(
    layer, x, hx=None, *, dtype="float64", seed=1, gradients=True, **call_kwargs
):
    """The same as `run_torch`, for a tflstm layer; only the outputs with
    `gradients=False`."""
    xt = tf.constant(x, dtype=dtype)
    inputs = {"input": xt}
    hxt = None
    if hx is not None:
        hxt = _states(hx, lambda s: tf.constant(s, dtype=dtype))
        inputs.update(_named_states(hxt))
    if not gradients:
        outs = _flatten(layer(xt, hxt, **call_kwargs))
        return {f"out{i}": o.numpy() for i, o in enumerate(outs)}
    weights = {v.name: v for v in layer.trainable_weights}
    with tf.GradientTape() as tape:
        tape.watch(list(inputs.values()))
        outs = _flatten(layer(xt, hxt, **call_kwargs))
        cots = _cotangents([tuple(o.shape) for o in outs], dtype, seed)
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outs, cots, strict=True)])
    grads = tape.gradient(loss, list(inputs.values()) + list(weights.values()))
    names = list(inputs) + list(weights)
    result = {f"out{i}": o.numpy() for i, o in enumerate(outs)}
    result.update({f"grad_{n}": g.numpy() for n, g in zip(names, grads, strict=True)})
    return result


def _flatten(structure):
    if isinstance(structure, (tuple, list)):
        return [t for s in structure for t in _flatten(s)]
    return [structure]


def outputs_only(result: dict) -> dict:
    """The `out*` entries of a `run_torch` / `run_tflstm` result."""
    return {k: v for k, v in result.items() if k.startswith("out")}


def max_errors(expected: dict, actual: dict) -> dict[str, float]:
    """Max abs error per key; the key sets and shapes must be the same."""
    if expected.keys() != actual.keys():
        raise AssertionError(f"keys differ: {sorted(expected)} != {sorted(actual)}")
    errors = {}
    for key, want in expected.items():
        got = actual[key]
        if want.shape != got.shape:
            raise AssertionError(f"{key}: shape {got.shape} != torch's {want.shape}")
        errors[key] = float(np.max(np.abs(want.astype("float64") - got), initial=0.0))
    return errors


def assert_matches(expected: dict, actual: dict, atol: float) -> dict[str, float]:
    errors = max_errors(expected, actual)
    bad = {k: e for k, e in errors.items() if not e <= atol}
    if bad:
        raise AssertionError(f"max abs error above {atol}: {bad}")
    return errors
