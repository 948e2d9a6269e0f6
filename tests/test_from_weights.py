"""Layers built from given weights (`LSTM.from_weights`, `LSTMCell.from_weights`,
what `converters.from_torch` uses): the values by PyTorch name, no module-level
state, torch's numbers."""

import re

import numpy as np
import pytest
import torch
from oracle import ATOL, max_errors, run_tflstm, run_torch

import tflstm


def test_lstm_from_arrays_and_functions_matches_torch():
    torch.manual_seed(0)
    module = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    arrays = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    read = []

    def lazily(name):
        def value(shape, dtype=None):
            read.append(name)
            return arrays[name].astype(dtype)

        return value

    given = {k: (lazily(k) if "hh" in k else v) for k, v in arrays.items()}
    layer = tflstm.LSTM.from_weights(
        given,
        input_size=3,
        hidden_size=5,
        num_layers=2,
        bidirectional=True,
        proj_size=2,
        dtype="float64",
    )
    assert sorted(read) == sorted(k for k in arrays if "hh" in k)
    assert not hasattr(layer, "_tflstm_given_weights")  # dropped once created
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    errors = max_errors(run_torch(module, x), run_tflstm(layer, x, dtype="float64"))
    assert max(errors.values()) <= ATOL["float64"], errors


def test_cell_keeps_torchs_init_for_weights_not_given():
    cell = tflstm.LSTMCell.from_weights(
        {"bias_ih": np.full(8, 0.5)}, input_size=3, hidden_size=2, seed=1
    )
    assert np.all(cell.bias_ih.numpy() == 0.5)
    bound = 1 / np.sqrt(2)
    assert 0 < np.abs(cell.weight_ih.numpy()).max() <= bound
    again = tflstm.LSTMCell(3, 2, seed=1)  # nothing left over between layers
    assert not np.all(again.bias_ih.numpy() == 0.5)


def test_unknown_weight_names_are_an_error():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected weights named as the layer's: weight_ih_l0, weight_hh_l0, "
            "bias_ih_l0, bias_hh_l0. Received: weight_ih_l1"
        ),
    ):
        tflstm.LSTM.from_weights(
            {"weight_ih_l1": np.zeros((8, 3))}, input_size=3, hidden_size=2
        )
