"""The graphs `export_tflite` builds (see `tflstm.tflite`): the fused op's
(`fused_graph`), and the kernels' (`kernel_graph`: the unrolled graph and the
loop), with their signature, and the conversion to a flatbuffer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from _tflstm.params import param_name as state_name  # h_0_l1_reverse, ...
from tflstm._ops import Weights, reverse_time, take, valid_steps
from tflstm._quiet import TFLITE_NOISE, filtered_stderr, without_info_logs
from tflstm._recurrent import RecurrentLayer
from tflstm.tflite import _internals as internals

GRAPHS = ("auto", "fused", "unrolled", "loop")


# The longest fixed length that `graph="auto"` unrolls (above it, conversion
# time and file size grow too much).
UNROLL_MAX_LENGTH = 256
# The fused ops that `graph="auto"` prefers to the unrolled graph at batch 1
# (benchmarks/tflite_latency.py and docs/guides/kernels.md, "Measurements behind
# the code"): the LSTM's. The RNN's op took about 5x its unrolled graph's
# time at batch 32; at batch 1 the unrolled graph was 1.5-5x faster in a
# one-process comparison (H = 128-512, L = 20-256) and the two were within
# each other's noise in `tflite_latency.py`'s streaming row.
FUSED_AT_BATCH_1 = ("UNIDIRECTIONAL_SEQUENCE_LSTM",)


def choose_graph(
    *,
    batch_size: int,
    fixed_length: int | None,
    quantize: str | None,
    fused: str = "UNIDIRECTIONAL_SEQUENCE_LSTM",
) -> str:
    """The graph `export_tflite(..., graph="auto")` builds (module docstring);
    `fused`: the cell's fused TFLite op (`Cell.tflite_fused_op`), or "" (a
    GRU has none). The unrolled graph for a fixed length it can unroll
    (except at batch 1 for the ops in `FUSED_AT_BATCH_1`), else the fused
    op, else the loop.

    >>> choose_graph(batch_size=32, fixed_length=100, quantize=None)
    'unrolled'
    >>> choose_graph(batch_size=1, fixed_length=50, quantize=None)
    'fused'
    >>> choose_graph(batch_size=1, fixed_length=None, quantize=None, fused="")
    'loop'
    """
    if quantize == "int8":
        return "fused"
    unrollable = fixed_length is not None and fixed_length <= UNROLL_MAX_LENGTH
    if unrollable and (batch_size >= 2 or fused not in FUSED_AT_BATCH_1):
        return "unrolled"
    return "fused" if fused else "loop"


def pairs(layer: RecurrentLayer) -> list[tuple[int, int]]:
    """The (layer, direction) pairs, in torch's state order."""
    return [
        (k, d) for k in range(layer.num_layers) for d in range(layer.num_directions)
    ]


def signature(
    layer: RecurrentLayer, batch_size: int, fixed_length: int | None, lengths: bool
) -> list[tf.TensorSpec]:
    """The specs of `input`, the states (`h_0_l0`, `c_0_l0`, ... per layer and
    direction, in torch's state order) and (with `lengths`)
    `sequence_lengths`."""
    in_shape = [batch_size, fixed_length, layer.input_size]
    if not layer.batch_first:
        in_shape = [fixed_length, batch_size, layer.input_size]
    specs = [tf.TensorSpec(in_shape, tf.float32, name="input")]
    states = layer.cell.spec.states
    for k, d in pairs(layer):
        for state, size in zip(states, layer.state_sizes, strict=True):
            name = state_name(f"{state}_0", k, d)
            specs.append(tf.TensorSpec([batch_size, size], tf.float32, name))
    if lengths:
        specs.append(tf.TensorSpec([batch_size], tf.int32, "sequence_lengths"))
    return specs


def float32_weights(layer: RecurrentLayer, k: int) -> Weights:
    return layer.layer_weights(k, stack=np.stack).map(lambda w: w.astype("float32"))


def valid_mask(x: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """(L, N, 1) float32: 1 where t < lengths[n], else 0."""
    return tf.cast(valid_steps(lengths, tf.shape(x)[0]), tf.float32)


def time_major(layer: RecurrentLayer, input: tf.Tensor) -> tf.Tensor:
    return tf.transpose(input, [1, 0, 2]) if layer.batch_first else input


def new_converter(serve: Any) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def convert(serve: Callable, quantize: str | None = None) -> bytes:
    converter = new_converter(serve)
    if quantize in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":  # float16 weights, DEQUANTIZE ops, float32 math
        converter.target_spec.supported_types = [tf.float16]
    # The converter's C++ log lines, and its Python INFO line.
    with filtered_stderr(TFLITE_NOISE), without_info_logs():
        return converter.convert()


def kernel_graph(
    layer: RecurrentLayer, kernel: Callable, specs: list, lengths: bool
) -> Callable:
    """The layer's computation with `kernel` (the kernel signature of
    `tflstm.kernels`) and the weights as constants (the converter would keep
    variables as uninitialised resources)."""
    d_count = layer.num_directions
    states = layer.cell.spec.states
    per_layer = [float32_weights(layer, k) for k in range(layer.num_layers)]

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, *hx):
        x = time_major(layer, input)
        seq_lengths = hx[-1] if lengths else None
        outputs = {}
        for k, weights in enumerate(per_layer):
            rows = range(k * d_count, (k + 1) * d_count)
            start = tuple(
                tf.stack([hx[len(states) * s + i] for s in rows])
                for i in range(len(states))
            )
            x, final = kernel(
                layer.cell, x, start, weights.map(tf.constant), seq_lengths
            )
            for state, value in zip(states, final, strict=True):
                for d in range(d_count):
                    outputs[state_name(f"{state}_n", k, d)] = take(value, d)
        outputs["output"] = time_major(layer, x)
        return outputs

    return serve


# Packed sequences in the fused op (which has no lengths input), float and
# dynamic range: one more input feature, nonzero on padded steps only, whose
# kernel row drives the input gate's pre-activation to <= -PAD and the
# forget gate's to >= +PAD. There sigmoid is exactly 0 and 1 in float32, so
# c_t = 1 * c_{t-1} + 0 * g_t: the cell state passes the padding unchanged
# (c_n is exact); on valid steps the feature is 0 (the numbers do not
# change). Each gate's row is its own largest |weight|, so that a quantized
# gate matrix keeps its scale, and the feature carries the magnitude.
PAD = 1e4


def padding(kernel: np.ndarray, hidden_size: int) -> tuple[np.ndarray, float]:
    """The kernel with its padding row, and the padding feature's value."""
    row = np.zeros((1, 4 * hidden_size), "float32")
    gate_max = [
        float(np.abs(kernel[:, g * hidden_size : (g + 1) * hidden_size]).max()) or 1.0
        for g in (0, 1)
    ]
    row[0, :hidden_size] = -gate_max[0]  # input gate: sigmoid -> 0
    row[0, hidden_size : 2 * hidden_size] = gate_max[1]  # forget gate: -> 1
    return np.concatenate([kernel, row]), PAD / min(gate_max)


def reverse(t: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
    """`reverse_time` (each sequence reversed within its length), with packed
    sequences as a GATHER_ND: TFLite's REVERSE_SEQUENCE has no int8 kernel."""
    if lengths is None:
        return reverse_time(t, None)
    steps = tf.shape(t)[0]
    time = tf.range(steps)[:, None]
    source = tf.where(time < lengths[None, :], lengths[None, :] - 1 - time, time)
    batch = tf.broadcast_to(tf.range(tf.shape(t)[1])[None, :], tf.shape(source))
    return tf.gather_nd(t, tf.stack([source, batch], -1))


class FusedWeights(NamedTuple):
    """One fused op's arguments (Keras's layout) and its projection."""

    kernel: np.ndarray  # weight_ih^T (H_in, 4*H)
    recurrent_kernel: np.ndarray  # weight_hh^T (H_out, 4*H)
    bias: np.ndarray  # bias_ih + bias_hh, or zeros (4*H,)
    weight_hr: np.ndarray | None  # (H_out, H)


def fused_weights(layer: RecurrentLayer, k: int, d: int) -> FusedWeights:
    """The LSTM composite's arguments. An RNN's fused op is converted as an
    LSTM whose gate i holds the RNN's weights and whose other gates are 0
    (`internals.as_rnn_ops` then keeps gate i's operands only)."""
    weights = float32_weights(layer, k).direction(d).with_bias(layer.cell)
    kernel, recurrent, bias = weights.weight_ih.T, weights.weight_hh.T, weights.bias
    if layer.cell.spec.gates == 1:

        def gate_i(a: np.ndarray) -> np.ndarray:
            zeros = np.zeros((*a.shape[:-1], 3 * a.shape[-1]), a.dtype)
            return np.concatenate([a, zeros], -1)

        kernel, recurrent, bias = gate_i(kernel), gate_i(recurrent), gate_i(bias)
    return FusedWeights(kernel.copy(), recurrent.copy(), bias.copy(), weights.weight_hr)


def fused_graph(
    layer: RecurrentLayer, specs: list, lengths: bool, int8: bool
) -> tuple[Any, dict[str, np.ndarray | None], dict[str, str]]:
    """The fused graph, each op's projection by its h_0 input's name, and the
    states that the patch exposes (output name -> state input name).

    The op leaves its final states in its state inputs: `c_n` is always that
    state; `h_n` too, except with packed sequences (the last valid step) and
    int8 (its states must not be model outputs while it is quantized, and
    its output must keep one use), where it is read from the output. An
    RNN's (one state, `h`) is always read from the output, and its op needs
    no padding feature: padded steps' outputs are zeroed, and `h_n` is the
    last valid step's.
    """
    d_count = layer.num_directions
    every_pair = pairs(layer)
    weights = {s: fused_weights(layer, *s) for s in every_pair}
    composites = {s: internals.fused_lstm() for s in every_pair}
    out_size = layer.output_size
    lstm = len(layer.cell.spec.states) == 2
    h_from_output = lengths or int8 or not lstm
    pad_cell_state = lengths and not int8 and lstm

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, *hx):
        x = time_major(layer, input)
        result = {}
        seq_lengths = hx[-1] if lengths else None
        if lengths:
            valid = valid_mask(x, seq_lengths)
            x = x * valid
            batch = tf.range(tf.shape(x)[1])  # LiteRT can resize the fused op's batch
            last = tf.stack([seq_lengths - 1, batch], axis=1)
        for k in range(layer.num_layers):
            outputs = []
            for d in range(d_count):
                w = weights[k, d]
                kernel, x_d = w.kernel, x
                if pad_cell_state:
                    kernel, feature = padding(kernel, layer.hidden_size)
                    x_d = tf.concat([x, (1.0 - valid) * feature], -1)
                x_d = reverse(x_d, seq_lengths) if d else x_d
                if lstm:
                    h_0, c_0 = hx[2 * (k * d_count + d)], hx[2 * (k * d_count + d) + 1]
                else:  # the carrier's cell state, dropped by as_rnn_ops
                    h_0 = hx[k * d_count + d]
                    c_0 = tf.zeros_like(h_0)
                _, y, _, _, _ = composites[k, d](
                    x_d,
                    h_0,
                    c_0,
                    tf.constant(kernel),
                    tf.constant(w.recurrent_kernel),
                    tf.constant(w.bias),
                )
                y = reverse(y, seq_lengths) if d else y
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
                result[state_name("h_n", k, d)] = h_n
        result["output"] = time_major(layer, x)
        return result

    projections = {
        state_name("h_0", k, d): weights[k, d].weight_hr for k, d in every_pair
    }
    states = () if not lstm else ("c",) if h_from_output else ("h", "c")
    return serve, projections, state_outputs(layer, states)


def state_outputs(layer: RecurrentLayer, states: tuple[str, ...]) -> dict[str, str]:
    """`{h,c}_n_...` output name -> the `{h,c}_0_...` input the op overwrites."""
    return {
        state_name(f"{s}_n", k, d): state_name(f"{s}_0", k, d)
        for k, d in pairs(layer)
        for s in states
    }
