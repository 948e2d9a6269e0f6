"""`cudnn`: cuDNN's RNN (`CudnnRNNV3`) in the cell's mode (`Cell.cudnn_mode`:
"lstm", "gru") on a GPU, with cuDNN's gradient."""

from __future__ import annotations

import tensorflow as tf

from tflstm._ops import Weights, dims, directions
from tflstm.cells import Cell

# cuDNN's gate order is PyTorch's for every cell; ROCm's MIOpen wants the
# LSTM's as (i, f, o, g), as Keras reorders them. Keras reorders no other
# cell's for ROCm, and neither does this (no ROCm build was at hand to check).
_MIOPEN_ORDER = {"lstm": (0, 1, 3, 2)}


def _is_rocm() -> bool:
    return bool(tf.sysconfig.get_build_info().get("is_rocm_build", False))


def cudnn_params(cell: Cell, weights: Weights, rocm: bool) -> tf.Tensor:
    """One direction's weights as cuDNN's opaque parameter buffer: the
    concatenation Keras uses, the G input then the G recurrent gate
    matrices, each (H, *) as torch stores them, then the G input and the G
    recurrent biases (`Cell.split_bias`: an LSTM's summed bias is the input
    bias and zeros the recurrent one; a GRU's are torch's two)."""
    gates = cell.spec.gates
    weights = weights.with_bias(cell)
    recurrent_bias = weights.recurrent_bias
    if recurrent_bias is None:
        recurrent_bias = tf.zeros_like(weights.bias)
    order = tuple(range(gates))
    if rocm:
        order = _MIOPEN_ORDER.get(cell.spec.kind, order)
    split = [
        tf.split(t, gates, 0)
        for t in (weights.weight_ih, weights.weight_hh, weights.bias, recurrent_bias)
    ]
    pieces = [part[i] for part in split for i in order]
    return tf.concat([tf.reshape(p, [-1]) for p in pieces], 0)


def cudnn(cell, x, state, weights, lengths, *, xla=False):
    """cuDNN's RNN (`CudnnRNNV3`), one call per direction, with cuDNN's own
    gradient (the kernel torch uses on GPU). GPU only, no projection. With
    `lengths`, cuDNN's own variable-length mode (padded outputs are 0)."""
    del xla  # GPU only, never chosen inside XLA
    steps, batch = dims(x)[:2]
    rocm = _is_rocm()
    lengths_or_full = tf.fill([batch], steps) if lengths is None else lengths

    def recurrence(x, state, weights, valid):
        # cuDNN takes a cell state in every mode; a GRU's is ignored (a
        # scalar, as Keras passes it).
        c0 = state[1][None] if len(state) > 1 else tf.zeros([], x.dtype)
        y, h, c, _, _ = tf.raw_ops.CudnnRNNV3(
            input=x,
            input_h=state[0][None],
            input_c=c0,
            params=cudnn_params(cell, weights, rocm),
            sequence_lengths=tf.cast(lengths_or_full, tf.int32),
            rnn_mode=cell.cudnn_mode,
            input_mode="linear_input",
            direction="unidirectional",
            is_training=True,
            time_major=True,
        )
        return y, (h[0], c[0]) if len(state) > 1 else (h[0],)

    return directions(recurrence, x, state, weights, lengths)
