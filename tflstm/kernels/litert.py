"""The kernels that target LiteRT (TFLite): builtin ops only.

Both have the kernel signature of `tflstm.kernels` (`kernel(x, h0, c0,
weights, lengths) -> (output, h_n, c_n)`) and run `tflstm._ops.step` and
`keep_state`, the one copy of the step and of the masking rule.

- `buffer_loop_forward`: what Keras's `model.export(format="litert")`
  traces (`KERNELS["litert"]`). A while loop, `CHUNK` steps per iteration,
  that writes each block of outputs into a preallocated (L, N, H_out)
  buffer (`tensor_scatter_nd_update`, TFLite's SCATTER_ND). No TensorList:
  the converter lowers TensorLists to builtins only when their element shape
  is static ("'tf.TensorListReserve' op requires element_shape to be
  static" with Keras's default dynamic batch, and the model then needs the
  Flex delegate), so this loop keeps the batch and the length dynamic
  with builtin ops only. Its time grows with the square of L: TFLite's
  WHILE copies every loop-carried and captured tensor (the buffer, the
  input) at each iteration; `CHUNK` steps per iteration divide that cost
  by `CHUNK` (benchmarks/tflite_latency.py, `keras_litert` rows; the fused
  op of `tflstm.tflite.export_tflite` is linear).
- `unrolled_forward`: `tflstm.tflite.export_tflite`'s graph for a fixed
  length and batch: one FULLY_CONNECTED for the input projection of all
  L*N rows, then L unrolled steps of FULLY_CONNECTED, LOGISTIC, TANH, MUL,
  ADD, all of which LiteRT's XNNPACK delegate runs (the fused LSTM op is
  not delegated, and its kernel loses to this graph from N = 2 on).
"""

from __future__ import annotations

import tensorflow as tf

from tflstm._ops import (
    LSTMWeights,
    dims,
    directions,
    inference_steps,
    project,
    transposed,
    unstack_steps,
    window,
)

# Steps per while-loop iteration: fewer iterations copy the loop's tensors
# fewer times, but up to CHUNK - 1 remaining steps run one at a time; 16 was
# the best balance over L = 100 to 3,000 (README, "Measurements behind the
# code").
CHUNK = 16


def _buffer_recurrence(x, h0, c0, weights: LSTMWeights, valid):
    """One direction over a dynamic (L, N): blocks of CHUNK steps, then the
    remaining L % CHUNK steps one at a time, each block written into the
    output buffer."""
    steps, batch = dims(x)[:2]
    weight_hh_t = transposed(weights.weight_hh)
    weight_hr_t = transposed(weights.weight_hr)
    zeros = tf.zeros_like(h0)

    def block(t0, k, h, c):
        z = unstack_steps(project(window(x, t0, k), weights), 0, k)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k)
        h, c, outputs = inference_steps(
            z, masks, (h, c), (weight_hh_t, weight_hr_t), zeros
        )
        return h, c, tf.stack(outputs)

    def run(count, k, first, h, c, buffer):
        def iteration(b, h, c, buffer):
            t0 = first + b * k
            h, c, outputs = block(t0, k, h, c)
            rows = (t0 + tf.range(k))[:, None]
            return b + 1, h, c, tf.tensor_scatter_nd_update(buffer, rows, outputs)

        _, h, c, buffer = tf.while_loop(
            lambda b, *_: b < count,
            iteration,
            (tf.constant(0), h, c, buffer),
            maximum_iterations=count,
        )
        return h, c, buffer

    buffer = tf.zeros(tf.stack([steps, batch, h0.shape[-1]]), h0.dtype)
    blocks = steps // CHUNK
    h, c, buffer = run(blocks, CHUNK, 0, h0, c0, buffer)
    h, c, buffer = run(steps - blocks * CHUNK, 1, blocks * CHUNK, h, c, buffer)
    return buffer, h, c


def buffer_loop_forward(x, h0, c0, weights, lengths, *, xla=False):
    """The builtin-only kernel for a dynamic batch and length (Keras's
    `model.export(format="litert")`); quadratic in L (see the module
    docstring)."""
    del xla  # an export: never inside XLA
    return directions(_buffer_recurrence, x, h0, c0, weights, lengths)


def _unrolled_recurrence(x, h0, c0, weights: LSTMWeights, valid):
    """One direction over a static (L, N), every step unrolled."""
    steps, batch = x.shape[:2]
    if steps is None or batch is None:
        raise ValueError(
            "Expected a static sequence length and batch size for the unrolled "
            f"graph. Received: an input of shape {x.shape}"
        )
    # x_gates of all steps as (L*N, 4H): step t is rows [tN, (t+1)N), a SLICE
    # that XNNPACK delegates (x_gates[t] of an (L, N, 4H) tensor is a
    # STRIDED_SLICE with shrink_axis, which it does not take).
    z = project(tf.reshape(x, [steps * batch, -1]), weights)
    weight_hh_t = transposed(weights.weight_hh)
    weight_hr_t = transposed(weights.weight_hr)
    masks = [None] * steps if valid is None else tf.unstack(valid, num=steps)
    z = [z[t * batch : (t + 1) * batch] for t in range(steps)]
    h, c, outputs = inference_steps(
        z, masks, (h0, c0), (weight_hh_t, weight_hr_t), tf.zeros_like(h0)
    )
    return tf.stack(outputs), h, c


def unrolled_forward(x, h0, c0, weights, lengths, *, xla=False):
    """The fixed-(L, N) unrolled graph (see the module docstring)."""
    del xla  # an export: never inside XLA
    return directions(_unrolled_recurrence, x, h0, c0, weights, lengths)
