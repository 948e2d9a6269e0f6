"""TFLite export: every grid configuration in the LiteRT interpreter against
torch, builtin ops only (the fused LSTM op), resizable length, explicit and
independent states, streaming."""

import re

import numpy as np
import pytest
import torch
from ai_edge_litert.interpreter import Interpreter
from oracle import ATOL
from test_lstm_parity import GRID

import converters
import tflstm
from tflstm.tflite import export_tflite, run_tflite, tflite_ops

H_IN, H = 5, 7
BATCH = 2
ALLOWED_OPS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "REVERSE_V2",
    "CONCATENATION",
    "TRANSPOSE",
}


def _inputs(layer, steps, batch, rng):
    shape = (batch, steps, H_IN) if layer.batch_first else (steps, batch, H_IN)
    n_states = layer.num_layers * layer.num_directions
    return rng.standard_normal(shape).astype("float32"), (
        rng.standard_normal((n_states, batch, layer.output_size)).astype("float32"),
        rng.standard_normal((n_states, batch, H)).astype("float32"),
    )


def _torch(module, x, hx):
    with torch.no_grad():
        output, (h_n, c_n) = module(
            torch.from_numpy(x), tuple(map(torch.from_numpy, hx))
        )
    return output.numpy(), h_n.numpy(), c_n.numpy()


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "fallback"])
def test_every_configuration_matches_torch_in_litert(fused):
    rng = np.random.default_rng(0)
    errors = {}
    for i, cfg in enumerate(GRID):
        torch.manual_seed(i)
        module = torch.nn.LSTM(H_IN, H, **cfg)
        layer = converters.from_torch(module)
        flatbuffer = export_tflite(layer, batch_size=BATCH, fused=fused)
        ops = tflite_ops(flatbuffer)
        assert not any(op.startswith(("CUSTOM", "DELEGATE")) for op in ops), (
            ops
        )  # no Flex
        if fused:  # the fused op, one per layer and direction, and no loop
            assert set(ops) <= ALLOWED_OPS, (cfg, ops)
            assert (
                ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM")
                == layer.num_layers * layer.num_directions
            )
        else:  # the builtin fallback: one WHILE loop per layer and direction
            loops = layer.num_layers * layer.num_directions
            assert ops.count("WHILE") == loops, (cfg, ops)
            assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
        # Two lengths from one file, and (fused op only) a batch resized at run time.
        shapes = [(6, BATCH), (17, BATCH)] + ([(9, 3)] if fused else [])
        for steps, batch in shapes:
            x, hx = _inputs(layer, steps, batch, rng)
            got = run_tflite(flatbuffer, layer.get_config(), x, hx)
            want = _torch(module, x, hx)
            for name, a, b in zip(
                ("output", "h_n", "c_n"), (got[0], *got[1]), want, strict=True
            ):
                assert a.shape == b.shape, (cfg, name)
                errors[i, steps, batch, name] = float(np.abs(a - b).max())
    bad = {k: e for k, e in errors.items() if not e <= ATOL["float32"]}
    assert not bad, bad


def test_calls_are_independent_and_stream():
    layer = tflstm.LSTM(H_IN, H, num_layers=2, proj_size=3, seed=0)
    flatbuffer = export_tflite(layer)
    runner = Interpreter(model_content=flatbuffer).get_signature_runner(
        "serving_default"
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 1, H_IN)).astype("float32")
    zeros = {
        f"{s}_0_l{k}": np.zeros((1, 3 if s == "h" else H), "float32")
        for s in "hc"
        for k in range(2)
    }
    first = runner(input=x, **zeros)["output"].copy()
    again = runner(input=x, **zeros)["output"]
    np.testing.assert_array_equal(first, again)  # no state leaks between calls
    # Chunk by chunk, feeding back h_n / c_n, equals the whole sequence.
    state, chunks = dict(zeros), []
    for start, stop in [(0, 4), (4, 5), (5, 30)]:
        out = runner(input=x[start:stop], **state)
        chunks.append(out["output"].copy())
        state = {
            f"{s}_0_l{k}": out[f"{s}_n_l{k}"].copy() for s in "hc" for k in range(2)
        }
    np.testing.assert_allclose(np.concatenate(chunks), first, atol=1e-6, rtol=0)
    whole, _ = layer(x)
    np.testing.assert_allclose(first, whole, atol=ATOL["float32"], rtol=0)


def test_large_cell_state_is_not_clipped():
    """TFLite's converter sets cell_clip=10; torch never clips: the export
    sets it to 0, so a cell state beyond 10 stays exact."""
    layer = tflstm.LSTM(H_IN, H, seed=0)
    bias = layer.bias_ih_l0.numpy()
    bias[H : 2 * H] = 10.0  # forget gate ~1: the cell state keeps its 40
    layer.bias_ih_l0.assign(bias)
    module = converters.to_torch_module(layer)
    x = np.random.default_rng(0).standard_normal((5, 1, H_IN)).astype("float32")
    hx = (np.zeros((1, 1, H), "float32"), np.full((1, 1, H), 40.0, "float32"))
    got = run_tflite(export_tflite(layer), layer.get_config(), x, hx)
    want = _torch(module, x, hx)
    assert np.abs(want[2]).max() > 10
    np.testing.assert_allclose(got[1][1], want[2], atol=ATOL["float32"] * 10, rtol=1e-6)
    np.testing.assert_allclose(got[0], want[0], atol=ATOL["float32"], rtol=0)


def test_export_writes_file_and_checks_arguments(tmp_path):
    layer = tflstm.LSTM(H_IN, H)
    flatbuffer = export_tflite(layer, tmp_path / "lstm.tflite")
    assert (tmp_path / "lstm.tflite").read_bytes() == flatbuffer
    with pytest.raises(
        ValueError, match="argument `batch_size`, expected a positive integer, got 0"
    ):
        export_tflite(layer, batch_size=0)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "Expected a tflstm.LSTM or tflstm.LSTMCell. Received: an object of type str"
        ),
    ):
        export_tflite("lstm")


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_tflite_matches_torch(bias):
    torch.manual_seed(0)
    module = torch.nn.LSTMCell(H_IN, H, bias=bias)
    flatbuffer = export_tflite(converters.from_torch(module), batch_size=3)
    assert set(tflite_ops(flatbuffer)) <= {
        "FULLY_CONNECTED",
        "ADD",
        "MUL",
        "LOGISTIC",
        "TANH",
        "SPLIT",
        "CONCATENATION",
    }
    rng = np.random.default_rng(0)
    x, h, c = (rng.standard_normal((3, n)).astype("float32") for n in (H_IN, H, H))
    out = Interpreter(model_content=flatbuffer).get_signature_runner()(
        input=x, h_0=h, c_0=c
    )
    with torch.no_grad():
        want = module(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    np.testing.assert_allclose(
        out["h_1"], want[0].numpy(), atol=ATOL["float32"], rtol=0
    )
    np.testing.assert_allclose(
        out["c_1"], want[1].numpy(), atol=ATOL["float32"], rtol=0
    )


@pytest.mark.parametrize("proj_size", [3, 0])
def test_keras_litert_export_with_static_batch(tmp_path, proj_size):
    """Keras's own export: builtin ops (the WHILE fallback), static batch;
    without projection the layer needs `fused=False` (BlockLSTMV2 is not a
    TFLite builtin)."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((None, H_IN))
    output, _ = tflstm.LSTM(
        H_IN,
        H,
        num_layers=2,
        bidirectional=True,
        proj_size=proj_size,
        batch_first=True,
        seed=0,
        fused=False,
    )(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(output))
    path = tmp_path / "model.tflite"
    model.export(
        path,
        format="litert",
        input_signature=[tf.TensorSpec([1, None, H_IN])],
        verbose=False,
    )
    flatbuffer = path.read_bytes()
    ops = set(tflite_ops(flatbuffer))
    assert "WHILE" in ops and not any(
        op.startswith(("CUSTOM", "DELEGATE")) for op in ops
    ), ops
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    (name,) = runner.get_input_details()
    for steps in (4, 11):
        x = (
            np.random.default_rng(steps)
            .standard_normal((1, steps, H_IN))
            .astype("float32")
        )
        (got,) = runner(**{name: x}).values()
        np.testing.assert_allclose(
            got, model.predict(x, verbose=0), atol=ATOL["float32"], rtol=0
        )
