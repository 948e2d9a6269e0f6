"""The kernels that target LiteRT (TFLite): builtin ops only.

Both have the kernel signature of `tflstm.kernels` (`kernel(cell, x,
state, weights, lengths) -> (output, state)`) and run the cell's step
through `tflstm._ops.inference_steps`, the one copy of the steps and of the
masking rule.

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

import functools

import tensorflow as tf

from tflstm._ops import (
    Weights,
    dims,
    directions,
    inference_steps,
    project,
    unstack_steps,
    window,
)

# Steps per while-loop iteration: fewer iterations copy the loop's tensors
# fewer times, but up to CHUNK - 1 remaining steps run one at a time; 16 was
# the best balance over L = 100 to 3,000 (docs/guides/kernels.md, "Measurements
# behind the code").
CHUNK = 16


def _buffer_recurrence(cell, x, state, weights: Weights, valid):
    """One direction over a dynamic (L, N): blocks of CHUNK steps, then the
    remaining L % CHUNK steps one at a time, each block written into the
    output buffer."""
    steps, batch = dims(x)[:2]
    rec = weights.recurrent()
    zeros = tf.zeros_like(state[0])

    def block(t0, k, state):
        z = unstack_steps(project(window(x, t0, k), weights), 0, k)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k)
        state, outputs = inference_steps(cell, z, masks, state, rec, zeros)
        return state, tf.stack(outputs)

    def run(count, k, first, state, buffer):
        def iteration(b, state, buffer):
            t0 = first + b * k
            state, outputs = block(t0, k, state)
            rows = (t0 + tf.range(k))[:, None]
            return b + 1, state, tf.tensor_scatter_nd_update(buffer, rows, outputs)

        _, state, buffer = tf.while_loop(
            lambda b, *_: b < count,
            iteration,
            (tf.constant(0), state, buffer),
            maximum_iterations=count,
        )
        return state, buffer

    h0 = state[0]
    buffer = tf.zeros(tf.stack([steps, batch, h0.shape[-1]]), h0.dtype)
    blocks = steps // CHUNK
    state, buffer = run(blocks, CHUNK, 0, state, buffer)
    state, buffer = run(steps - blocks * CHUNK, 1, blocks * CHUNK, state, buffer)
    return buffer, state


def buffer_loop_forward(cell, x, state, weights, lengths, *, xla=False):
    """The builtin-only kernel for a dynamic batch and length (Keras's
    `model.export(format="litert")`); quadratic in L (see the module
    docstring)."""
    del xla  # an export: never inside XLA
    recurrence = functools.partial(_buffer_recurrence, cell)
    return directions(recurrence, x, state, weights, lengths)


def _unrolled_recurrence(cell, x, state, weights: Weights, valid):
    """One direction over a static (L, N), every step unrolled."""
    steps, batch = x.shape[:2]
    if steps is None or batch is None:
        raise ValueError(
            "Expected a static sequence length and batch size for the unrolled "
            f"graph. Received: an input of shape {x.shape}"
        )
    # z of all steps as (L*N, G*H): step t is rows [tN, (t+1)N), a SLICE
    # that XNNPACK delegates (z[t] of an (L, N, G*H) tensor is a
    # STRIDED_SLICE with shrink_axis, which it does not take).
    z = project(tf.reshape(x, [steps * batch, -1]), weights)
    masks = [None] * steps if valid is None else tf.unstack(valid, num=steps)
    z = [z[t * batch : (t + 1) * batch] for t in range(steps)]
    state, outputs = inference_steps(
        cell, z, masks, state, weights.recurrent(), tf.zeros_like(state[0])
    )
    return tf.stack(outputs), state


def unrolled_forward(cell, x, state, weights, lengths, *, xla=False):
    """The fixed-(L, N) unrolled graph (see the module docstring)."""
    del xla  # an export: never inside XLA
    recurrence = functools.partial(_unrolled_recurrence, cell)
    return directions(recurrence, x, state, weights, lengths)
