"""Quantization: the tolerances, the predictions of a miss (heavy-tailed
weights, a long memory) and the heavy-tailed matrices kept in float32 (see
`tflstm.tflite`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from tflstm._ops import directions, project
from tflstm.cells import LSTM as LSTM_CELL
from tflstm.lstm import LSTM
from tflstm.lstm_cell import LSTMCell
from tflstm.tflite import _internals as internals
from tflstm.tflite.graphs import (
    float32_weights,
    fused_weights,
    padding,
    pairs,
    state_name,
    time_major,
)


class QuantizationWarning(UserWarning):
    """`export_tflite` predicts, from the layer's weights, that a quantized
    model will miss its tolerance (`QUANTIZED_RTOL`); the message says why
    and what to do."""


QUANTIZE_MODES = (None, "dynamic", "int8", "float16")


# The error that a quantized model is held to (by the tests and
# `tflstm-convert --verify`), relative to each tensor's largest magnitude: a
# margin over what the modes give on random layers and the bundled demo model
# (docs/guides/kernels.md, "Measurements behind the code").
QUANTIZED_RTOL = {"dynamic": 2e-2, "int8": 5e-2, "float16": 1e-2}


# Heavy tails: where one quantization scale (a row of a FULLY_CONNECTED, a
# gate matrix of the fused op, a projection) covers weights whose largest
# magnitude exceeds this many times their median, most of them keep a handful
# of int8 levels. The bound lies between the spreads of trained matrices that
# 8 bits serve and those they do not (docs/guides/kernels.md, "Measurements
# behind the code").
# Under "dynamic", such a matrix keeps its float32 weights (in the fused op:
# its whole layer and direction); "int8" cannot, and `export_tflite` warns.
HEAVY_TAIL_RATIO = 50.0


# Long memory: quantization errors add up over the steps during which the
# forget gate keeps the cell state, and the largest |c_t| shows it. Above
# this bound (checked on `representative_data`) `export_tflite` warns; below
# it a model may still miss (docs/guides/kernels.md, "Measurements behind the
# code").
LONG_MEMORY_CELL_STATE = 20.0


def spread(matrix: np.ndarray, blocks: str, gates: int = 4) -> float:
    """The largest max|w| : median|w| over the blocks that share a scale:
    `"rows"`, `"gates"` (`gates` row blocks) or `"tensor"`; the median over
    the nonzero weights (a pruned matrix is not heavy-tailed for its zeros)."""
    a = np.abs(np.asarray(matrix, np.float64))
    parts = {"rows": list(a), "gates": np.split(a, gates), "tensor": [a]}[blocks]
    worst = 0.0
    for part in parts:
        nonzero = part[part > 0]
        if nonzero.size:
            worst = max(worst, float(nonzero.max() / np.median(nonzero)))
    return worst


def heavy_matrices(layer: LSTM | LSTMCell, per_row: bool) -> dict[str, float]:
    """The weight matrices (torch's names) whose spread (`spread`, per row
    for `per_row`, else per gate matrix and per projection) exceeds
    `HEAVY_TAIL_RATIO`, with that spread."""
    heavy = {}
    for variable in layer.weights:
        name = variable.name.split("/")[-1].split(":")[0]
        if not name.startswith("weight_"):
            continue
        blocks = "rows" if per_row else "tensor" if "_hr" in name else "gates"
        ratio = spread(variable.numpy(), blocks, layer.cell.spec.gates)
        if ratio > HEAVY_TAIL_RATIO:
            heavy[name] = ratio
    return heavy


def _heavy_tail_message(layer: LSTM | LSTMCell, heavy: dict[str, float]) -> str:
    shown = []
    for name, spread in heavy.items():
        w = np.abs(getattr(layer, name).numpy())
        shown.append(
            f"{name} ({spread:.0f}:1; median |w| {np.median(w):.3g}, max {w.max():.3g})"
        )
    return (
        "quantize='int8' is predicted to miss its tolerance "
        f"(QUANTIZED_RTOL={QUANTIZED_RTOL['int8']}): weights with a dynamic "
        f"range above {HEAVY_TAIL_RATIO:.0f}:1 within one quantization scale in "
        f"{', '.join(shown)}; int8 has one scale per gate matrix, which leaves "
        "most of these weights a handful of levels. Use quantize='float16' "
        "(half the float size, float32 math) or quantize='dynamic' (which "
        "keeps such matrices float32)."
    )


def quantization_risks(
    layer: LSTM | LSTMCell,
    quantize: str | None,
    inputs: Iterable[Any] = (),
    *,
    source: str = "the given inputs",
) -> list[str]:
    """Why a model quantized with `quantize` is predicted to miss its
    tolerance (`QUANTIZED_RTOL`): what `export_tflite` warns, with the cell
    state checked on `inputs` (batched inputs laid out as the layer's; not for
    an `LSTMCell`, which runs one step). `tflstm-convert --verify` says it
    when a quantized model fails.

    >>> quantization_risks(LSTM(4, 8), "dynamic", [np.zeros((5, 2, 4))])
    []
    """
    data = []
    if isinstance(layer, LSTM):
        data = [np.asarray(x, "float32") for x in inputs]
    return predicted_misses(layer, quantize, data, source)


def predicted_misses(
    layer: LSTM | LSTMCell,
    quantize: str | None,
    calibration: list[np.ndarray],
    source: str = "`representative_data`",
) -> list[str]:
    """Why the quantized model is predicted to miss `QUANTIZED_RTOL`: int8
    and heavy-tailed weights (`HEAVY_TAIL_RATIO`); a cell state that grows
    beyond `LONG_MEMORY_CELL_STATE` on `calibration` (empty: not checked)."""
    if quantize in (None, "float16"):
        return []
    messages = []
    if quantize == "int8":
        heavy = heavy_matrices(layer, per_row=False)
        if heavy:
            messages.append(_heavy_tail_message(layer, heavy))
    if calibration and isinstance(layer, LSTM):
        largest = max(cell_state_maxima(layer, calibration).values())
        if largest > LONG_MEMORY_CELL_STATE:
            messages.append(
                f"quantize={quantize!r} is likely to miss its tolerance "
                f"(QUANTIZED_RTOL={QUANTIZED_RTOL[quantize]}): the cell state "
                f"reaches |c| = {largest:.3g} on {source} (above "
                f"{LONG_MEMORY_CELL_STATE:g}: a long memory, over which "
                "the 8-bit rounding errors of every step add up). Use "
                "quantize='float16' (half the float size, float32 math) or "
                "quantize=None, or check the error on your data "
                "(`tflstm-convert ... --verify`)."
            )
    return messages


def cell_state_maxima(layer: LSTM, inputs: list[np.ndarray]) -> dict[str, float]:
    """max |c_t| over every step of `inputs` (zero initial states), per
    layer and direction, by `c_0_...` name, from the layer's float32 math."""

    def recurrence(x, state, weights, valid):
        del valid
        rec = weights.recurrent()

        def one_step(carry, z):
            h, c, largest = carry
            (h, c), _ = LSTM_CELL.step(z, (h, c), rec)
            return h, c, tf.maximum(largest, tf.abs(c))

        h0, c0 = state
        hs, _, largest = tf.scan(
            one_step, project(x, weights), initializer=(h0, c0, c0)
        )
        return hs, (largest[-1],)

    per_layer = [float32_weights(layer, k) for k in range(layer.num_layers)]

    @tf.function(autograph=False, reduce_retracing=True)
    def maxima(x):
        result = []
        for weights in per_layer:
            batch = tf.shape(x)[1]
            d_count = weights.num_directions
            h0 = tf.zeros([d_count, batch, layer.output_size])
            c0 = tf.zeros([d_count, batch, layer.hidden_size])
            x, (largest,) = directions(
                recurrence, x, (h0, c0), weights.map(tf.constant), None
            )
            result.append(tf.reduce_max(largest, axis=[1, 2]))
        return tf.concat(result, 0)

    found = np.zeros(len(pairs(layer)))
    for x in inputs:
        found = np.maximum(found, maxima(time_major(layer, tf.constant(x))).numpy())
    return {
        state_name("c_0", k, d): float(m)
        for (k, d), m in zip(pairs(layer), found, strict=True)
    }


def keep_heavy_fused_float(layer: LSTM, flatbuffer: bytes, lengths: bool) -> bytes:
    """The hybrid fused graph with the ops whose gate matrices are
    heavy-tailed (`heavy_matrices`) in float32."""
    heavy = heavy_matrices(layer, per_row=False)
    ops = {}
    for k, d in pairs(layer):
        suffix = f"_l{k}{'_reverse' if d else ''}"
        if not any(name.endswith(suffix) for name in heavy):
            continue
        w = fused_weights(layer, k, d)
        kernel = w.kernel
        if lengths:  # the padding row that `fused_graph` adds
            kernel, _ = padding(kernel, layer.hidden_size)
        ops[state_name("h_0", k, d)] = (kernel.T, w.recurrent_kernel.T)
    return internals.keep_fused_float(flatbuffer, ops) if ops else flatbuffer


def keep_heavy_float(layer: LSTM | LSTMCell, flatbuffer: bytes) -> bytes:
    """A hybrid graph of FULLY_CONNECTED ops (per-row weight scales) with the
    heavy-tailed matrices (`heavy_matrices`) in float32."""
    heavy = heavy_matrices(layer, per_row=True)
    if not heavy:
        return flatbuffer
    matrices = [getattr(layer, name).numpy().astype("float32") for name in heavy]
    return internals.keep_float_matrices(flatbuffer, matrices)
