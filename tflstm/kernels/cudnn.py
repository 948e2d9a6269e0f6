"""`cudnn`: cuDNN's LSTM (`CudnnRNNV3`) on a GPU, with cuDNN's gradient."""

from __future__ import annotations

import tensorflow as tf

from tflstm._ops import LSTMWeights, dims, directions

# cuDNN's gate order is PyTorch's (i, f, g, o); ROCm's MIOpen wants (i, f, o, g).
_MIOPEN_ORDER = (0, 1, 3, 2)


def _is_rocm() -> bool:
    return bool(tf.sysconfig.get_build_info().get("is_rocm_build", False))


def cudnn_params(weights: LSTMWeights, rocm: bool) -> tf.Tensor:
    """One direction's weights as cuDNN's opaque parameter buffer: the
    concatenation Keras uses, the 4 input then the 4 recurrent gate matrices,
    each (H, *) as torch stores them, then the 8 biases (the summed bias as
    the input bias, zeros as the recurrent one). cuDNN's gate order is
    PyTorch's (i, f, g, o); ROCm's MIOpen wants (i, f, o, g)."""
    hidden = dims(weights.weight_hh)[0] // 4
    dtype = weights.weight_ih.dtype
    bias = weights.with_bias().bias
    order = _MIOPEN_ORDER if rocm else range(4)
    w_ih, w_hh, b = (
        tf.split(t, 4, 0) for t in (weights.weight_ih, weights.weight_hh, bias)
    )
    pieces = [w_ih[i] for i in order] + [w_hh[i] for i in order]
    pieces += [b[i] for i in order] + [tf.zeros([hidden], dtype)] * 4
    return tf.concat([tf.reshape(p, [-1]) for p in pieces], 0)


def cudnn(x, h0, c0, weights, lengths, *, xla=False):
    """cuDNN's LSTM (`CudnnRNNV3`), one call per direction, with cuDNN's own
    gradient (the kernel torch uses on GPU). GPU only, no projection. With
    `lengths`, cuDNN's own variable-length mode (padded outputs are 0)."""
    del xla  # GPU only, never chosen inside XLA
    steps, batch = dims(x)[:2]
    rocm = _is_rocm()
    lengths_or_full = tf.fill([batch], steps) if lengths is None else lengths

    def recurrence(x, h0, c0, weights, valid):
        y, h, c, _, _ = tf.raw_ops.CudnnRNNV3(
            input=x,
            input_h=h0[None],
            input_c=c0[None],
            params=cudnn_params(weights, rocm),
            sequence_lengths=tf.cast(lengths_or_full, tf.int32),
            rnn_mode="lstm",
            input_mode="linear_input",
            direction="unidirectional",
            is_training=True,
            time_major=True,
        )
        return y, h[0], c[0]

    return directions(recurrence, x, h0, c0, weights, lengths)
