"""PyTorch's default initialisation, and inter-layer dropout in training only."""

import math

import numpy as np
import pytest
import torch
from oracle import ATOL, copy_torch_weights

import tflstm

H_IN, H, L, N = 6, 64, 4, 3


def test_init_is_pytorch_uniform():
    layer = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True, proj_size=16)
    bound = 1 / math.sqrt(H)
    values = np.concatenate([w.numpy().ravel() for w in layer.trainable_weights])
    assert values.min() >= -bound and values.max() <= bound
    # Mean and standard deviation of U(-b, b): 0 and b / sqrt(3), within 5 sigma.
    n = values.size
    std = bound / math.sqrt(3)
    assert abs(values.mean()) < 5 * std / math.sqrt(n)
    assert abs(values.std() - std) < 0.02 * std
    # Biases are initialised as weights are (torch does not zero them).
    assert np.abs(layer.bias_ih_l0.numpy()).max() > 0.5 * bound


def test_init_is_seedable_and_weights_differ():
    a = tflstm.LSTM(H_IN, H, num_layers=2, seed=7)
    b = tflstm.LSTM(H_IN, H, num_layers=2, seed=7)
    c = tflstm.LSTM(H_IN, H, num_layers=2, seed=8)
    for wa, wb, wc in zip(
        a.get_weights(), b.get_weights(), c.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(wa, wb)
        assert not np.array_equal(wa, wc)
    # Distinct weights of the same shape are not copies of each other.
    assert not np.array_equal(a.bias_ih_l0.numpy(), a.bias_hh_l0.numpy())


def _pair(dropout, num_layers=3):
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, 5, num_layers=num_layers, dropout=dropout).double()
    layer = tflstm.LSTM(
        H_IN, 5, num_layers=num_layers, dropout=dropout, seed=3, dtype="float64"
    )
    copy_torch_weights(module, layer)
    return module, layer


def test_dropout_only_in_training():
    module, layer = _pair(0.5)
    x = np.random.default_rng(0).standard_normal((L, N, H_IN))
    want = module.eval()(torch.from_numpy(x))[0].detach().numpy()
    for training in (None, False):
        np.testing.assert_allclose(
            layer(x, training=training)[0], want, atol=ATOL["float64"], rtol=0
        )
    a, b = layer(x, training=True)[0], layer(x, training=True)[0]
    assert not np.allclose(a, want) and not np.allclose(a, b)


def test_dropout_one_drops_everything_between_layers_but_not_the_last_output():
    """With p = 1 torch's training output is deterministic: every layer after
    the first sees zeros. The last layer's output is not dropped."""
    module, layer = _pair(1.0)
    x = np.random.default_rng(0).standard_normal((L, N, H_IN))
    want = [t.detach().numpy() for t in _flat(module.train()(torch.from_numpy(x)))]
    got = [t.numpy() for t in _flat(layer(x, training=True))]
    assert np.abs(want[0]).min() > 0
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, atol=ATOL["float64"], rtol=0)


def _flat(result):
    output, (h_n, c_n) = result
    return output, h_n, c_n


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_mask_statistics(p):
    layer = tflstm.LSTM(H_IN, 5, num_layers=2, dropout=p, seed=1)
    ones = np.ones((200, 50, 10), "float32")
    dropped = layer._dropout(ones).numpy()
    zero = dropped == 0
    n = ones.size
    assert abs(zero.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(dropped[~zero], 1 / (1 - p), rtol=1e-6)


def test_dropout_reproducible_with_seed():
    x = np.random.default_rng(0).standard_normal((L, N, H_IN))
    _, a = _pair(0.5)
    _, b = _pair(0.5)
    np.testing.assert_array_equal(a(x, training=True)[0], b(x, training=True)[0])
