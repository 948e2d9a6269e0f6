"""Quantized `.tflite` exports of layers with heavy-tailed weights, like
published checkpoints (Resemblyzer's weight_ih_l0: median |w| 0.16, 99.9th
percentile 17.6, max 61; benchmarks/quantize_real.md), against torch.

Synthetic: weight_ih_l0's magnitudes log-normal with that median and 99.9th
percentile, capped at that max; the other weights torch's initial ones, a
forget-gate bias that lets the cell state grow past 20 (the real ones reach
56-109); inputs uniform in [0, 1] like mel frames. Three cases: heavy tails
(dynamic keeps the heavy matrix float32 and meets its tolerance; int8 is
warned about and misses), a long memory with tame weights (both warned about
given `representative_data`, both miss), and a tame layer (no warning, both
within tolerance); float16 weights meet their tolerance in all three.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import oracle
import pytest
import torch

import tflstm
from tflstm.tflite import (
    HEAVY_TAIL_RATIO,
    LONG_MEMORY_CELL_STATE,
    QUANTIZED_RTOL,
    QuantizationWarning,
    export_tflite,
    run_tflite,
)
from tflstm.tflite import _internals as internals

H_IN, H, L, N = 40, 64, 60, 2
MEDIAN, P999, MAX = 0.16, 17.0, 61.0
CALIBRATION_BATCHES = 4
# (heavy-tailed weight_ih_l0, forget-gate bias): sigmoid(3) = 0.95 and
# sigmoid(8) = 0.9997, the cell state integrates its input (a long memory).
CASES = {"heavy": (True, 3.0), "long_memory": (False, 8.0), "tame": (False, 0.0)}


def heavy_tailed(shape, rng) -> np.ndarray:
    """Log-normal magnitudes: median `MEDIAN`, 99.9th percentile `P999`,
    the largest set to `MAX`; random signs."""
    sigma = np.log(P999 / MEDIAN) / 3.0902  # the normal's 99.9th percentile
    w = MEDIAN * np.exp(sigma * rng.standard_normal(shape))
    w = np.minimum(w, MAX)
    w.flat[np.argmax(w)] = MAX
    return (w * rng.choice([-1.0, 1.0], shape)).astype("float32")


def torch_module(heavy: bool, forget_bias: float) -> torch.nn.LSTM:
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        if heavy:
            module.weight_ih_l0.copy_(
                torch.from_numpy(heavy_tailed((4 * H, H_IN), rng))
            )
        module.bias_ih_l0[H : 2 * H] = forget_bias
    return module


def inputs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (L, N, H_IN)).astype("float32")


def relative_errors(got, expected) -> list[float]:
    return [
        float(np.abs(g - e).max() / np.abs(e).max())
        for g, e in zip(got, expected, strict=True)
    ]


def reference(module: torch.nn.LSTM, x: np.ndarray):
    result = oracle.run_torch(module, x)
    return result["out0"], result["out1"], result["out2"]


@pytest.fixture(scope="module", params=list(CASES))
def case(request, build_once):
    """The layer, torch's float64 outputs, and the exported models."""
    heavy, forget_bias = CASES[request.param]
    module = torch_module(heavy, forget_bias)
    layer = tflstm.LSTM(H_IN, H)
    layer.build((L, N, H_IN))
    oracle.copy_torch_weights(module, layer)
    calibration = [inputs(10 + i) for i in range(CALIBRATION_BATCHES)]

    def build(folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuantizationWarning)
            for graph in ("fused", "unrolled"):
                model = export_tflite(
                    layer, batch_size=N, fixed_length=L, graph=graph, quantize="dynamic"
                )
                (folder / f"{graph}_dynamic.tflite").write_bytes(model)
            model = export_tflite(
                layer, batch_size=N, quantize="int8", representative_data=calibration
            )
            (folder / "fused_int8.tflite").write_bytes(model)
            model = export_tflite(layer, batch_size=N, quantize="float16")
            (folder / "fused_float16.tflite").write_bytes(model)

    folder = build_once(f"heavy-tails-{request.param}", build)
    x = inputs(0)
    return {
        "name": request.param,
        "heavy": heavy,
        "layer": layer,
        "calibration": calibration,
        "x": x,
        "expected": reference(module, x),
        "models": {p.stem: p.read_bytes() for p in folder.glob("*.tflite")},
    }


def test_synthetic_weights_have_the_tails_and_states_of_real_ones(case):
    w = np.abs(case["layer"].weight_ih_l0.numpy())
    c_max = np.abs(case["expected"][2]).max()
    if case["name"] == "tame":
        assert c_max < LONG_MEMORY_CELL_STATE
    else:
        assert c_max > LONG_MEMORY_CELL_STATE
    if case["heavy"]:
        assert np.median(w) == pytest.approx(MEDIAN, rel=0.1)
        assert np.quantile(w, 0.999) == pytest.approx(P999, rel=0.35)
        assert w.max() == MAX


@pytest.mark.parametrize("graph", ["fused", "unrolled"])
def test_dynamic_within_tolerance_or_warned(case, graph):
    """Heavy tails: the heavy matrix stays float32, and the model meets the
    tolerance. A long memory: warned about (with `representative_data`),
    and it misses."""
    model = case["models"][f"{graph}_dynamic"]
    output, (h_n, c_n) = run_tflite(model, case["layer"].get_config(), case["x"])
    errors = relative_errors((output, h_n, c_n), case["expected"])
    if case["name"] == "long_memory":
        assert max(errors) > QUANTIZED_RTOL["dynamic"], errors
    else:
        assert max(errors) <= QUANTIZED_RTOL["dynamic"], errors


def test_dynamic_long_memory_warning(case):
    layer, data = case["layer"], case["calibration"]
    if case["name"] == "long_memory":
        with pytest.warns(QuantizationWarning, match=r"cell state reaches \|c\| = "):
            export_tflite(layer, quantize="dynamic", representative_data=data)
    elif case["name"] == "tame":
        export_tflite(layer, quantize="dynamic", representative_data=data)


def test_dynamic_keeps_only_the_heavy_matrix_float(case):
    """The unrolled graph's FULLY_CONNECTED weights: int8 (per row), except
    weight_ih_l0 when it is heavy-tailed."""
    model = internals.load(case["models"]["unrolled_dynamic"])
    graph = model.subgraphs[0]
    schema = internals._schema()
    fully_connected = schema.BuiltinOperator.FULLY_CONNECTED
    types = {}
    for op in graph.operators:
        if internals._code(model, op) == fully_connected:
            weights = graph.tensors[op.inputs[1]]
            types[tuple(weights.shape)] = weights.type
    expected_ih = schema.TensorType.FLOAT32 if case["heavy"] else schema.TensorType.INT8
    assert types == {(4 * H, H_IN): expected_ih, (4 * H, H): schema.TensorType.INT8}


def test_int8_within_tolerance_or_warned(case):
    """The warning's prediction (weights only) against the measurement: a
    heavy-tailed layer is warned about and misses; a tame one is not and
    meets the tolerance."""
    layer = case["layer"]
    data = case["calibration"]
    expected = {
        "heavy": r"weight_ih_l0 \(\d+:1",
        "long_memory": r"cell state reaches \|c\| = ",
    }
    if case["name"] in expected:
        with pytest.warns(QuantizationWarning) as record:
            export_tflite(
                layer, batch_size=N, quantize="int8", representative_data=data
            )
        messages = [str(w.message) for w in record]
        assert any(re.search(expected[case["name"]], m) for m in messages), messages
    else:
        export_tflite(layer, batch_size=N, quantize="int8", representative_data=data)
    output, (h_n, c_n) = run_tflite(
        case["models"]["fused_int8"], layer.get_config(), case["x"]
    )
    errors = relative_errors((output, h_n, c_n), case["expected"])
    if case["name"] in expected:
        assert max(errors) > QUANTIZED_RTOL["int8"], errors
    else:
        assert max(errors) <= QUANTIZED_RTOL["int8"], errors


def test_heavy_tail_ratio_separates_the_cases(case):
    spread = tflstm.tflite.quantize.spread(case["layer"].weight_ih_l0.numpy(), "gates")
    assert (spread > HEAVY_TAIL_RATIO) == case["heavy"]


def test_float16_within_tolerance(case):
    """float16 weights with float32 math: within its tolerance whatever the
    tails and the memory (where 8 bits miss)."""
    model = case["models"]["fused_float16"]
    output, (h_n, c_n) = run_tflite(model, case["layer"].get_config(), case["x"])
    errors = relative_errors((output, h_n, c_n), case["expected"])
    assert max(errors) <= QUANTIZED_RTOL["float16"], errors
