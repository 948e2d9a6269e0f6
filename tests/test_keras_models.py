"""Keras models around a tflstm layer (`converters.keras_model`, what
`tflstm-convert convert` writes): the batch on axis 0 of every input and
output, so that predict, evaluate and fit with any batch_size agree with
torch on the whole batch."""

import keras
import numpy as np
import pytest
import torch
from oracle import ATOL, copy_torch_weights, weight_errors

import converters
import tflstm
from converters.cli import main

H_IN, H = 3, 5
N, L, BATCH_SIZE = 5, 7, 2  # batch_size < N, and L differs from both


def _torch_outputs(module, x_batch_major):
    """torch's (output, h_n, c_n) in the model's batch-major layout."""
    x = torch.from_numpy(x_batch_major)
    if not module.batch_first:
        x = x.transpose(0, 1)
    with torch.no_grad():
        output, (h_n, c_n) = module(x)
    if not module.batch_first:
        output = output.transpose(0, 1)
    return [output.numpy(), h_n.transpose(0, 1).numpy(), c_n.transpose(0, 1).numpy()]


def _assert_reloaded_predicts_like_torch(path, module):
    """The `.keras` file at `path`, loaded back, predicts torch's numbers in
    small batches."""
    model = keras.saving.load_model(path)
    x = np.random.default_rng(0).standard_normal((N, L, H_IN)).astype("float32")
    got = model.predict(x, batch_size=BATCH_SIZE, verbose=0)
    for g, w in zip(got, _torch_outputs(module, x), strict=True):
        np.testing.assert_allclose(g, w, atol=ATOL["float32"], rtol=0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_predict_evaluate_fit_with_small_batches_match_torch(batch_first):
    cfg = dict(num_layers=2, bidirectional=True, proj_size=2, batch_first=batch_first)
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, **cfg)
    layer = tflstm.LSTM(H_IN, H, **cfg)
    copy_torch_weights(module, layer)
    model = converters.keras_model(layer)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, L, H_IN)).astype("float32")

    want = _torch_outputs(module, x)
    got = model.predict(x, batch_size=BATCH_SIZE, verbose=0)
    assert [g.shape for g in got] == [(N, L, 4), (N, 4, 2), (N, 4, H)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=ATOL["float32"], rtol=0)
    output, (h_n, c_n) = converters.torch_layout(layer, got)
    np.testing.assert_allclose(
        h_n, layer(x if batch_first else x.transpose(1, 0, 2))[1][0], atol=1e-6
    )

    targets = [rng.standard_normal(w.shape).astype("float32") for w in want]
    model.compile(keras.optimizers.SGD(2**-4), loss=["mse", "mse", "mse"])
    losses = model.evaluate(
        x, targets, batch_size=BATCH_SIZE, verbose=0, return_dict=True
    )
    # (Keras's per-output entries average the batches' means without their
    # sizes: only the total is the whole batch's.)
    assert set(losses) == {"loss", "output_loss", "h_n_loss", "c_n_loss"}
    want_loss = sum(
        float(np.mean((w - t) ** 2)) for w, t in zip(want, targets, strict=True)
    )
    assert abs(losses["loss"] - want_loss) <= 1e-5 * want_loss

    # fit, minibatches of 2, 2, 1: torch takes the same SGD steps
    opt = torch.optim.SGD(module.parameters(), lr=2**-4)
    for start in range(0, N, BATCH_SIZE):
        opt.zero_grad()
        xb = torch.from_numpy(x[start : start + BATCH_SIZE])
        if not batch_first:
            xb = xb.transpose(0, 1)
        output, (h_n, c_n) = module(xb)
        if not batch_first:
            output = output.transpose(0, 1)
        outs = [output, h_n.transpose(0, 1), c_n.transpose(0, 1)]
        loss = sum(
            torch.nn.functional.mse_loss(
                o, torch.from_numpy(t[start : start + BATCH_SIZE])
            )
            for o, t in zip(outs, targets, strict=True)
        )
        loss.backward()
        opt.step()
    model.fit(x, targets, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)
    errors = weight_errors(module, layer)
    assert max(errors.values()) <= ATOL["float32"], errors


def test_cli_keras_file_predicts_like_torch_in_small_batches(tmp_path, capsys):
    """The model written by `tflstm-convert convert` (a time-major LSTM, as
    PyTorch's default), loaded back and run by `predict(batch_size=2)`."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, num_layers=2)
    torch.save(module.state_dict(), tmp_path / "m.pt")
    assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.keras")]) == 0
    assert "import tflstm" in capsys.readouterr().out
    _assert_reloaded_predicts_like_torch(tmp_path / "m.keras", module)


def test_keras_file_of_a_time_major_layer_reloads_and_refuses_the_trap(tmp_path):
    """`keras_model` transposes at the boundary, so its `.keras` file loads
    back past the check that refuses a time-major layer on a model input."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, bidirectional=True)
    layer = converters.from_torch(module)
    with pytest.raises(ValueError, match="Expected `input` laid out"):
        layer(keras.Input((None, H_IN)))
    converters.keras_model(layer).save(tmp_path / "m.keras")
    _assert_reloaded_predicts_like_torch(tmp_path / "m.keras", module)


def test_keras_file_of_a_cell_streams_like_torch(tmp_path):
    """The cell's model takes `input`, `h_0`, `c_0` and returns `h_1`, `c_1`
    (as its SavedModel's `with_state` and its `.tflite`): saved, loaded back
    and fed its own state step by step, in batches smaller than N, it gives
    `torch.nn.LSTMCell`'s numbers from a non-zero initial state."""
    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(H_IN, H)
    model = converters.keras_model(converters.from_torch(cell))
    model.save(tmp_path / "cell.keras")
    model = keras.saving.load_model(tmp_path / "cell.keras")
    assert [t.name for t in model.inputs] == ["input", "h_0", "c_0"]
    assert model.output_names == ["h_1", "c_1"]

    rng = np.random.default_rng(0)
    x = rng.standard_normal((L, N, H_IN)).astype("float32")
    h, c = rng.standard_normal((2, N, H)).astype("float32")
    want_h, want_c = torch.from_numpy(h), torch.from_numpy(c)
    for x_t in x:
        h, c = model.predict(
            {"input": x_t, "h_0": h, "c_0": c}, batch_size=BATCH_SIZE, verbose=0
        )
        with torch.no_grad():
            want_h, want_c = cell(torch.from_numpy(x_t), (want_h, want_c))
        np.testing.assert_allclose(h, want_h.numpy(), atol=ATOL["float32"], rtol=0)
        np.testing.assert_allclose(c, want_c.numpy(), atol=ATOL["float32"], rtol=0)
    # the same call positionally, in the order of model.inputs
    h_1, c_1 = model.predict([x[0], h, c], verbose=0)
    with torch.no_grad():
        want = cell(torch.from_numpy(x[0]), (torch.from_numpy(h), torch.from_numpy(c)))
    np.testing.assert_allclose(h_1, want[0].numpy(), atol=ATOL["float32"], rtol=0)
    np.testing.assert_allclose(c_1, want[1].numpy(), atol=ATOL["float32"], rtol=0)


def test_keras_model_of_anything_else_is_an_error():
    with pytest.raises(TypeError) as info:
        converters.keras_model(keras.layers.LSTM(3))
    assert str(info.value) == (
        "Expected a tflstm layer (tflstm.LSTM, GRU, RNN or their cells). Received: an object of type LSTM"
    )
