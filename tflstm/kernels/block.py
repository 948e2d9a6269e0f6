"""`block`: TensorFlow's fused `BlockLSTMV2` op (LSTM inference; no
projection, no lengths), with `bptt`'s gradient."""

from __future__ import annotations

import tensorflow as tf

from tflstm._ops import dims, directions, transposed
from tflstm.kernels.bptt import with_bptt_gradient


def _block_forward(cell, x, state, weights, lengths, *, xla=False):
    """TensorFlow's fused LSTM kernel, `BlockLSTMV2`, one op per direction. It
    takes the gates in PyTorch's order (i, f, g, o) with `w = [weight_ih^T;
    weight_hh^T]` and one bias; it has no projection and no lengths. The
    policy chooses it for an LSTM only (`policy.block_can_serve`)."""
    del lengths, xla  # the policy never chooses it with lengths, nor in XLA

    def recurrence(x, state, weights, valid):
        h0, c0 = state
        w = tf.concat([transposed(weights.weight_ih), transposed(weights.weight_hh)], 0)
        gate_size = dims(weights.weight_ih)[0]
        bias = weights.with_bias(cell).bias
        no_peephole = tf.zeros([gate_size // 4], x.dtype)
        _, cs, _, _, _, _, hs = tf.raw_ops.BlockLSTMV2(
            seq_len_max=tf.cast(tf.shape(x)[0], tf.int64),
            x=x,
            cs_prev=c0,
            h_prev=h0,
            w=w,
            wci=no_peephole,
            wcf=no_peephole,
            wco=no_peephole,
            b=bias,
            cell_clip=-1.0,  # no clipping, as torch
            use_peephole=False,
        )
        return hs, (hs[-1], cs[-1])

    return directions(recurrence, x, state, weights, None)


block = with_bptt_gradient(_block_forward)
