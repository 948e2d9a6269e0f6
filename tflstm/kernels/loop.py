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
    unstack_steps,
    window,
)
from tflstm.kernels.bptt import compiled, with_bptt_gradient


def _loop_recurrence(cell, x, state, weights, valid, *, xla=False):
    """Inference: stores only the outputs; the input is projected a block of
    steps at a time, so no (L, N, G*H) tensor is held. `xla`: traced for XLA
    (which reads steps one index at a time, `tflstm._ops.window`)."""
    rec = weights.recurrent()
    zeros = tf.zeros_like(state[0])

    def body(t0, k, state):
        z = unstack_steps(project(window(x, t0, k, xla=xla), weights), 0, k, xla=xla)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k, xla=xla)
        state, outputs = inference_steps(cell, z, masks, state, rec, zeros)
        return state, [outputs]

    final, (output,) = blocked_loop(dims(x)[0], body, state, [state[0]])
    return output, final


def loop_forward(cell, x, state, weights, lengths, *, xla=False):
    """`loop` with TensorFlow's own (autodiff) gradient: the `portable`
    kernel of exports, which then hold no custom gradient to serialise."""
    recurrence = functools.partial(_loop_recurrence, cell, xla=xla)
    return directions(recurrence, x, state, weights, lengths)


loop = with_bptt_gradient(loop_forward)


_loop_forward_xla = compiled(loop_forward)


def _loop_compiled(cell, x, state, weights, lengths, *, xla=False):
    del xla  # compiled on its own either way
    return _loop_forward_xla(cell, x, state, weights, lengths)


loop_xla = with_bptt_gradient(_loop_compiled)
