"""tflstm.LSTM against torch.nn.LSTM over the whole option grid."""

import itertools

import numpy as np
import pytest
import torch
from grids import GRID, PAIRWISE, dtype_cases
from grids import ids as _ids
from oracle import (
    ATOL,
    assert_matches,
    copy_torch_weights,
    outputs_only,
    run_tflstm,
    run_torch,
)

import tflstm

L, N, H_IN, H = 5, 3, 4, 6
PROJ = 2  # tests/grids.py's proj_size


def make_pair(dtype="float64", input_size=H_IN, hidden_size=H, seed=0, **cfg):
    torch.manual_seed(seed)
    module = torch.nn.LSTM(input_size, hidden_size, **cfg)
    layer = tflstm.LSTM(input_size, hidden_size, dtype=dtype, **cfg)
    copy_torch_weights(module, layer)
    return module, layer


def make_inputs(
    cfg, *, batched, with_hx, steps=L, batch=N, input_size=H_IN, hidden_size=H, seed=0
):
    rng = np.random.default_rng(seed)
    if batched:
        shape = (
            (batch, steps, input_size)
            if cfg["batch_first"]
            else (steps, batch, input_size)
        )
    else:
        shape = (steps, input_size)
    x = rng.standard_normal(shape)
    if not with_hx:
        return x, None
    n_states = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    lead = (n_states, batch) if batched else (n_states,)
    h0 = rng.standard_normal((*lead, cfg["proj_size"] or hidden_size))
    c0 = rng.standard_normal((*lead, hidden_size))
    return x, (h0, c0)


@pytest.mark.parametrize(("cfg", "dtype"), dtype_cases())
def test_matches_torch(cfg, dtype):
    """Outputs, h_n, c_n and every gradient, batched/unbatched, with/without hx,
    on the training path and on the inference path (whose gradient is the
    training path's, recomputed: checked on the float32 cases)."""
    module, layer = make_pair(dtype, **cfg)
    for batched, with_hx in itertools.product([True, False], [True, False]):
        x, hx = make_inputs(cfg, batched=batched, with_hx=with_hx)
        want = run_torch(module, x, hx, dtype=dtype)
        for training in (True, False):
            grads = training or dtype == "float32"
            got = run_tflstm(
                layer, x, hx, dtype=dtype, training=training, gradients=grads
            )
            assert_matches(want if grads else outputs_only(want), got, ATOL[dtype])


def test_weights_have_torch_names_and_shapes():
    for cfg in GRID:
        module = torch.nn.LSTM(H_IN, H, **cfg)
        layer = tflstm.LSTM(H_IN, H, **cfg)
        torch_shapes = {n: tuple(p.shape) for n, p in module.named_parameters()}
        ours = {v.name: tuple(v.shape) for v in layer.trainable_weights}
        assert ours == torch_shapes
        # Attribute access as in torch: layer.weight_ih_l0, ...
        for name in torch_shapes:
            assert getattr(layer, name).name == name
        assert list(ours) == list(torch_shapes), "same order as torch"


def test_h_n_layout_is_layer_times_d_plus_direction():
    """h_n[layer*D + d]: the forward final state is output[-1], first half;
    the backward final state is output[0], second half (not output[-1])."""
    cfg = dict(
        bias=True, batch_first=False, bidirectional=True, proj_size=0, num_layers=2
    )
    module, layer = make_pair(**cfg)
    x, _ = make_inputs(cfg, batched=True, with_hx=False)
    output, (h_n, _) = (
        t.numpy() if hasattr(t, "numpy") else t for t in _unpack(layer(x))
    )
    np.testing.assert_array_equal(h_n[2], output[-1, :, :H])
    np.testing.assert_array_equal(h_n[3], output[0, :, H:])
    torch_h_n = module.double()(torch.from_numpy(x))[1][0].detach().numpy()
    np.testing.assert_allclose(h_n, torch_h_n, atol=ATOL["float64"], rtol=0)


def _unpack(result):
    output, (h_n, c_n) = result
    return output, (h_n.numpy(), c_n.numpy())


def test_scan_equals_python_loop_over_cell():
    """The scanned layer equals a plain loop over tflstm.LSTMCell, step by step."""
    layer = tflstm.LSTM(H_IN, H, dtype="float64", seed=3)
    cell = tflstm.LSTMCell(H_IN, H, dtype="float64")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name).assign(getattr(layer, f"{name}_l0"))
    x = np.random.default_rng(0).standard_normal((7, N, H_IN))
    output, (h_n, c_n) = layer(x)
    hx = None
    for t in range(len(x)):
        hx = cell(x[t], hx)
        np.testing.assert_allclose(output[t], hx[0], atol=ATOL["float64"], rtol=0)
    np.testing.assert_allclose(h_n[0], hx[0], atol=ATOL["float64"], rtol=0)
    np.testing.assert_allclose(c_n[0], hx[1], atol=ATOL["float64"], rtol=0)


# BlockLSTMV2 has no projection (asking for it there is an error: test_policy).
# XLA compiles for every shape (seconds each): two configurations, which hold
# projections, both directions, 2 and 3 layers, batch_first and no bias; its
# numbers come from XLA's own kernels, not from TensorFlow's oneDNN ones.
KERNEL_CASES = [
    pytest.param(cfg, kernel, id=f"{_ids(cfg)}-{kernel}", marks=pytest.mark.numerics)
    for cfg in PAIRWISE
    for kernel in ("loop", "block")
    if not (kernel == "block" and cfg["proj_size"])
] + [pytest.param(cfg, "xla", id=f"{_ids(cfg)}-xla") for cfg in PAIRWISE[1:3]]


@pytest.mark.parametrize(("cfg", "kernel"), KERNEL_CASES)
def test_each_kernel_matches_torch(cfg, kernel):
    """The kernels a user can ask for by name, float32, outputs and gradients
    (inference path; XLA also on the training path)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, **cfg)
    layer = tflstm.LSTM(H_IN, H, dtype="float32", **cfg, kernel=kernel)
    copy_torch_weights(module, layer)
    for with_hx in (True, False):
        x, hx = make_inputs(cfg, batched=True, with_hx=with_hx)
        want = run_torch(module, x, hx, dtype="float32")
        for training in (False, True) if kernel == "xla" else (False,):
            got = run_tflstm(layer, x, hx, dtype="float32", training=training)
            assert_matches(want, got, ATOL["float32"])
