"""Every bad input gets a clear error, before any work, with torch's rules."""

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import tflstm

# Sizes are distinct primes, so that no wrong dimension can match by accident.
H_IN, H, P, L, N = 5, 7, 3, 11, 2


def zeros(*shape, dtype="float32"):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(input_size=0),
            ValueError,
            "argument `input_size`, expected a positive integer, got 0.",
        ),
        (
            dict(input_size=-3),
            ValueError,
            "argument `input_size`, expected a positive integer, got -3.",
        ),
        (
            dict(hidden_size=0),
            ValueError,
            "argument `hidden_size`, expected a positive integer, got 0.",
        ),
        (
            dict(num_layers=0),
            ValueError,
            "argument `num_layers`, expected a positive integer, got 0.",
        ),
        (
            dict(input_size=5.0),
            TypeError,
            "argument `input_size`, expected an integer, got 5.0 of type float.",
        ),
        (
            dict(hidden_size="7"),
            TypeError,
            "argument `hidden_size`, expected an integer, got '7' of type str.",
        ),
        (
            dict(num_layers=True),
            TypeError,
            "argument `num_layers`, expected an integer, got True of type bool.",
        ),
        (
            dict(proj_size=-1),
            ValueError,
            "argument `proj_size`, expected an integer >= 0, got -1.",
        ),
        (
            dict(proj_size=H),
            ValueError,
            f"argument `proj_size`, expected an integer smaller than hidden_size={H} (or 0 to disable the projection), got {H}.",
        ),
        (
            dict(proj_size=H + 4),
            ValueError,
            f"smaller than hidden_size={H} (or 0 to disable the projection), got {H + 4}.",
        ),
        (
            dict(dropout=-0.1),
            ValueError,
            "argument `dropout`, expected a number in [0, 1] (the probability of an element being zeroed), got -0.1.",
        ),
        (dict(dropout=1.5), ValueError, "got 1.5."),
        (dict(dropout="0.5"), ValueError, "got '0.5'."),
        (dict(dropout=True), ValueError, "got True."),
        (
            dict(bias=1),
            TypeError,
            "argument `bias`, expected a bool, got 1 of type int.",
        ),
        (
            dict(batch_first="yes"),
            TypeError,
            "argument `batch_first`, expected a bool, got 'yes' of type str.",
        ),
        (
            dict(bidirectional=None),
            TypeError,
            "argument `bidirectional`, expected a bool, got None of type NoneType.",
        ),
        (
            dict(seed=-1),
            ValueError,
            "argument `seed`, expected an integer >= 0, got -1.",
        ),
        (
            dict(return_state=0),
            TypeError,
            "argument `return_state`, expected a bool, got 0 of type int.",
        ),
    ],
)
def test_constructor_errors(kwargs, error, message):
    args = dict(input_size=H_IN, hidden_size=H, num_layers=2) | kwargs
    with pytest.raises(
        error,
        match=re.escape("Received an invalid value for " + message)
        if message.startswith("arg")
        else re.escape(message),
    ):
        tflstm.LSTM(**args)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(input_size=0), ValueError),
        (dict(hidden_size=0), ValueError),
        (dict(num_layers=0), ValueError),
        (dict(proj_size=H), ValueError),
        (dict(dropout=1.5), ValueError),
        (dict(input_size=5.0), TypeError),
        (dict(bias=1), TypeError),
    ],
)
def test_constructor_errors_agree_with_torch(kwargs, error):
    """torch refuses the same arguments, with the same exception type."""
    args = dict(input_size=H_IN, hidden_size=H, num_layers=2) | kwargs
    with pytest.raises(error):
        torch.nn.LSTM(**args)
    with pytest.raises(error):
        tflstm.LSTM(**args)


def test_dropout_with_one_layer_warns_like_torch():
    message = (
        "dropout option adds dropout after all but last recurrent layer, so "
        "non-zero dropout expects num_layers greater than 1, but got "
        "dropout=0.5 and num_layers=1"
    )
    with pytest.warns(UserWarning, match=re.escape(message)):
        torch.nn.LSTM(H_IN, H, dropout=0.5)
    with pytest.warns(UserWarning, match=re.escape(message)):
        tflstm.LSTM(H_IN, H, dropout=0.5)


def test_dropout_bounds_are_accepted_like_torch():
    for p in (0, 0.0, 1, 1.0):
        assert torch.nn.LSTM(H_IN, H, num_layers=2, dropout=p).dropout == p
        layer = tflstm.LSTM(H_IN, H, num_layers=2, dropout=p)
        assert type(layer.dropout) is float and layer.dropout == p
        assert layer.get_config()["dropout"] == p


@pytest.mark.parametrize(
    "layer_kwargs, x, hx, message",
    [
        (
            {},
            zeros(L, N, 13),
            None,
            f"Expected the last dimension of `input` to be input_size={H_IN}. Received: input.shape=({L}, {N}, 13)",
        ),
        (
            {},
            zeros(L, 13),
            None,
            f"Expected the last dimension of `input` to be input_size={H_IN}. Received: input.shape=({L}, 13)",
        ),
        (
            {},
            zeros(L, N, H_IN, 1),
            None,
            f"Expected `input` of rank 3 (batched) or 2 (unbatched). Received: input.shape=({L}, {N}, {H_IN}, 1) of rank 4",
        ),
        (
            {},
            zeros(H_IN),
            None,
            f"Expected `input` of rank 3 (batched) or 2 (unbatched). Received: input.shape=({H_IN},) of rank 1",
        ),
        (
            {},
            zeros(0, N, H_IN),
            None,
            f"Expected `input` with a sequence length of at least 1 (axis 0). Received: input.shape=(0, {N}, {H_IN})",
        ),
        (
            {"batch_first": True},
            zeros(N, 0, H_IN),
            None,
            f"Expected `input` with a sequence length of at least 1 (axis 1). Received: input.shape=({N}, 0, {H_IN})",
        ),
        (
            {},
            zeros(0, H_IN),
            None,
            f"Expected `input` with a sequence length of at least 1 (axis 0). Received: input.shape=(0, {H_IN})",
        ),
        (
            {},
            zeros(L, N, H_IN, dtype="int32"),
            None,
            "Expected `input` of a floating-point dtype. Received: input.dtype=int32",
        ),
        # h_0 / c_0: one dimension wrong at a time.
        (
            {},
            zeros(L, N, H_IN),
            (zeros(13, N, H), zeros(4, N, H)),
            f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(13, {N}, {H})",
        ),
        (
            {},
            zeros(L, N, H_IN),
            (zeros(4, 13, H), zeros(4, N, H)),
            f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, 13, {H})",
        ),
        (
            {},
            zeros(L, N, H_IN),
            (zeros(4, N, 13), zeros(4, N, H)),
            f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, {N}, 13)",
        ),
        (
            {},
            zeros(L, N, H_IN),
            (zeros(4, N, H), zeros(4, N, 13)),
            f"Expected `c_0` of shape (D*num_layers, N, H_cell) = (4, {N}, {H}). Received: c_0.shape=(4, {N}, 13)",
        ),
        (
            {"proj_size": P},
            zeros(L, N, H_IN),
            (zeros(4, N, H), zeros(4, N, H)),
            f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {P}). Received: h_0.shape=(4, {N}, {H})",
        ),
        (
            {"proj_size": P},
            zeros(L, N, H_IN),
            (zeros(4, N, P), zeros(4, N, P)),
            f"Expected `c_0` of shape (D*num_layers, N, H_cell) = (4, {N}, {H}). Received: c_0.shape=(4, {N}, {P})",
        ),
        (
            {"batch_first": True},
            zeros(N, L, H_IN),
            (zeros(4, L, H), zeros(4, L, H)),
            f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, {L}, {H})",
        ),
        (
            {},
            zeros(L, H_IN),
            (zeros(4, 1, H), zeros(4, 1, H)),
            f"Expected `h_0` of shape (D*num_layers, H_out) = (4, {H}). Received: h_0.shape=(4, 1, {H})",
        ),
        (
            {},
            zeros(L, N, H_IN),
            (zeros(4, H), zeros(4, H)),
            f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, {H})",
        ),
        (
            {},
            zeros(L, N, H_IN),
            zeros(4, N, H),
            "Expected `hx` to be a tuple (h_0, c_0) of two tensors, or None. Received: an object of type EagerTensor",
        ),
        (
            {},
            zeros(L, N, H_IN),
            (zeros(4, N, H),),
            "Expected `hx` to be a tuple (h_0, c_0) of two tensors, or None. Received: a tuple of length 1",
        ),
    ],
)
def test_call_errors(layer_kwargs, x, hx, message):
    layer = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True, **layer_kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(x, hx)


def test_symbolic_call_errors_match_eager_ones():
    import keras

    layer = tflstm.LSTM(H_IN, H, batch_first=True)
    message = f"Expected the last dimension of `input` to be input_size={H_IN}. Received: input.shape=(None, None, 13)"
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(keras.Input((None, 13)))


def test_empty_sequence_of_unknown_length_fails_at_run_time():
    import tensorflow as tf

    layer = tflstm.LSTM(H_IN, H)
    run = tf.function(
        lambda x: layer(x)[0], input_signature=[tf.TensorSpec([None, None, H_IN])]
    )
    assert run(zeros(L, N, H_IN)).shape == (L, N, H)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Expected a sequence length of at least 1"
    ):
        run(zeros(0, N, H_IN))


@pytest.mark.parametrize(
    "x, hx, message",
    [
        (
            zeros(N, 13),
            None,
            "Expected the last dimension of `input` to be input_size=5. Received: input.shape=(2, 13)",
        ),
        (
            zeros(L, N, H_IN),
            None,
            f"Expected `input` of rank 2 (batched) or 1 (unbatched). Received: input.shape=({L}, {N}, {H_IN}) of rank 3",
        ),
        (
            zeros(N, H_IN),
            (zeros(13, H), zeros(N, H)),
            f"Expected `h_0` of shape (N, H) = ({N}, {H}). Received: h_0.shape=(13, {H})",
        ),
        (
            zeros(N, H_IN),
            (zeros(N, H), zeros(N, 13)),
            f"Expected `c_0` of shape (N, H) = ({N}, {H}). Received: c_0.shape=({N}, 13)",
        ),
        (
            zeros(H_IN),
            (zeros(N, H), zeros(N, H)),
            f"Expected `h_0` of shape (H,) = ({H},). Received: h_0.shape=({N}, {H})",
        ),
        (
            zeros(N, H_IN, dtype="int64"),
            None,
            "Expected `input` of a floating-point dtype. Received: input.dtype=int64",
        ),
    ],
)
def test_cell_call_errors(x, hx, message):
    cell = tflstm.LSTMCell(H_IN, H)
    with pytest.raises(ValueError, match=re.escape(message)):
        cell(x, hx)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(input_size=0),
            ValueError,
            "argument `input_size`, expected a positive integer, got 0.",
        ),
        (
            dict(hidden_size=2.5),
            TypeError,
            "argument `hidden_size`, expected an integer, got 2.5 of type float.",
        ),
        (
            dict(bias="no"),
            TypeError,
            "argument `bias`, expected a bool, got 'no' of type str.",
        ),
    ],
)
def test_cell_constructor_errors(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        tflstm.LSTMCell(**(dict(input_size=H_IN, hidden_size=H) | kwargs))


def test_non_tensorflow_backend_is_refused():
    code = (
        "import tflstm\n"
        "try:\n"
        "    tflstm.LSTM(2, 3)\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    env = {"KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    import os

    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert (
        "tflstm requires the TensorFlow backend of Keras. Set the environment "
        "variable KERAS_BACKEND=tensorflow before importing keras. Received: "
        "keras.backend.backend()='torch'"
    ) in result.stdout
