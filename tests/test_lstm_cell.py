"""tflstm.LSTMCell against torch.nn.LSTMCell."""

import itertools

import numpy as np
import pytest
import torch
from oracle import ATOL, assert_matches, copy_torch_weights, run_tflstm, run_torch

import tflstm

H_IN, H, N = 5, 7, 3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(bias, dtype):
    torch.manual_seed(0)
    module = torch.nn.LSTMCell(H_IN, H, bias=bias)
    cell = tflstm.LSTMCell(H_IN, H, bias=bias, dtype=dtype)
    copy_torch_weights(module, cell)
    rng = np.random.default_rng(0)
    for batched, with_hx in itertools.product([True, False], [True, False]):
        lead = (N,) if batched else ()
        x = rng.standard_normal((*lead, H_IN))
        hx = (
            (rng.standard_normal((*lead, H)), rng.standard_normal((*lead, H)))
            if with_hx
            else None
        )
        want = run_torch(module, x, hx, dtype=dtype)
        got = run_tflstm(cell, x, hx, dtype=dtype)
        assert_matches(want, got, ATOL[dtype])


def test_weights_have_torch_names_and_shapes():
    for bias in (True, False):
        module = torch.nn.LSTMCell(H_IN, H, bias=bias)
        cell = tflstm.LSTMCell(H_IN, H, bias=bias)
        want = {n: tuple(p.shape) for n, p in module.named_parameters()}
        assert {v.name: tuple(v.shape) for v in cell.trainable_weights} == want
        assert all(getattr(cell, n).name == n for n in want)


def test_config_round_trip():
    cell = tflstm.LSTMCell(H_IN, H, bias=False, seed=4, dtype="float64")
    clone = tflstm.LSTMCell.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    clone.set_weights(cell.get_weights())
    x = np.random.default_rng(0).standard_normal((N, H_IN))
    for a, b in zip(cell(x), clone(x), strict=True):
        np.testing.assert_array_equal(a, b)
