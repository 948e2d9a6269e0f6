"""Export for phones: a `.tflite` file (LiteRT) with builtin ops only.

`export_tflite` builds one of three graphs, with the same inputs and outputs:

- `"fused"`: one `UNIDIRECTIONAL_SEQUENCE_LSTM` op per layer and direction,
  TFLite's own LSTM kernel: linear in L, the length resizable at run time.
- `"unrolled"`: for a fixed length L and batch N: the input projection of
  all L*N rows as one FULLY_CONNECTED, then L unrolled steps of
  FULLY_CONNECTED, LOGISTIC, TANH, MUL and ADD ops, which LiteRT's default
  XNNPACK delegate runs. The fused op is not delegated, and its kernel loses
  to XNNPACK from a batch of 2 on.
- `"loop"`: the layer's inference loop as WHILE loops of builtin ops (two per
  layer and direction: blocks of steps, then the rest), for runtimes without
  the fused op; quadratic in L (TFLite's WHILE copies every loop-carried
  tensor at each iteration).

`graph="auto"` (the default) chooses by measurement (`choose_graph`; the
figures are in the README, "Export for serving", from `make bench-tflite`):
the fused op for a batch size of 1, a dynamic length, a fixed length above
`UNROLL_MAX_LENGTH` (unrolling more costs conversion time and about 2 KB of
file per step) or `quantize="int8"`; the unrolled graph for batches of 2 and
more with a fixed length.

Quantization (`quantize=`), as TFLite defines it:

- `"dynamic"`: int8 weights, float activations ("hybrid" kernels, which
  quantize their inputs per row at each call). Scales: one per output row in
  the unrolled and loop graphs' FULLY_CONNECTED ops, one per gate matrix in
  the fused op. The converter keeps a layer in float32 when a gate matrix
  has fewer than 1,024 weights; a heavy-tailed matrix (`HEAVY_TAIL_RATIO`)
  stays float32 too: in the unrolled and loop graphs that matrix alone, in
  the fused op its whole layer and direction.
- `"int8"`: full integer: int8 activations and weights, TFLite's 16-bit
  cell state, the ranges calibrated on `representative_data` (it clips
  whatever exceeds them: calibrate on real inputs). The fused op only (an
  unrolled graph's int8 cell state is too coarse). TFLite's integer LSTM
  kernel is slow on x86 CPUs: int8 is for integer-only hardware. With
  `sequence_lengths`, the model has no `c_n` outputs (`run_tflite` returns
  None): the integer kernel cannot carry the cell state through the padding
  (the float graphs saturate the input and forget gates there, which int8
  cannot do exactly). `output` and `h_n` are right.
- `"float16"`: float16 weights that DEQUANTIZE ops widen once, float32 math:
  half the float file, for the models 8 bits do not serve.

Each mode is held to `QUANTIZED_RTOL`. 8 bits do not serve a model with a long
memory: rounding errors add up over the steps the cell state keeps, so on
published checkpoints both 8-bit modes miss their tolerance while float16
meets it (README, "Export for serving"; benchmarks/quantize_real.md).
`export_tflite` warns (`QuantizationWarning`) where it predicts a miss
(`quantization_risks`): int8 with heavy-tailed weights, and either mode when
the cell state exceeds `LONG_MEMORY_CELL_STATE` on `representative_data`.

The model's inputs are `input` (`(L, N, H_in)`, or `(N, L, H_in)` with
`batch_first`), one `h_0_l{k}[_reverse]` (N, H_out) and `c_0_l{k}[_reverse]`
(N, H_cell) per layer and direction, and with `sequence_lengths=True` an
int32 `sequence_lengths` (N,); all are set at every call, so calls are
independent, and feeding a call the previous `h_n`/`c_n` streams a sequence
chunk by chunk. Outputs: `output`, `h_n_l{k}[_reverse]`,
`c_n_l{k}[_reverse]` (an int8 model's `c_n` is the int16 cell state with its
scale; `run_tflite` dequantizes it). `run_tflite` calls such a model with
torch's conventions.

The fused op needs three fixes that the converter cannot express (the
converter's cell clip of 10, which torch does not have; the projection;
the final states): tflstm/_tflite_internals.py holds them, with every
other dependency on converter internals.

Keras's own `model.export(path, format="litert")` of a model holding a
`tflstm.LSTM` gives builtin ops only too, with Keras's dynamic batch and
length: the layer then runs `tflstm._litert_kernel.buffer_loop_forward`, a
while loop writing into a preallocated buffer, whose time grows with the
square of L (README, "Export for serving"). `export_tflite` is the linear
path.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from _tflstm.extras import require
from _tflstm.params import lstm_param_name as _state_name  # h_0_l1_reverse, ...
from tflstm import _errors, _kernels
from tflstm import _tflite_internals as internals
from tflstm._litert_kernel import unrolled_forward
from tflstm._ops import (
    LSTMWeights,
    cell_step,
    directions,
    project,
    reverse_time,
    step,
    valid_steps,
)
from tflstm._quiet import TFLITE_NOISE, filtered_stderr, without_info_logs
from tflstm.lstm import LSTM
from tflstm.lstm_cell import LSTMCell

GRAPHS = ("auto", "fused", "unrolled", "loop")


class QuantizationWarning(UserWarning):
    """`export_tflite` predicts, from the layer's weights, that a quantized
    model will miss its tolerance (`QUANTIZED_RTOL`); the message says why
    and what to do."""


QUANTIZE_MODES = (None, "dynamic", "int8", "float16")

# The error that a quantized model is held to (by the tests and
# `tflstm-convert --verify`), relative to each tensor's largest magnitude: a
# margin over what the modes give on random layers and the bundled demo model
# (README, "Measurements behind the code").
QUANTIZED_RTOL = {"dynamic": 2e-2, "int8": 5e-2, "float16": 1e-2}

# Heavy tails: where one quantization scale (a row of a FULLY_CONNECTED, a
# gate matrix of the fused op, a projection) covers weights whose largest
# magnitude exceeds this many times their median, most of them keep a handful
# of int8 levels. The bound lies between the spreads of trained matrices that
# 8 bits serve and those they do not (README, "Measurements behind the code").
# Under "dynamic", such a matrix keeps its float32 weights (in the fused op:
# its whole layer and direction); "int8" cannot, and `export_tflite` warns.
HEAVY_TAIL_RATIO = 50.0

# Long memory: quantization errors add up over the steps during which the
# forget gate keeps the cell state, and the largest |c_t| shows it. Above
# this bound (checked on `representative_data`) `export_tflite` warns; below
# it a model may still miss (README, "Measurements behind the code").
LONG_MEMORY_CELL_STATE = 20.0

# The longest fixed length that `graph="auto"` unrolls (above it, conversion
# time and file size grow too much).
UNROLL_MAX_LENGTH = 256


def choose_graph(
    *, batch_size: int, fixed_length: int | None, quantize: str | None
) -> str:
    """The graph `export_tflite(..., graph="auto")` builds (module docstring).

    >>> choose_graph(batch_size=32, fixed_length=100, quantize=None)
    'unrolled'
    >>> choose_graph(batch_size=1, fixed_length=50, quantize=None)
    'fused'
    """
    if quantize == "int8":
        return "fused"
    if batch_size >= 2 and fixed_length is not None:
        if fixed_length <= UNROLL_MAX_LENGTH:
            return "unrolled"
    return "fused"


def _spread(matrix: np.ndarray, blocks: str) -> float:
    """The largest max|w| : median|w| over the blocks that share a scale:
    `"rows"`, `"gates"` (4 row blocks) or `"tensor"`; the median over the
    nonzero weights (a pruned matrix is not heavy-tailed for its zeros)."""
    a = np.abs(np.asarray(matrix, np.float64))
    parts = {"rows": list(a), "gates": np.split(a, 4), "tensor": [a]}[blocks]
    worst = 0.0
    for part in parts:
        nonzero = part[part > 0]
        if nonzero.size:
            worst = max(worst, float(nonzero.max() / np.median(nonzero)))
    return worst


def _heavy_matrices(layer: LSTM | LSTMCell, per_row: bool) -> dict[str, float]:
    """The weight matrices (torch's names) whose spread (`_spread`, per row
    for `per_row`, else per gate matrix and per projection) exceeds
    `HEAVY_TAIL_RATIO`, with that spread."""
    heavy = {}
    for variable in layer.weights:
        name = variable.name.split("/")[-1].split(":")[0]
        if not name.startswith("weight_"):
            continue
        blocks = "rows" if per_row else "tensor" if "_hr" in name else "gates"
        spread = _spread(variable.numpy(), blocks)
        if spread > HEAVY_TAIL_RATIO:
            heavy[name] = spread
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
    return _predicted_misses(layer, quantize, data, source)


def _predicted_misses(
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
        heavy = _heavy_matrices(layer, per_row=False)
        if heavy:
            messages.append(_heavy_tail_message(layer, heavy))
    if calibration and isinstance(layer, LSTM):
        largest = max(_cell_state_maxima(layer, calibration).values())
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


def _pairs(layer: LSTM) -> list[tuple[int, int]]:
    """The (layer, direction) pairs, in torch's state order."""
    return [
        (k, d) for k in range(layer.num_layers) for d in range(layer.num_directions)
    ]


def _signature(
    layer: LSTM, batch_size: int, fixed_length: int | None, lengths: bool
) -> list[tf.TensorSpec]:
    """The specs of `input`, the states and (with `lengths`) `sequence_lengths`."""
    in_shape = [batch_size, fixed_length, layer.input_size]
    if not layer.batch_first:
        in_shape = [fixed_length, batch_size, layer.input_size]
    specs = [tf.TensorSpec(in_shape, tf.float32, name="input")]
    for k, d in _pairs(layer):
        for kind, size in (("h_0", layer.output_size), ("c_0", layer.hidden_size)):
            specs.append(
                tf.TensorSpec([batch_size, size], tf.float32, _state_name(kind, k, d))
            )
    if lengths:
        specs.append(tf.TensorSpec([batch_size], tf.int32, "sequence_lengths"))
    return specs


def _float32_weights(layer: LSTM, k: int) -> LSTMWeights:
    return layer.layer_weights(k, stack=np.stack).map(lambda w: w.astype("float32"))


def _valid_steps(x: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """(L, N, 1) float32: 1 where t < lengths[n], else 0."""
    return tf.cast(valid_steps(lengths, tf.shape(x)[0]), tf.float32)


def _time_major(layer: LSTM, input: tf.Tensor) -> tf.Tensor:
    return tf.transpose(input, [1, 0, 2]) if layer.batch_first else input


def _converter(serve: Any) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _convert(serve: Callable, quantize: str | None = None) -> bytes:
    converter = _converter(serve)
    if quantize in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":  # float16 weights, DEQUANTIZE ops, float32 math
        converter.target_spec.supported_types = [tf.float16]
    # The converter's C++ log lines, and its Python INFO line.
    with filtered_stderr(TFLITE_NOISE), without_info_logs():
        return converter.convert()


# -- the "loop" and "unrolled" graphs: a kernel per layer --------------------------


def _kernel_graph(
    layer: LSTM, kernel: Callable, specs: list, lengths: bool
) -> Callable:
    """The layer's computation with `kernel` (the kernel signature of
    `tflstm._kernels`) and the weights as constants (the converter would keep
    variables as uninitialised resources)."""
    d_count = layer.num_directions
    per_layer = [_float32_weights(layer, k) for k in range(layer.num_layers)]

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, *hx):
        x = _time_major(layer, input)
        seq_lengths = hx[-1] if lengths else None
        outputs = {}
        for k, weights in enumerate(per_layer):
            pairs = range(k * d_count, (k + 1) * d_count)
            h_0 = tf.stack([hx[2 * s] for s in pairs])
            c_0 = tf.stack([hx[2 * s + 1] for s in pairs])
            x, h_n, c_n = kernel(x, h_0, c_0, weights.map(tf.constant), seq_lengths)
            for d in range(d_count):
                outputs[_state_name("h_n", k, d)] = h_n[d]
                outputs[_state_name("c_n", k, d)] = c_n[d]
        outputs["output"] = _time_major(layer, x)
        return outputs

    return serve


# -- the "fused" graph -------------------------------------------------------------

# Packed sequences in the fused op (which has no lengths input), float and
# dynamic range: one more input feature, nonzero on padded steps only, whose
# kernel row drives the input gate's pre-activation to <= -_PAD and the
# forget gate's to >= +_PAD. There sigmoid is exactly 0 and 1 in float32, so
# c_t = 1 * c_{t-1} + 0 * g_t: the cell state passes the padding unchanged
# (c_n is exact); on valid steps the feature is 0 (the numbers do not
# change). Each gate's row is its own largest |weight|, so that a quantized
# gate matrix keeps its scale, and the feature carries the magnitude.
_PAD = 1e4


def _padding(kernel: np.ndarray, hidden_size: int) -> tuple[np.ndarray, float]:
    """The kernel with its padding row, and the padding feature's value."""
    row = np.zeros((1, 4 * hidden_size), "float32")
    gate_max = [
        float(np.abs(kernel[:, g * hidden_size : (g + 1) * hidden_size]).max()) or 1.0
        for g in (0, 1)
    ]
    row[0, :hidden_size] = -gate_max[0]  # input gate: sigmoid -> 0
    row[0, hidden_size : 2 * hidden_size] = gate_max[1]  # forget gate: -> 1
    return np.concatenate([kernel, row]), _PAD / min(gate_max)


def _reverse(t: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
    """`reverse_time` (each sequence reversed within its length), with packed
    sequences as a GATHER_ND: TFLite's REVERSE_SEQUENCE has no int8 kernel."""
    if lengths is None:
        return reverse_time(t, None)
    steps = tf.shape(t)[0]
    time = tf.range(steps)[:, None]
    source = tf.where(time < lengths[None, :], lengths[None, :] - 1 - time, time)
    batch = tf.broadcast_to(tf.range(tf.shape(t)[1])[None, :], tf.shape(source))
    return tf.gather_nd(t, tf.stack([source, batch], -1))


class _FusedWeights(NamedTuple):
    """One fused op's arguments (Keras's layout) and its projection."""

    kernel: np.ndarray  # weight_ih^T (H_in, 4*H)
    recurrent_kernel: np.ndarray  # weight_hh^T (H_out, 4*H)
    bias: np.ndarray  # bias_ih + bias_hh, or zeros (4*H,)
    weight_hr: np.ndarray | None  # (H_out, H)


def _fused_weights(layer: LSTM, k: int, d: int) -> _FusedWeights:
    weights = _float32_weights(layer, k).direction(d).with_bias()
    return _FusedWeights(
        weights.weight_ih.T.copy(),
        weights.weight_hh.T.copy(),
        weights.bias,
        weights.weight_hr,
    )


def _fused_graph(
    layer: LSTM, specs: list, lengths: bool, int8: bool
) -> tuple[Any, dict[str, np.ndarray | None], dict[str, str]]:
    """The fused graph, each op's projection by its h_0 input's name, and the
    states that the patch exposes (output name -> state input name).

    The op leaves its final states in its state inputs: `c_n` is always that
    state; `h_n` too, except with packed sequences (the last valid step) and
    int8 (its states must not be model outputs while it is quantized, and
    its output must keep one use), where it is read from the output.
    """
    d_count = layer.num_directions
    pairs = _pairs(layer)
    weights = {s: _fused_weights(layer, *s) for s in pairs}
    composites = {s: internals.fused_lstm() for s in pairs}
    out_size = layer.output_size
    h_from_output = lengths or int8

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, *hx):
        x = _time_major(layer, input)
        result = {}
        seq_lengths = hx[-1] if lengths else None
        if lengths:
            valid = _valid_steps(x, seq_lengths)
            x = x * valid
            batch = tf.range(tf.shape(x)[1])  # LiteRT can resize the fused op's batch
            last = tf.stack([seq_lengths - 1, batch], axis=1)
        for k in range(layer.num_layers):
            outputs = []
            for d in range(d_count):
                i = 2 * (k * d_count + d)
                w = weights[k, d]
                kernel, x_d = w.kernel, x
                if lengths and not int8:
                    kernel, feature = _padding(kernel, layer.hidden_size)
                    x_d = tf.concat([x, (1.0 - valid) * feature], -1)
                x_d = _reverse(x_d, seq_lengths) if d else x_d
                _, y, _, _, _ = composites[k, d](
                    x_d,
                    hx[i],
                    hx[i + 1],
                    tf.constant(kernel),
                    tf.constant(w.recurrent_kernel),
                    tf.constant(w.bias),
                )
                y = _reverse(y, seq_lengths) if d else y
                outputs.append(y * valid if lengths else y)
            x = tf.concat(outputs, -1) if d_count == 2 else outputs[0]
            for d in range(d_count if h_from_output else 0):
                part = x[..., d * out_size : (d + 1) * out_size]
                if d:  # the backward direction ends at t = 0
                    h_n = part[0]
                elif lengths:
                    h_n = tf.gather_nd(part, last)
                else:
                    h_n = part[-1]
                result[_state_name("h_n", k, d)] = h_n
        result["output"] = _time_major(layer, x)
        return result

    projections = {_state_name("h_0", k, d): weights[k, d].weight_hr for k, d in pairs}
    states = ("c",) if h_from_output else ("h", "c")
    return serve, projections, _state_outputs(layer, states)


def _state_outputs(layer: LSTM, states: tuple[str, ...]) -> dict[str, str]:
    """`{h,c}_n_...` output name -> the `{h,c}_0_...` input the op overwrites."""
    return {
        _state_name(f"{s}_n", k, d): _state_name(f"{s}_0", k, d)
        for k, d in _pairs(layer)
        for s in states
    }


def _cell_state_maxima(layer: LSTM, inputs: list[np.ndarray]) -> dict[str, float]:
    """max |c_t| over every step of `inputs` (zero initial states), per
    layer and direction, by `c_0_...` name, from the layer's float32 math."""

    def recurrence(x, h0, c0, weights, valid):
        del valid
        weight_hh_t, weight_hr_t = tf.transpose(weights.weight_hh), None
        if weights.weight_hr is not None:
            weight_hr_t = tf.transpose(weights.weight_hr)
        x_gates = project(x, weights)

        def one_step(carry, z):
            h, c, largest = carry
            h, c, _, _ = step(z, h, c, weight_hh_t, weight_hr_t)
            return h, c, tf.maximum(largest, tf.abs(c))

        hs, _, largest = tf.scan(one_step, x_gates, initializer=(h0, c0, c0))
        return hs, hs[-1], largest[-1]

    per_layer = [_float32_weights(layer, k) for k in range(layer.num_layers)]

    @tf.function(autograph=False, reduce_retracing=True)
    def maxima(x):
        result = []
        for weights in per_layer:
            batch = tf.shape(x)[1]
            d_count = weights.num_directions
            h0 = tf.zeros([d_count, batch, layer.output_size])
            c0 = tf.zeros([d_count, batch, layer.hidden_size])
            x, _, largest = directions(
                recurrence, x, h0, c0, weights.map(tf.constant), None
            )
            result.append(tf.reduce_max(largest, axis=[1, 2]))
        return tf.concat(result, 0)

    found = np.zeros(len(_pairs(layer)))
    for x in inputs:
        found = np.maximum(found, maxima(_time_major(layer, tf.constant(x))).numpy())
    return {
        _state_name("c_0", k, d): float(m)
        for (k, d), m in zip(_pairs(layer), found, strict=True)
    }


def _export_fused(
    layer: LSTM,
    batch_size: int,
    fixed_length: int | None,
    lengths: bool,
    quantize: str | None,
    calibration: list[np.ndarray],
) -> bytes:
    int8 = quantize == "int8"
    specs = _signature(layer, batch_size, fixed_length, lengths)
    serve, projections, exposed = _fused_graph(layer, specs, lengths, int8)
    flatbuffer = _convert(serve, quantize)
    if quantize == "dynamic":
        flatbuffer = _keep_heavy_fused_float(layer, flatbuffer, lengths)
    if not int8:
        return internals.patch(flatbuffer, projections, exposed)
    flatbuffer = internals.patch(flatbuffer, projections, {})
    feeds = []
    for x in calibration:
        steps = x.shape[1 if layer.batch_first else 0]
        feed = {"input": x}
        for spec in specs[1:]:
            feed[spec.name] = np.zeros(spec.shape, "float32")
        if lengths:
            feed["sequence_lengths"] = np.full(batch_size, steps, "int32")
        feeds.append(feed)
    return internals.quantize_int8(
        flatbuffer,
        feeds,
        _cell_state_maxima(layer, calibration),
        {} if lengths else exposed,
    )


def _keep_heavy_fused_float(layer: LSTM, flatbuffer: bytes, lengths: bool) -> bytes:
    """The hybrid fused graph with the ops whose gate matrices are
    heavy-tailed (`_heavy_matrices`) in float32."""
    heavy = _heavy_matrices(layer, per_row=False)
    ops = {}
    for k, d in _pairs(layer):
        suffix = f"_l{k}{'_reverse' if d else ''}"
        if not any(name.endswith(suffix) for name in heavy):
            continue
        w = _fused_weights(layer, k, d)
        kernel = w.kernel
        if lengths:  # the padding row that `_fused_graph` adds
            kernel, _ = _padding(kernel, layer.hidden_size)
        ops[_state_name("h_0", k, d)] = (kernel.T, w.recurrent_kernel.T)
    return internals.keep_fused_float(flatbuffer, ops) if ops else flatbuffer


def _keep_heavy_float(layer: LSTM | LSTMCell, flatbuffer: bytes) -> bytes:
    """A hybrid graph of FULLY_CONNECTED ops (per-row weight scales) with the
    heavy-tailed matrices (`_heavy_matrices`) in float32."""
    heavy = _heavy_matrices(layer, per_row=True)
    if not heavy:
        return flatbuffer
    matrices = [getattr(layer, name).numpy().astype("float32") for name in heavy]
    return internals.keep_float_matrices(flatbuffer, matrices)


# -- LSTMCell ----------------------------------------------------------------------


def _export_cell(cell: LSTMCell, batch_size: int, quantize: str | None) -> bytes:
    """One step, no loop: a handful of builtin ops (FULLY_CONNECTED, LOGISTIC,
    TANH, MUL, ADD), TensorFlow's float32 activations as in inference."""
    weights = cell.cell_weights(stack=np.stack).map(lambda w: w.astype("float32"))
    shape = [batch_size, cell.hidden_size]
    specs = [
        tf.TensorSpec([batch_size, cell.input_size], tf.float32, name="input"),
        tf.TensorSpec(shape, tf.float32, name="h_0"),
        tf.TensorSpec(shape, tf.float32, name="c_0"),
    ]

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, h_0, c_0):
        h, c = cell_step(input, h_0, c_0, weights.map(tf.constant))
        return {"h_1": h, "c_1": c}

    flatbuffer = _convert(serve, quantize)
    if quantize == "dynamic":
        flatbuffer = _keep_heavy_float(cell, flatbuffer)
    return flatbuffer


# -- the public functions ----------------------------------------------------------


def _calibration_inputs(
    layer: LSTM,
    data: Iterable[Any] | None,
    batch_size: int,
    fixed_length: int | None,
) -> list[np.ndarray]:
    """`representative_data` as float32 inputs of batch `batch_size` (each
    item split along its batch axis), all checked before any work."""
    if data is None:
        raise ValueError(
            "Expected `representative_data` (an iterable of inputs laid out as "
            "the layer's input) for quantize='int8', which calibrates the "
            "activations' ranges on it. Received: None"
        )
    if isinstance(data, np.ndarray) or not isinstance(data, Iterable):
        hint = " (one array: wrap it in a list)" if isinstance(data, np.ndarray) else ""
        raise TypeError(
            "Expected `representative_data` to be an iterable of input arrays "
            f"(e.g. a list). Received: an object of type {type(data).__name__}{hint}"
        )
    batch_axis = 0 if layer.batch_first else 1
    layout = "(N, L, H_in)" if layer.batch_first else "(L, N, H_in)"
    inputs = []
    for i, item in enumerate(data):
        x = np.asarray(item)
        problem = None
        if x.ndim != 3 or x.shape[-1] != layer.input_size:
            problem = f"a batched input {layout} with H_in={layer.input_size}"
        elif x.shape[batch_axis] % batch_size:
            problem = f"a batch size that is a multiple of batch_size={batch_size}"
        elif fixed_length is not None and x.shape[1 - batch_axis] != fixed_length:
            problem = f"a length of fixed_length={fixed_length}"
        elif x.shape[1 - batch_axis] < 1:
            problem = "a length of at least 1"
        elif not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            problem = "finite numbers"
        if problem:
            raise ValueError(
                f"Expected each item of `representative_data` to be {problem}. "
                f"Received: item {i} of shape {x.shape} and dtype {x.dtype}"
            )
        x = x.astype("float32")
        inputs += np.split(x, x.shape[batch_axis] // batch_size, axis=batch_axis)
    if not inputs:
        raise ValueError(
            "Expected at least one input in `representative_data`. Received: an "
            "empty iterable"
        )
    return inputs


def export_tflite(
    layer: LSTM | LSTMCell,
    path: str | os.PathLike | None = None,
    *,
    batch_size: int = 1,
    fixed_length: int | None = None,
    graph: str = "auto",
    sequence_lengths: bool = False,
    quantize: str | None = None,
    representative_data: Iterable[Any] | None = None,
    fused: bool | None = None,
) -> bytes:
    """Converts a `tflstm.LSTM` (or `LSTMCell`) to a `.tflite` model (see the
    module docstring for the graphs, quantization and accuracy).

    An `LSTMCell` becomes one step with inputs `input`, `h_0`, `c_0` and
    outputs `h_1`, `c_1`.

    Args:
        layer: The layer to export; every configuration is supported.
        path: Where to write the model; `None` only returns it.
        batch_size: The batch size N the model is built for. Defaults to 1.
            The fused graph can be resized to another batch at run time.
        fixed_length: `None` (default): the sequence length is dynamic
            (resize the input at run time; the unrolled graph is not
            available). An int L: the model takes exactly L steps (static
            shapes); shorter sequences are right-padded to L and passed with
            `sequence_lengths`.
        graph: `"auto"` (default: chosen by `choose_graph`), `"fused"`,
            `"unrolled"` (needs `fixed_length`) or `"loop"`.
        sequence_lengths: Whether the model takes an int32 input
            `sequence_lengths` of shape (N,): PyTorch's packed-sequence
            semantics for right-padded batches, as in `tflstm.LSTM`. The
            lengths must lie in [1, L]; the model does not check them.
            Defaults to False.
        quantize: `None` (default: float32), `"dynamic"` (int8 weights,
            float activations), `"int8"` (full integer with a 16-bit cell
            state; the fused graph) or `"float16"` (float16 weights, float32
            math: half the size, for models that 8 bits do not serve).
        representative_data: An iterable of inputs laid out as the layer's
            input, each of a batch that is a multiple of `batch_size`; a few
            batches of real data, zero initial states. With `quantize="int8"`
            (required): the activations' ranges are calibrated on it. With
            `"dynamic"` (optional): only the accuracy check (a
            `QuantizationWarning` where the cell state grows beyond
            `LONG_MEMORY_CELL_STATE`). Refused with `quantize=None`.
        fused: Kept for compatibility: `True` is `graph="fused"`, `False`
            `graph="loop"`. Defaults to None (use `graph`).

    Returns:
        The `.tflite` flatbuffer.

    Raises:
        ValueError: for an invalid argument or combination, before any work.

    Warns:
        QuantizationWarning: when the quantized model is predicted to miss
            `QUANTIZED_RTOL` (heavy-tailed weights under int8, a long memory
            on `representative_data`); the message says why and what to do.

    Example:

    >>> import tflstm
    >>> layer = tflstm.LSTM(4, 8, bidirectional=True)
    >>> windows = export_tflite(layer, batch_size=3, fixed_length=5)
    >>> "UNIDIRECTIONAL_SEQUENCE_LSTM" in tflite_ops(windows)  # unrolled
    False
    >>> x = np.zeros((5, 3, 4), "float32")
    >>> output, (h_n, c_n) = run_tflite(windows, layer.get_config(), x)
    >>> output.shape, h_n.shape
    ((5, 3, 16), (2, 3, 8))
    """
    if not isinstance(layer, (LSTM, LSTMCell)):
        raise TypeError(
            "Expected a tflstm.LSTM or tflstm.LSTMCell. Received: an object of "
            f"type {type(layer).__name__}"
        )
    _errors.check_int("batch_size", batch_size, minimum=1)
    if fixed_length is not None:
        _errors.check_int("fixed_length", fixed_length, minimum=1)
    _errors.check_choice("graph", graph, GRAPHS)
    if fused is not None:
        _errors.check_bool("fused", fused)
        if graph != "auto":
            raise ValueError(
                "Expected one of `graph` and `fused` (`fused` is the old "
                f"spelling of `graph`). Received: graph={graph!r}, fused={fused}"
            )
        graph = "fused" if fused else "loop"
    _errors.check_bool("sequence_lengths", sequence_lengths)
    _errors.check_choice("quantize", quantize, QUANTIZE_MODES)
    if representative_data is not None and quantize in (None, "float16"):
        raise ValueError(
            "Expected `representative_data` only with quantize='int8' or "
            "'dynamic' (float models need no calibration). Received: "
            f"quantize={quantize!r} and representative_data"
        )
    if isinstance(layer, LSTMCell):
        if (
            sequence_lengths
            or fixed_length is not None
            or quantize == "int8"
            or representative_data is not None
        ):
            raise ValueError(
                "Expected a tflstm.LSTM for `sequence_lengths=True`, "
                "`fixed_length`, quantize='int8' or `representative_data` (a "
                "cell runs one step, quantized with quantize='dynamic'). "
                f"Received: a tflstm.LSTMCell with sequence_lengths="
                f"{sequence_lengths}, fixed_length={fixed_length}, "
                f"quantize={quantize!r}, representative_data "
                f"{'given' if representative_data is not None else 'None'}"
            )
        flatbuffer = _export_cell(layer, batch_size, quantize)
    else:
        if graph == "auto":
            graph = choose_graph(
                batch_size=batch_size, fixed_length=fixed_length, quantize=quantize
            )
        if graph == "unrolled" and fixed_length is None:
            raise ValueError(
                "Expected `fixed_length` (the number of steps to unroll) for "
                "graph='unrolled'. Received: fixed_length=None"
            )
        if quantize == "int8" and graph != "fused":
            raise ValueError(
                "Expected graph='fused' (or 'auto') for quantize='int8': only "
                "TFLite's fused LSTM op keeps a 16-bit cell state (the other "
                "graphs' int8 cell state loses 2-18% of the output's scale). "
                f"Received: graph={graph!r}"
            )
        calibration = []
        if quantize == "int8" or representative_data is not None:
            calibration = _calibration_inputs(
                layer, representative_data, batch_size, fixed_length
            )
        for message in _predicted_misses(layer, quantize, calibration):
            warnings.warn(message, QuantizationWarning, stacklevel=2)
        if graph == "fused":
            flatbuffer = _export_fused(
                layer, batch_size, fixed_length, sequence_lengths, quantize, calibration
            )
        else:
            kernel = unrolled_forward if graph == "unrolled" else _kernels.loop_forward
            specs = _signature(layer, batch_size, fixed_length, sequence_lengths)
            serve = _kernel_graph(layer, kernel, specs, sequence_lengths)
            flatbuffer = _convert(serve, quantize)
            if quantize == "dynamic":
                flatbuffer = _keep_heavy_float(layer, flatbuffer)
    if path is not None:
        with open(path, "wb") as f:
            f.write(flatbuffer)
    return flatbuffer


def tflite_ops(flatbuffer: bytes, *, subgraphs: bool = False) -> list[str]:
    """The builtin (or custom: "CUSTOM:<name>") op names of the model's main
    graph, in order; with `subgraphs=True`, of every subgraph (loop bodies
    included)."""
    return internals.op_names(flatbuffer, None if subgraphs else 0)


def _check_shapes(runner, feed: dict[str, np.ndarray], batch_axes: dict) -> None:
    """A static dimension of a model input must match the fed array's
    (LiteRT would resize it and fail in an op, or compute garbage), except
    the batch axes in `batch_axes` (input name -> axis), which resize."""
    details = runner.get_input_details()
    for name, value in feed.items():
        expected = list(details[name].get("shape_signature", details[name]["shape"]))
        if name in batch_axes and len(expected) == value.ndim:
            expected[batch_axes[name]] = -1
        if len(expected) != value.ndim or any(
            e not in (-1, v) for e, v in zip(expected, value.shape, strict=True)
        ):
            shown = tuple(None if e == -1 else int(e) for e in expected)
            raise ValueError(
                f"Expected `{name}` of shape {shown} (None: any size), as the "
                f"model was exported. Received: shape {value.shape}"
            )


def _dequantized(runner, result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Integer outputs (an int8 model's int16 c_n) as float32."""
    details = runner.get_output_details()
    for name, value in result.items():
        if value.dtype != np.float32:
            scale, zero_point = details[name]["quantization"]
            result[name] = ((value.astype(np.float32) - zero_point) * scale).astype(
                np.float32
            )
    return result


def run_tflite(
    flatbuffer: bytes,
    layer_config: dict[str, Any],
    input: np.ndarray,
    hx: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    sequence_lengths: np.ndarray | None = None,
    num_threads: int = 2,
):
    """Runs an exported model in LiteRT with torch's conventions.

    Args:
        flatbuffer: What `export_tflite` returned.
        layer_config: The layer's `get_config()` (for the state layout).
        input: A batched input, laid out as the layer's.
        hx: `(h_0, c_0)` in torch's layout `(D*num_layers, N, H)`, or None.
        sequence_lengths: (N,) lengths, for a model exported with
            `sequence_lengths=True`.
        num_threads: LiteRT's threads. Defaults to 2.

    Returns:
        `(output, (h_n, c_n))` as float32 numpy arrays, in torch's layout
        (`c_n` is None for an int8 model with `sequence_lengths`);
        `(h_1, c_1)` for an exported `LSTMCell` (its `input` is `(N, H_in)`).

    Raises:
        ValueError: when an input does not fit the model's static shape (a
            model exported with `fixed_length`; the batch of the unrolled and
            loop graphs).
    """
    litert = require("ai_edge_litert.interpreter", extra="litert", purpose="run_tflite")
    # LiteRT's line about its CPU delegate, written when it first runs.
    with filtered_stderr(TFLITE_NOISE):
        return _run(
            litert.Interpreter(model_content=flatbuffer, num_threads=num_threads),
            flatbuffer,
            layer_config,
            input,
            hx,
            sequence_lengths,
        )


def _run(interpreter, flatbuffer, layer_config, input, hx, sequence_lengths):
    """`run_tflite` once the interpreter exists."""
    runner = interpreter.get_signature_runner("serving_default")
    if "num_layers" not in layer_config:  # an LSTMCell: one step
        zeros = np.zeros((len(input), layer_config["hidden_size"]), "float32")
        h_0, c_0 = hx if hx is not None else (zeros, zeros)
        feed = {"input": np.asarray(input, "float32"), "h_0": h_0, "c_0": c_0}
        feed = {k: np.asarray(v, "float32") for k, v in feed.items()}
        out = _dequantized(runner, runner(**feed))
        return out["h_1"], out["c_1"]
    d_count = 2 if layer_config["bidirectional"] else 1
    n_states = d_count * layer_config["num_layers"]
    batch = input.shape[0 if layer_config["batch_first"] else 1]
    out_size = layer_config["proj_size"] or layer_config["hidden_size"]
    if hx is None:
        hx = (
            np.zeros((n_states, batch, out_size), "float32"),
            np.zeros((n_states, batch, layer_config["hidden_size"]), "float32"),
        )
    feed = {"input": np.asarray(input, "float32")}
    if sequence_lengths is not None:
        feed["sequence_lengths"] = np.asarray(sequence_lengths, "int32")
    names = [divmod(s, d_count) for s in range(n_states)]
    for s, (k, d) in enumerate(names):
        feed[_state_name("h_0", k, d)] = np.asarray(hx[0][s], "float32")
        feed[_state_name("c_0", k, d)] = np.asarray(hx[1][s], "float32")
    if internals.LSTM_OP in tflite_ops(flatbuffer):  # its batch resizes
        batch_axes = {name: 0 for name in feed}
        batch_axes["input"] = 0 if layer_config["batch_first"] else 1
    else:
        batch_axes = {}
    _check_shapes(runner, feed, batch_axes)
    result = _dequantized(runner, runner(**feed))
    h_n = np.stack([result[_state_name("h_n", k, d)] for k, d in names])
    c_n = None
    if _state_name("c_n", 0, 0) in result:
        c_n = np.stack([result[_state_name("c_n", k, d)] for k, d in names])
    return result["output"], (h_n, c_n)
