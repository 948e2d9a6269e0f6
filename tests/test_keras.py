"""Keras conventions: config, .keras saving, symbolic shapes, fit, dtypes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tflstm

H_IN, H = 4, 6


def _outputs(result):
    output, (h_n, c_n) = result
    return [np.asarray(t) for t in (output, h_n, c_n)]


def test_config_round_trip():
    layer = tflstm.LSTM(
        H_IN, H, 3, False, True, 0.25, True, 2, seed=5, name="enc", dtype="float64"
    )
    config = layer.get_config()
    for key, value in dict(
        input_size=H_IN,
        hidden_size=H,
        num_layers=3,
        bias=False,
        batch_first=True,
        dropout=0.25,
        bidirectional=True,
        proj_size=2,
        return_state=True,
        seed=5,
        name="enc",
    ).items():
        assert config[key] == value, key
    clone = tflstm.LSTM.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(layer.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 5, H_IN))
    for a, b in zip(_outputs(layer(x)), _outputs(clone(x)), strict=True):
        np.testing.assert_array_equal(a, b)


def _functional_model(**kwargs):
    inputs = keras.Input((None, H_IN))
    output, (h_n, c_n) = tflstm.LSTM(H_IN, H, batch_first=True, **kwargs)(inputs)
    pooled = keras.layers.Concatenate()([output[:, -1], h_n[-1], c_n[-1]])
    return keras.Model(inputs, keras.layers.Dense(1)(pooled))


def test_keras_file_round_trip(tmp_path):
    model = _functional_model(num_layers=2, bidirectional=True, proj_size=3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).standard_normal((3, 7, H_IN)).astype("float32")
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )
    lstm = loaded.layers[1]
    assert isinstance(lstm, tflstm.LSTM)
    assert lstm.weight_hr_l1_reverse.shape == (3, H)


def test_fit_reduces_loss_and_trains_both_biases():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, H_IN)).astype("float32")
    y = x[:, :, :1].mean(axis=1)  # a tiny regression: the mean of one feature
    model = _functional_model(num_layers=2)
    lstm = model.layers[1]
    before = {v.name: v.numpy().copy() for v in lstm.trainable_weights}
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    for v in lstm.trainable_weights:
        assert not np.array_equal(v.numpy(), before[v.name]), v.name
    assert {"bias_ih_l0", "bias_hh_l0"} <= set(before)


@pytest.mark.parametrize(
    "kwargs, batch_shape, want",
    [
        (dict(), (None, None, H_IN), [(None, None, H), (1, None, H), (1, None, H)]),
        (
            dict(batch_first=True),
            (None, None, H_IN),
            [(None, None, H), (1, None, H), (1, None, H)],
        ),
        (dict(batch_first=True), (8, None, H_IN), [(8, None, H), (1, 8, H), (1, 8, H)]),
        (dict(), (None, 8, H_IN), [(None, 8, H), (1, 8, H), (1, 8, H)]),
        (dict(), (None, H_IN), [(None, H), (1, H), (1, H)]),
        (
            dict(num_layers=2, bidirectional=True, proj_size=2),
            (None, None, H_IN),
            [(None, None, 4), (4, None, 2), (4, None, H)],
        ),
    ],
)
def test_symbolic_shapes(kwargs, batch_shape, want):
    """`batch_shape`: the layer's input; a time-major one is a batch-major
    model input transposed (a model input itself is refused, see below)."""
    if len(batch_shape) == 3 and not kwargs.get("batch_first"):
        steps, batch, features = batch_shape
        model_input = keras.Input(batch_shape=(batch, steps, features))
        inputs = keras.ops.transpose(model_input, (1, 0, 2))
        assert tuple(inputs.shape) == batch_shape
    else:
        inputs = keras.Input(batch_shape=batch_shape)
    output, (h_n, c_n) = tflstm.LSTM(H_IN, H, **kwargs)(inputs)
    assert [tuple(t.shape) for t in (output, h_n, c_n)] == want


# -- a model input where the layer reads something else on axis 0 -------------

TIME_MAJOR_INPUT_ERROR = (
    "Expected `input` laid out (L, N, H_in), as a time-major tflstm.LSTM "
    "(batch_first=False) reads it, not a Keras model input: Keras's predict, "
    "evaluate and fit cut every model input into batches along axis 0, so they "
    "would cut this one along time. Use batch_first=True for an (N, L, H_in) "
    "input, or converters.keras_model(layer), which transposes at the model's "
    "boundary (or keras.ops.transpose(x, (1, 0, 2)) inside the model). "
    "Received: input=the model input 'frames' of shape (None, None, 4)"
)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("how", ["functional", "sequential", "return_state=False"])
def test_time_major_layer_on_a_model_input_is_an_error(how, policy):
    """`predict` on 8 sequences of 100 steps would return 100 rows: refused
    when the model is built, whatever the dtype policy (a mixed one casts the
    input before the layer sees it)."""
    keras.config.set_dtype_policy(policy)
    inputs = keras.Input((None, H_IN), name="frames")
    with pytest.raises(ValueError) as info:
        if how == "functional":
            tflstm.LSTM(H_IN, H)(inputs)
        elif how == "sequential":
            keras.Sequential([inputs, tflstm.LSTM(H_IN, H, return_state=False)])
        else:
            tflstm.LSTM(H_IN, H, num_layers=2, return_state=False)(inputs)
    assert str(info.value) == TIME_MAJOR_INPUT_ERROR


def test_state_or_mask_from_a_model_input_is_an_error():
    """States are (D*num_layers, N, H) whatever batch_first, and a time-major
    layer's mask (L, N): axis 0 is not the batch."""
    x_in = keras.Input((None, H_IN))
    h_in, c_in = keras.Input((2, H), name="h"), keras.Input((2, H), name="c")
    h_0 = keras.ops.transpose(h_in, (1, 0, 2))
    for batch_first in (True, False):
        layer = tflstm.LSTM(H_IN, H, num_layers=2, batch_first=batch_first)
        x = x_in if batch_first else keras.ops.transpose(x_in, (1, 0, 2))
        with pytest.raises(ValueError) as info:
            layer(x, (h_in, c_in))
        assert str(info.value).startswith(
            "Expected `h_0` laid out (D*num_layers, N, H_out), as torch's states "
            "are, whatever batch_first, not a Keras model input"
        )
        assert str(info.value).endswith(
            "Take it as a batch-major (N, D*num_layers, H_out) model input and "
            "transpose it inside the model: keras.ops.transpose(h_0, (1, 0, 2)). "
            "Received: h_0=the model input 'h' of shape (None, 2, 6)"
        )
        with pytest.raises(ValueError, match=r"Expected `c_0` laid out .* 'c' of"):
            layer(x, hx=(h_0, c_in))
    mask = keras.Input((None,), dtype="bool", name="mask")
    time_major = tflstm.LSTM(H_IN, H)
    with pytest.raises(ValueError) as info:
        time_major(keras.ops.transpose(x_in, (1, 0, 2)), mask=mask)
    assert str(info.value).startswith(
        "Expected `mask` laid out (L, N), as a time-major tflstm.LSTM "
        "(batch_first=False) reads it, not a Keras model input"
    )
    assert str(info.value).endswith(
        "Use batch_first=True for an (N, L) mask and input, or "
        "keras.ops.transpose(mask) inside the model. Received: mask=the model "
        "input 'mask' of shape (None, None)"
    )
    batch_first = tflstm.LSTM(H_IN, H, batch_first=True, return_state=False)
    assert batch_first(x_in, mask=mask).shape == (None, None, H)


def test_layouts_that_match_keras_batches_still_build():
    """Batch on axis 0 of every model input: time-major after a transpose,
    batch_first, unbatched and the cell; and eager calls are untouched."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 11, H_IN)).astype("float32")  # (N, L, H_in)
    inputs = keras.Input((None, H_IN))
    time_major = tflstm.LSTM(H_IN, H, num_layers=2)
    _, (h_n, _) = time_major(keras.ops.transpose(inputs, (1, 0, 2)))
    model = keras.Model(inputs, h_n[-1])
    got = model.predict(x, batch_size=3, verbose=0)
    assert got.shape == (8, H)
    want = time_major(x.transpose(1, 0, 2))[1][0][-1]
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)

    batch_first = tflstm.LSTM(H_IN, H, batch_first=True, return_state=False)
    model = keras.Model(inputs, batch_first(inputs))
    assert model.predict(x, batch_size=3, verbose=0).shape == (8, 11, H)
    unbatched = tflstm.LSTM(H_IN, H)(keras.Input(batch_shape=(None, H_IN)))
    assert tuple(unbatched[0].shape) == (None, H)
    cell = tflstm.LSTMCell(H_IN, H)
    step = keras.Input((H_IN,))
    state = keras.Input((H,))
    assert tuple(cell(step, (state, state))[0].shape) == (None, H)
    assert time_major(x)[0].shape == (8, 11, H)  # eager: (L=8, N=11)


def test_graph_mode_with_unknown_dimensions_matches_eager():
    layer = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True)
    run = tf.function(
        lambda x, h, c: layer(x, (h, c)),
        input_signature=[
            tf.TensorSpec([None, None, H_IN]),
            tf.TensorSpec([4, None, H]),
            tf.TensorSpec([4, None, H]),
        ],
    )
    rng = np.random.default_rng(0)
    for steps, batch in [(3, 2), (9, 5)]:
        x = rng.standard_normal((steps, batch, H_IN)).astype("float32")
        h = rng.standard_normal((4, batch, H)).astype("float32")
        c = rng.standard_normal((4, batch, H)).astype("float32")
        for a, b in zip(
            _outputs(run(x, h, c)), _outputs(layer(x, (h, c))), strict=True
        ):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_initial_state_as_model_inputs():
    x_in = keras.Input((None, H_IN))
    h_in, c_in = keras.Input((2, H)), keras.Input((2, H))  # batch-major here
    h0, c0 = (keras.ops.transpose(t, (1, 0, 2)) for t in (h_in, c_in))
    layer = tflstm.LSTM(H_IN, H, num_layers=2, batch_first=True)
    output, _ = layer(x_in, (h0, c0))
    model = keras.Model([x_in, h_in, c_in], output)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, H_IN)).astype("float32")
    h = rng.standard_normal((3, 2, H)).astype("float32")
    c = rng.standard_normal((3, 2, H)).astype("float32")
    want = layer(x, (h.transpose(1, 0, 2), c.transpose(1, 0, 2)))[0]
    np.testing.assert_allclose(model.predict([x, h, c], verbose=0), want, atol=1e-6)


def test_sequential_with_return_state_false():
    model = keras.Sequential(
        [
            keras.Input((None, H_IN)),
            tflstm.LSTM(H_IN, H, batch_first=True, return_state=False),
            keras.layers.Dense(1),
        ]
    )
    x = np.random.default_rng(0).standard_normal((3, 5, H_IN)).astype("float32")
    assert model(x).shape == (3, 5, 1)
    model.compile("sgd", "mse")
    model.fit(x, np.zeros((3, 5, 1)), epochs=1, verbose=0)


def test_subclassed_model_trains():
    class Tagger(keras.Model):
        def __init__(self):
            super().__init__()
            self.lstm = tflstm.LSTM(H_IN, H, bidirectional=True, batch_first=True)
            self.head = keras.layers.Dense(1)

        def call(self, x):
            output, _ = self.lstm(x)
            return self.head(output)

    model = Tagger()
    x = np.random.default_rng(0).standard_normal((8, 5, H_IN)).astype("float32")
    y = x.sum(-1, keepdims=True) * 0.1
    model.compile(keras.optimizers.Adam(0.02), "mse")
    losses = model.fit(x, y, epochs=10, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert len(model.lstm.trainable_weights) == 8


def test_float64_layer_keeps_float64():
    layer = tflstm.LSTM(H_IN, H, dtype="float64")
    output, (h_n, c_n) = layer(np.ones((2, 3, H_IN)))
    tensors = (output, h_n, c_n, layer.weight_ih_l0)
    assert {keras.backend.standardize_dtype(t.dtype) for t in tensors} == {"float64"}


@pytest.mark.parametrize(
    "policy, compute, variable, atol",
    [
        ("float16", "float16", "float16", 1e-2),
        ("bfloat16", "bfloat16", "bfloat16", 5e-2),
        ("mixed_float16", "float16", "float32", 1e-2),
        ("mixed_bfloat16", "bfloat16", "float32", 1e-2),
    ],
)
def test_low_precision_policies_run(policy, compute, variable, atol):
    """Pure float16/bfloat16 compute in that dtype; mixed policies keep the
    state in float32 and round the outputs only."""
    reference = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True, seed=1)
    layer = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True, seed=1, dtype=policy)
    layer.set_weights(reference.get_weights())
    x = np.random.default_rng(0).standard_normal((5, 3, H_IN)).astype("float32")
    got = _outputs(layer(x))
    assert layer.compute_dtype == compute and layer.variable_dtype == variable
    for a, b in zip(got, _outputs(reference(x)), strict=True):
        assert a.dtype == compute
        np.testing.assert_allclose(a.astype("float32"), b, atol=atol, rtol=0)
    if policy.startswith("mixed"):  # float32 throughout, then one rounding
        # (Keras rounds the input to the compute dtype before the call.)
        x_rounded = keras.ops.cast(keras.ops.cast(x, compute), "float32")
        for a, b in zip(got, _outputs(reference(x_rounded)), strict=True):
            np.testing.assert_array_equal(a, b.astype(compute))


def test_mixed_precision_trains():
    keras.config.set_dtype_policy("mixed_float16")
    model = _functional_model()
    x = np.random.default_rng(0).standard_normal((16, 5, H_IN)).astype("float32")
    model.compile("adam", "mse")
    loss = model.fit(x, x[:, 0, :1], epochs=2, verbose=0).history["loss"]
    assert np.isfinite(loss).all()


def test_time_loop_is_one_op_whatever_the_length():
    """No Python loop over time: the graph does not grow with L, so L = 10,000
    builds as fast as L = 10 (and memory stays linear in L)."""
    layer = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True, proj_size=2)

    def graph_size(steps):
        fn = tf.function(lambda x: layer(x))
        graph = fn.get_concrete_function(tf.TensorSpec([steps, 2, H_IN])).graph
        return len(graph.as_graph_def(add_shapes=False).node), sum(
            len(f.node_def) for f in graph.as_graph_def().library.function
        )

    assert graph_size(10_000) == graph_size(10)
    x = np.zeros((10_000, 1, H_IN), "float32")
    assert layer(x)[0].shape == (10_000, 1, 4)
