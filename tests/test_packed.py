"""Packed sequences: `sequence_lengths=` and Keras masks against torch's
`pack_padded_sequence` -> `nn.LSTM` -> `pad_packed_sequence`."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from grids import dtype_cases
from oracle import ATOL, assert_matches, outputs_only, run_tflstm, run_torch
from test_lstm_parity import H_IN, H, _ids, make_inputs, make_pair

import converters
import tflstm
from converters import random_lengths

STEPS, BATCH = 6, 5


def padded(x, lengths, batch_first, value=np.nan):
    """`x` with every step past its sequence's length set to `value`: the
    result must not depend on the padding."""
    steps = x.shape[1 if batch_first else 0]
    valid = np.arange(steps)[:, None] < np.asarray(lengths)[None, :]  # (L, N)
    if batch_first:
        valid = valid.T
    return np.where(valid[..., None], x, value)


@pytest.mark.parametrize(("cfg", "dtype"), dtype_cases())
def test_matches_torch_packed(cfg, dtype):
    """Outputs (0 past each length), h_n, c_n and every gradient; unsorted
    lengths holding 1 and L; with and without hx; both execution paths (the
    inference path's gradient, the training path's recomputed, on the float32
    cases)."""
    module, layer = make_pair(dtype, **cfg)
    lengths = random_lengths(STEPS, BATCH, seed=len(_ids(cfg)))
    assert {1, STEPS} <= set(lengths.tolist())
    for with_hx in (True, False):
        x, hx = make_inputs(
            cfg, batched=True, with_hx=with_hx, steps=STEPS, batch=BATCH
        )
        want = run_torch(module, x, hx, dtype=dtype, lengths=lengths)
        x = padded(x, lengths, cfg["batch_first"], value=1e3)
        for training in (True, False):
            grads = training or dtype == "float32"
            got = run_tflstm(
                layer,
                x,
                hx,
                dtype=dtype,
                training=training,
                gradients=grads,
                sequence_lengths=lengths,
            )
            assert_matches(want if grads else outputs_only(want), got, ATOL[dtype])


def test_padding_is_never_read():
    """NaN in the padding changes nothing, not even the gradients."""
    cfg = dict(bias=True, batch_first=True, bidirectional=True, proj_size=2)
    module, layer = make_pair(num_layers=2, **cfg)
    lengths = np.array([2, 6, 1, 4], "int32")
    x, hx = make_inputs(
        {**cfg, "num_layers": 2}, batched=True, with_hx=True, steps=6, batch=4
    )
    want = run_torch(module, x, hx, lengths=lengths)
    for training in (True, False):
        got = run_tflstm(
            layer,
            padded(x, lengths, True),
            hx,
            training=training,
            sequence_lengths=lengths,
        )
        assert_matches(want, got, ATOL["float64"])


def test_unbatched_takes_a_scalar_length():
    module, layer = make_pair(num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((STEPS, H_IN))
    for n in (1, 3, STEPS):
        want = run_torch(module, x, lengths=n)
        for lengths in (n, np.array([n])):
            got = run_tflstm(layer, x, sequence_lengths=lengths)
            assert_matches(want, got, ATOL["float64"])


def test_full_lengths_equal_no_lengths():
    _, layer = make_pair(num_layers=2, bidirectional=True, proj_size=2)
    x = np.random.default_rng(0).standard_normal((STEPS, BATCH, H_IN))
    plain = layer(x)
    full = layer(x, sequence_lengths=np.full(BATCH, STEPS))
    for a, b in zip(tf.nest.flatten(plain), tf.nest.flatten(full), strict=True):
        np.testing.assert_array_equal(a, b)


def embedding_model(**cfg):
    ids = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(20, H_IN, mask_zero=True)(ids)
    lstm = tflstm.LSTM(H_IN, H, batch_first=True, seed=0, **cfg)
    output, (h_n, c_n) = lstm(embedded)
    return keras.Model(ids, [output, h_n, c_n]), lstm


def test_embedding_mask_equals_explicit_lengths_and_torch():
    model, lstm = embedding_model(num_layers=2, bidirectional=True, proj_size=3)
    rng = np.random.default_rng(0)
    lengths = np.array([3, 7, 1, 5], "int32")
    ids = rng.integers(1, 20, size=(4, 7))
    ids[np.arange(7)[None, :] >= lengths[:, None]] = 0
    masked = model(ids)
    embedded = model.layers[1](ids)
    explicit = lstm(embedded, sequence_lengths=lengths)
    for a, b in zip(masked, tf.nest.flatten(explicit), strict=True):
        np.testing.assert_array_equal(a, b)
    module = converters.to_torch_module(lstm)
    want = run_torch(module, embedded.numpy(), dtype="float32", lengths=lengths)
    got = run_tflstm(lstm, embedded.numpy(), dtype="float32", sequence_lengths=lengths)
    assert_matches(want, got, ATOL["float32"])


def test_mask_argument_and_masking_layer():
    """`mask=` (time-major layout, like the input) and `keras.layers.Masking`."""
    _, layer = make_pair(num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((STEPS, 3, H_IN))
    lengths = np.array([6, 2, 4], "int32")
    mask = np.arange(STEPS)[:, None] < lengths[None, :]  # (L, N)
    want = layer(x, sequence_lengths=lengths)
    got = layer(x, mask=mask)
    for a, b in zip(tf.nest.flatten(want), tf.nest.flatten(got), strict=True):
        np.testing.assert_array_equal(a, b)

    inputs = keras.Input((None, H_IN))
    masked = keras.layers.Masking(0.0)(inputs)
    layer_bf = tflstm.LSTM(H_IN, H, batch_first=True, return_state=False, seed=1)
    model = keras.Model(inputs, layer_bf(masked))
    x_bf = padded(np.swapaxes(x, 0, 1), lengths, True, value=0.0)
    np.testing.assert_array_equal(model(x_bf), layer_bf(x_bf, sequence_lengths=lengths))


def test_output_keeps_the_mask_for_the_next_layer():
    ids = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(20, H_IN, mask_zero=True)(ids)
    first = tflstm.LSTM(H_IN, H, batch_first=True, return_state=False, seed=0)
    second = tflstm.LSTM(H, H, batch_first=True, seed=1)
    hidden = first(embedded)
    assert getattr(hidden, "_keras_mask", None) is not None
    output, (h_n, c_n) = second(hidden)
    model = keras.Model(ids, [output, h_n, c_n])
    x = np.array([[3, 4, 0, 0], [1, 2, 3, 4]])
    lengths = np.array([2, 4])
    hidden_explicit = first(model.layers[1](x), sequence_lengths=lengths)
    want = second(hidden_explicit, sequence_lengths=lengths)
    for a, b in zip(model(x), tf.nest.flatten(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_graph_mode_unknown_batch_and_length():
    _, layer = make_pair(num_layers=2, bidirectional=True, batch_first=True)
    fn = tf.function(
        lambda x, n: layer(x, sequence_lengths=n),
        input_signature=[
            tf.TensorSpec([None, None, H_IN], tf.float64),
            tf.TensorSpec([None], tf.int32),
        ],
    )
    for steps, lengths in ((6, [6, 1, 3]), (3, [2, 3])):
        x = np.random.default_rng(steps).standard_normal((len(lengths), steps, H_IN))
        want = layer(x, sequence_lengths=np.array(lengths))
        got = fn(x, tf.constant(lengths))
        for a, b in zip(tf.nest.flatten(want), tf.nest.flatten(got), strict=True):
            np.testing.assert_allclose(a, b, atol=ATOL["float64"], rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[1, L\]"):
        fn(np.zeros((2, 3, H_IN)), tf.constant([4, 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[1, L\]"):
        fn(np.zeros((2, 3, H_IN)), tf.constant([0, 1]))


def test_graph_mode_mask_must_be_right_padded():
    _, layer = make_pair(batch_first=True)
    fn = tf.function(
        lambda x, m: layer(x, mask=m),
        input_signature=[
            tf.TensorSpec([None, None, H_IN], tf.float64),
            tf.TensorSpec([None, None], tf.bool),
        ],
    )
    fn(np.zeros((2, 3, H_IN)), np.array([[1, 1, 0], [1, 0, 0]], bool))
    with pytest.raises(tf.errors.InvalidArgumentError, match="right-padded"):
        fn(np.zeros((2, 3, H_IN)), np.array([[1, 0, 1], [1, 0, 0]], bool))


def test_fit_with_mask_matches_torch_gradients_and_ignores_padding():
    """`model.fit` trains through a mask; the first step's gradient equals
    torch's packed gradient; changing the padding changes nothing."""
    model, lstm = embedding_model(num_layers=2, bidirectional=True)
    module = converters.to_torch_module(lstm)
    lengths = np.array([4, 1, 6, 3], "int32")
    ids = np.random.default_rng(0).integers(1, 20, size=(4, 6))
    ids[np.arange(6)[None, :] >= lengths[:, None]] = 0
    embedded = model.layers[1](ids).numpy()
    want = run_torch(module, embedded, dtype="float32", lengths=lengths)
    got = run_tflstm(
        lstm, embedded, dtype="float32", sequence_lengths=lengths, training=True
    )
    assert_matches(want, got, ATOL["float32"])

    trainer = keras.Model(model.input, model.output[0])
    trainer.compile(keras.optimizers.SGD(0.1), "mse")
    target = np.random.default_rng(1).standard_normal((4, 6, 2 * H))
    history = trainer.fit(ids, target, epochs=5, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize(
    "sequence_lengths, error, match",
    [
        (
            np.array([3, 0]),
            ValueError,
            r"in \[1, L\].*Received: L=4 and the "
            r"lengths \{1: 0\} \(batch element: length\)",
        ),
        (np.array([5, 1]), ValueError, r"Received: L=4 and the lengths \{0: 5\}"),
        (
            np.array([1.0, 2.0]),
            TypeError,
            r"Expected `sequence_lengths` of an "
            r"integer dtype. Received: sequence_lengths.dtype=float",
        ),
        (
            np.array([1, 2, 3]),
            ValueError,
            r"Expected `sequence_lengths` of shape "
            r"\(N,\) = \(2,\). Received: sequence_lengths.shape=\(3,\)",
        ),
        (np.array([[1, 2]]), ValueError, r"Received: sequence_lengths.shape=\(1, 2\)"),
    ],
)
def test_length_errors(sequence_lengths, error, match):
    layer = tflstm.LSTM(H_IN, H, batch_first=True)
    with pytest.raises(error, match=match):
        layer(np.zeros((2, 4, H_IN), "float32"), sequence_lengths=sequence_lengths)


def test_mask_errors():
    layer = tflstm.LSTM(H_IN, H)
    x = np.zeros((4, 2, H_IN), "float32")  # time-major: mask is (L, N)
    with pytest.raises(
        ValueError, match=r"right-padded `mask`.*batch element\(s\) \[1\]"
    ):
        layer(x, mask=np.array([[1, 1], [1, 0], [0, 1], [0, 0]], bool))
    with pytest.raises(ValueError, match=r"from `mask` in \[1, L\].*\{0: 0\}"):
        layer(x, mask=np.array([[0, 1], [0, 1], [0, 0], [0, 0]], bool))
    with pytest.raises(
        ValueError,
        match=r"Expected `mask` of shape \(L, N\) = "
        r"\(4, 2\). Received: mask.shape=\(2, 4\)",
    ):
        layer(x, mask=np.ones((2, 4), bool))


def test_cli_convert_with_sequence_lengths(tmp_path, capsys):
    """`tflstm-convert convert --sequence-lengths --verify` (in-process:
    tests/test_cli.py runs the command as a subprocess once)."""
    from converters.cli import main

    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, num_layers=2, bidirectional=True)
    ckpt = tmp_path / "model.pt"
    torch.save(module.state_dict(), ckpt)
    for fmt, out in (("savedmodel", "sm"), ("tflite", "m.tflite")):
        argv = ["convert", str(ckpt), str(tmp_path / out), "--format", fmt]
        argv += ["--sequence-lengths", "--batch-size", "4", "--verify"]
        assert main(argv) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "sequence_lengths: [" in out
        assert "OK: every tensor within its bound" in out
