"""converters: torch <-> tflstm <-> stock Keras, inference of the configuration."""

import re

import keras
import numpy as np
import pytest
import torch
from oracle import ATOL
from test_lstm_parity import GRID, _ids

import converters
import tflstm

H_IN, H = 5, 7


def _torch_lstm(cfg, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch.nn.LSTM(H_IN, H, **cfg).to(dtype)


@pytest.mark.parametrize("cfg", GRID, ids=_ids)
def test_torch_round_trip_is_bit_exact(cfg):
    module = _torch_lstm(cfg)
    layer = converters.from_torch(module)
    assert isinstance(layer, tflstm.LSTM)
    assert converters.torch_config(layer) == dict(
        input_size=H_IN, hidden_size=H, **{k: v for k, v in cfg.items()}, dropout=0.0
    )
    state_dict = converters.to_torch(layer)
    want = module.state_dict()
    assert list(state_dict) == list(want)
    for key, value in want.items():
        assert state_dict[key].dtype == np.float32
        assert np.array_equal(state_dict[key], value.numpy()), key
    # ... and from a plain state_dict (config inferred from keys and shapes).
    again = converters.to_torch(
        converters.from_torch(dict(want), batch_first=cfg["batch_first"])
    )
    assert all(np.array_equal(again[k], v.numpy()) for k, v in want.items())
    rebuilt = converters.to_torch_module(layer)
    assert isinstance(rebuilt, torch.nn.LSTM)
    for key, value in rebuilt.state_dict().items():
        assert torch.equal(value, want[key])
    assert rebuilt.batch_first == cfg["batch_first"]


@pytest.mark.parametrize("cfg", GRID[::5], ids=_ids)
def test_converted_layer_matches_torch(cfg):
    module = _torch_lstm(cfg, torch.float64)
    layer = converters.from_torch(module)
    assert layer.compute_dtype == "float64"
    report = converters.compare(layer, module)
    assert set(report) == {"output", "h_n", "c_n"}
    assert max(e.abs for e in report.values()) <= ATOL["float64"]


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_round_trip(bias):
    torch.manual_seed(0)
    module = torch.nn.LSTMCell(H_IN, H, bias=bias)
    cell = converters.from_torch(module.state_dict())
    assert isinstance(cell, tflstm.LSTMCell) and cell.bias == bias
    state_dict = converters.to_torch(cell)
    assert list(state_dict) == list(module.state_dict())
    assert all(
        np.array_equal(state_dict[k], v.numpy()) for k, v in module.state_dict().items()
    )
    assert (
        max(e.abs for e in converters.compare(cell, module).values()) <= ATOL["float32"]
    )
    assert isinstance(converters.to_torch_module(cell), torch.nn.LSTMCell)


def test_module_settings_and_overrides():
    module = torch.nn.LSTM(H_IN, H, num_layers=2, batch_first=True, dropout=0.25)
    layer = converters.from_torch(module)
    assert (layer.batch_first, layer.dropout) == (True, 0.25)
    layer = converters.from_torch(module, batch_first=False, dropout=0.0)
    assert (layer.batch_first, layer.dropout) == (False, 0.0)
    # A state_dict does not record them: the defaults are torch's.
    layer = converters.from_torch(module.state_dict())
    assert (layer.batch_first, layer.dropout) == (False, 0.0)


def test_whole_model_module_with_prefix():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(11, H_IN)
            self.encoder = torch.nn.Module()
            self.encoder.rnn = torch.nn.LSTM(
                H_IN, H, batch_first=True, bidirectional=True
            )
            self.decoder = torch.nn.LSTMCell(2 * H, 3)

    model = Model()
    specs = converters.find_recurrent(model.state_dict())
    assert [(s.prefix, s.kind) for s in specs] == [
        ("decoder", "LSTMCell"),
        ("encoder.rnn", "LSTM"),
    ]
    assert specs[1] == converters.RecurrentSpec(
        "encoder.rnn", "LSTM", H_IN, H, num_layers=1, bias=True, bidirectional=True
    )
    assert model.get_submodule(specs[1].prefix) is model.encoder.rnn
    for prefix in ("encoder.rnn", "encoder.rnn."):
        layer = converters.from_torch(model, prefix=prefix)
        assert layer.batch_first  # read off the submodule
        assert (
            max(e.abs for e in converters.compare(layer, model.encoder.rnn).values())
            <= ATOL["float32"]
        )
    cell = converters.from_torch(model.state_dict(), prefix="decoder")
    assert (cell.input_size, cell.hidden_size) == (2 * H, 3)
    message = "No recurrent parameters at prefix 'encoder'. The checkpoint holds recurrent parameters (nn.LSTM, nn.GRU, nn.RNN or their cells) at the prefixes: 'decoder', 'encoder.rnn'"
    for prefix in ("encoder", "encoder."):
        with pytest.raises(ValueError, match=re.escape(message)):
            converters.from_torch(model, prefix=prefix)
    with pytest.raises(
        ValueError, match=re.escape("No recurrent parameters at prefix '' (the root). ")
    ):
        converters.from_torch(model.state_dict())
    with pytest.raises(
        ValueError,
        match=re.escape(
            "No recurrent parameters at prefix 'rnn'. The checkpoint holds no parameters of an nn.LSTM, nn.GRU, nn.RNN or their cells"
        ),
    ):
        converters.from_torch({"head.weight": np.zeros((2, 3))}, prefix="rnn")


def test_inconsistent_state_dict_lists_every_problem():
    state_dict = dict(torch.nn.LSTM(H_IN, H, num_layers=2, proj_size=3).state_dict())
    del state_dict["weight_hh_l1"]
    state_dict["bias_hh_l0"] = torch.zeros(13)
    state_dict["weight_ih_l2"] = torch.zeros(28, 3)
    with pytest.raises(ValueError) as info:
        converters.from_torch(state_dict)
    # weight_ih_l2 makes it a 3-layer LSTM: the rest of layer 2 is missing.
    assert str(info.value) == (
        "The weights do not fit the nn.LSTM inferred at the root.\n"
        "Missing keys: weight_hh_l1, weight_hh_l2, bias_ih_l2, bias_hh_l2, weight_hr_l2\n"
        "Shape mismatches: bias_hh_l0: expected (28,), received (13,)"
    )


def test_inference_errors():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "expected `weight_ih_l0` of shape (4*hidden_size, input_size). Received: shape (13, 5)"
        ),
    ):
        converters.from_torch(
            {"weight_ih_l0": np.zeros((13, 5)), "weight_hh_l0": np.zeros((12, 3))}
        )
    with pytest.raises(ValueError) as info:  # weight_hh tells the cell
        converters.from_torch(
            {"weight_ih": np.zeros((13, 5)), "weight_hh": np.zeros((13, 3))}
        )
    assert str(info.value) == (
        "Cannot tell which recurrent module the parameters at the root belong to: "
        "expected `weight_hh` of shape (4*hidden_size, hidden_size) for an nn.LSTM, "
        "(3*hidden_size, hidden_size) for an nn.GRU, (hidden_size, hidden_size) "
        "for an nn.RNN. Received: shape (13, 3)"
    )
    with pytest.raises(ValueError, match=re.escape("Received: no such key")):
        converters.from_torch({"weight_hh_l0": np.zeros((12, 3))})
    with pytest.raises(
        ValueError,
        match=re.escape(
            "mix layer names (weight_ih_l0, ...) with other names. Received: weight_hh"
        ),
    ):
        converters.from_torch(
            {"weight_ih_l0": np.zeros((12, 5)), "weight_hh": np.zeros((12, 3))}
        )
    proj = {
        "weight_ih_l0": np.zeros((12, 5)),
        "weight_hh_l0": np.zeros((12, 3)),
        "weight_hr_l0": np.zeros((3, 3)),
    }
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`weight_hr_l0` gives proj_size=3, expected smaller than hidden_size=3."
        ),
    ):
        converters.from_torch(proj)
    with pytest.raises(TypeError, match=re.escape("Received: an object of type int")):
        converters.from_torch(3)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "do not apply to an nn.LSTMCell. Received: batch_first=True, dropout=None"
        ),
    ):
        converters.from_torch(torch.nn.LSTMCell(2, 3), batch_first=True)


def test_load_weights_is_strict_and_all_or_nothing():
    layer = tflstm.LSTM(H_IN, H, seed=0)
    before = layer.get_weights()
    state_dict = converters.to_torch(tflstm.LSTM(H_IN, H, seed=1))
    state_dict["weight_hh_l0"] = np.zeros((28, 2), "float32")
    state_dict["extra"] = np.zeros(1)
    with pytest.raises(ValueError) as info:
        converters.load_weights(layer, state_dict)
    assert "Unexpected keys: extra" in str(info.value)
    assert "Shape mismatches: weight_hh_l0: expected (28, 7), received (28, 2)" in str(
        info.value
    )
    for a, b in zip(before, layer.get_weights(), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("source_dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_of_converted_layer(source_dtype):
    module = _torch_lstm(dict(num_layers=2), source_dtype)
    layer = converters.from_torch(module.state_dict())
    want = "float64" if source_dtype == torch.float64 else "float32"
    assert layer.compute_dtype == want
    for key, value in module.state_dict().items():
        assert np.array_equal(
            getattr(layer, key).numpy(), value.to(torch.float64).numpy()
        )
    assert converters.from_torch(module, dtype="float64").compute_dtype == "float64"


# -- stock Keras -------------------------------------------------------------

KERAS_GRID = [c for c in GRID if not c["proj_size"]]


@pytest.mark.parametrize("cfg", KERAS_GRID, ids=_ids)
def test_keras_round_trip(cfg):
    layer = tflstm.LSTM(
        H_IN, H, **cfg, dropout=0.3 if cfg["num_layers"] > 1 else 0.0, seed=2
    )
    model = converters.to_keras(layer)
    assert isinstance(model, keras.Sequential)
    x = np.random.default_rng(0).standard_normal((3, 6, H_IN)).astype("float32")
    ours = layer(x if cfg["batch_first"] else x.transpose(1, 0, 2))[0].numpy()
    ours = ours if cfg["batch_first"] else ours.transpose(1, 0, 2)
    np.testing.assert_allclose(model(x).numpy(), ours, atol=1e-6, rtol=0)
    back = converters.from_keras(model, batch_first=cfg["batch_first"])
    assert converters.torch_config(back) == converters.torch_config(layer)
    again = back(x if cfg["batch_first"] else x.transpose(1, 0, 2))[0].numpy()
    again = again if cfg["batch_first"] else again.transpose(1, 0, 2)
    np.testing.assert_allclose(again, ours, atol=1e-6, rtol=0)
    # The only loss: bias_ih + bias_hh, kept as their sum.
    if cfg["bias"]:
        params, restored = converters.to_torch(layer), converters.to_torch(back)
        np.testing.assert_allclose(
            restored["bias_ih_l0"] + restored["bias_hh_l0"],
            params["bias_ih_l0"] + params["bias_hh_l0"],
            atol=1e-7,
        )
        assert not restored["bias_hh_l0"].any()


def test_from_single_keras_layers():
    x = np.random.default_rng(0).standard_normal((2, 4, H_IN)).astype("float32")
    for keras_layer in (
        keras.layers.LSTM(H, return_sequences=True),
        keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True)),
    ):
        want = keras_layer(x).numpy()
        layer = converters.from_keras(keras_layer)
        np.testing.assert_allclose(layer(x)[0].numpy(), want, atol=1e-6, rtol=0)


def test_to_keras_refuses_projection():
    message = "keras.layers.LSTM has no projection, so a tflstm.LSTM with proj_size > 0 cannot be converted to stock Keras layers. Received: proj_size=3"
    with pytest.raises(ValueError, match=re.escape(message)):
        converters.to_keras(tflstm.LSTM(H_IN, H, proj_size=3))


def test_from_keras_errors():
    x = np.zeros((1, 2, H_IN), "float32")

    def built(layer):
        layer(x)
        return layer

    cases = [
        (
            built(keras.layers.LSTM(H, activation="relu")),
            "with activation='tanh', as torch.nn.LSTM computes. Received: activation='relu'",
        ),
        (
            built(keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode="sum")),
            "with merge_mode='concat', as torch concatenates. Received: merge_mode='sum'",
        ),
        (
            built(keras.layers.LSTM(H, go_backwards=True)),
            "with go_backwards=False. Received: go_backwards=True",
        ),
        (
            keras.Sequential(
                [
                    keras.Input((None, H_IN)),
                    keras.layers.LSTM(H, return_sequences=True),
                    keras.layers.LSTM(3),
                ]
            ),
            "Expected every layer with the same units, use_bias and directions",
        ),
        (
            keras.Sequential(
                [
                    keras.Input((None, H_IN)),
                    keras.layers.LSTM(H, return_sequences=True),
                    keras.layers.Dense(3),
                ]
            ),
            "Expected only keras.layers.LSTM, GRU or SimpleRNN, Bidirectional and Dropout layers. Received: Dense",
        ),
        (
            keras.Sequential(
                [
                    keras.Input((None, H_IN)),
                    keras.layers.LSTM(H, return_sequences=True),
                    keras.layers.Dropout(0.1),
                    keras.layers.LSTM(H, return_sequences=True),
                    keras.layers.Dropout(0.2),
                    keras.layers.LSTM(H),
                ]
            ),
            "Expected one dropout rate between all layers, as torch's recurrent modules have. Received: rates [0.1, 0.2]",
        ),
    ]
    for source, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            converters.from_keras(source)
    with pytest.raises(TypeError, match="Received: an object of type str"):
        converters.from_keras("lstm")


def test_compare_judges_by_torchs_own_float32_error():
    """`compare` passes an exact port and fails one with a weight off by 1e-3,
    reporting each tensor's error, torch's own float32 error and the bound."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, num_layers=2, bidirectional=True)
    layer = converters.from_torch(module)
    report = converters.compare(layer, module)
    assert report.ok and set(report) == {"output", "h_n", "c_n"}
    for error in report.values():
        assert error.torch_abs is not None
        assert error.bound >= 4 * error.torch_abs
        assert error.abs <= error.bound
    assert str(report).splitlines()[-1] == (
        "rule: max abs error against torch in float64 <= 4 x max(torch's own "
        "float32 error, 4 ulps of the tensor's largest magnitude)"
    )
    weight = layer.weight_hh_l1_reverse.numpy()
    weight[3, 2] += 1e-3
    layer.weight_hh_l1_reverse.assign(weight)
    wrong = converters.compare(layer, module)
    assert not wrong.ok and not wrong["output"].ok
    assert "above the bound" in str(wrong)
    fixed = converters.compare(layer, module, atol=1e-3)  # a looser, fixed rule
    assert fixed.ok and fixed.rule.endswith("<= atol 1e-03")
