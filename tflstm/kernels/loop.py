"""The inference kernels: `loop`, a while loop holding only the outputs,
the input projected a block of steps at a time; `loop_xla`, the same
compiled by XLA; `loop_forward`, `loop` with TensorFlow's autodiff gradient
(the portable kernel of exports)."""

from __future__ import annotations

import functools

import tensorflow as tf

from tflstm._ops import (
    blocked_loop,
    dims,
    directions,
    inference_steps,
    project,
    transposed,
    unstack_steps,
    window,
)
from tflstm.kernels.bptt import compiled, with_bptt_gradient


def _loop_recurrence(x, h0, c0, weights, valid, *, xla=False):
    """Inference: stores only the outputs; the input is projected a block of
    steps at a time, so no (L, N, 4*H) tensor is held. `xla`: traced for XLA
    (which reads steps one index at a time, `tflstm._ops.window`)."""
    weight_hh_t = transposed(weights.weight_hh)
    weight_hr_t = transposed(weights.weight_hr)
    zeros = tf.zeros_like(h0)

    def body(t0, k, state):
        z = unstack_steps(project(window(x, t0, k, xla=xla), weights), 0, k, xla=xla)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k, xla=xla)
        h, c, outputs = inference_steps(
            z, masks, state, (weight_hh_t, weight_hr_t), zeros
        )
        return (h, c), [outputs]

    (h_n, c_n), (output,) = blocked_loop(dims(x)[0], body, (h0, c0), [h0])
    return output, h_n, c_n


def loop_forward(x, h0, c0, weights, lengths, *, xla=False):
    """`loop` with TensorFlow's own (autodiff) gradient: the `portable`
    kernel of exports, which then hold no custom gradient to serialise."""
    recurrence = functools.partial(_loop_recurrence, xla=xla)
    return directions(recurrence, x, h0, c0, weights, lengths)


loop = with_bptt_gradient(loop_forward)


_loop_forward_xla = compiled(loop_forward)


def _loop_compiled(x, h0, c0, weights, lengths, *, xla=False):
    del xla  # compiled on its own either way
    return _loop_forward_xla(x, h0, c0, weights, lengths)


loop_xla = with_bptt_gradient(_loop_compiled)
