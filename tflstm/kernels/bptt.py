"""The training kernel, `bptt`: a forward loop that saves the gates and
backpropagation through time written by hand, whose weight gradients are
blocked matmuls over all L*N steps (torch's float32 accuracy); `bptt_xla`, the
same with both loops compiled by XLA; and `with_bptt_gradient`, which gives
another kernel's forward this gradient."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from tflstm._ops import (
    LSTMWeights,
    blocked_loop,
    dims,
    directions,
    keep_state,
    project,
    step,
    transposed,
    unstack_steps,
)

Kernel = Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]]


class _Tape(NamedTuple):
    """What the training forward loop saves for the backward one: dense
    (L, N, ...) tensors, so that they can leave an XLA function."""

    output: tf.Tensor  # h_t (0 past a sequence's length)
    cs: tf.Tensor  # c_t
    acts: tf.Tensor  # the activated gates (i, f, g, o), concatenated
    ms: tf.Tensor | None  # o * tanh(c_t), which the projection maps to h_t


def _bptt_forward(x_gates, h0, c0, weight_hh, weight_hr, valid, *, xla=False):
    """The training forward loop: the final states and the `_Tape`."""
    weight_hh_t, weight_hr_t = transposed(weight_hh), transposed(weight_hr)
    zeros = tf.zeros_like(h0)

    def body(t0, k, state):
        h, c = state
        z = unstack_steps(x_gates, t0, k, xla=xla)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k, xla=xla)
        outputs, cells, acts, ms = [], [], [], []
        for j in range(k):
            h_new, c_new, gates, m = step(z[j], h, c, weight_hh_t, weight_hr_t)
            h = keep_state(masks[j], h_new, h)
            c = keep_state(masks[j], c_new, c)
            outputs.append(keep_state(masks[j], h_new, zeros))
            cells.append(c)
            acts.append(tf.concat(gates, -1))
            ms.append(m)
        saved = [outputs, cells, acts]
        return (h, c), saved + ([ms] if weight_hr is not None else [])

    like = [h0, c0, x_gates[0]] + ([c0] if weight_hr is not None else [])
    (h_n, c_n), saved = blocked_loop(dims(x_gates)[0], body, (h0, c0), like)
    return h_n, c_n, _Tape(*saved, *([] if weight_hr is not None else [None]))


def _bptt_backward(upstream, start, weight_hh, weight_hr, valid, tape, *, xla=False):
    """Backpropagation through time of `_bptt_forward` in one reverse loop;
    the weight gradients are blocked matmuls over all L*N steps after it.

    `upstream`: the gradients of (output, h_n, c_n); `start`: (h0, c0).
    Returns the gradients of x_gates, h0, c0, weight_hh (and weight_hr)."""
    d_output, d_h_n, d_c_n = upstream
    h0, c0 = start
    output, cs, acts, ms = tape
    # Every factor that does not depend on the running gradients, for all
    # steps at once (a few large elementwise ops): the loop is left with the
    # recurrence itself.
    i, f, g, o = tf.split(acts, 4, axis=-1)
    c_prev = tf.concat([c0[None], cs[:-1]], 0)
    tanh_c = tf.tanh(cs)
    # dz = [dc, dc, dc, dm] * gate_factors; dc += dm * o * (1 - tanh(c)^2)
    gate_factors = tf.concat(
        [g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)],
        -1,
    )
    state_factors = tf.concat([o * (1 - tanh_c * tanh_c), f], -1)
    projection = weight_hr is not None

    def body(t0, k, state):
        dh_next, dc_next = state
        factors = unstack_steps(gate_factors, t0, k, xla=xla)
        states = unstack_steps(state_factors, t0, k, xla=xla)
        upstream = unstack_steps(d_output, t0, k, xla=xla)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k, xla=xla)
        dzs, dhs = [None] * k, [None] * k
        for j in reversed(range(k)):
            dh = dh_next + upstream[j]
            dm = tf.matmul(dh, weight_hr) if projection else dh
            from_h, forget = tf.split(states[j], 2, axis=-1)
            dc = dc_next + dm * from_h
            dz = tf.concat([dc, dc, dc, dm], -1) * factors[j]
            # a padded step: the states' gradients pass, its gates get 0
            dzs[j] = keep_state(masks[j], dz, tf.zeros_like(dz))
            dhs[j] = keep_state(masks[j], dh, tf.zeros_like(dh))
            dh_next = keep_state(masks[j], tf.matmul(dz, weight_hh), dh_next)
            dc_next = keep_state(masks[j], dc * forget, dc_next)
        outs = [dzs] + ([dhs] if projection else [])
        return (dh_next, dc_next), outs

    like = [acts[0]] + ([h0] if projection else [])
    (d_h0, d_c0), outs = blocked_loop(
        dims(acts)[0], body, (d_h_n, d_c_n), like, reverse=True
    )
    d_gates = outs[0]
    h_prev = tf.concat([h0[None], output[:-1]], 0)
    grads = [d_gates, d_h0, d_c0, contract(d_gates, h_prev)]
    if projection:
        grads.append(contract(outs[1], ms))
    return grads


# Steps (rows of L*N) per block of the weight-gradient contraction.
CONTRACT_BLOCK = 128


def contract(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """sum over (l, n) of outer(a[l, n], b[l, n]), shape (A, B).

    One float32 matmul over all K = L*N rows accumulates its terms one after
    the other (error growing like K: 2x torch's on L = 1,000). Blocks of
    CONTRACT_BLOCK rows, one matmul each, added to a running total in a while
    loop, keep the error at torch's level (benchmarks/float32_errors.py; larger
    blocks came closer to the float32 bound). The loop never holds more than
    one (A, B) product, and is faster than one batched matmul over all blocks
    followed by their sum (README, "Measurements behind the code"). Each block
    is read with a scalar index, which XLA runs at the speed of a copy (see
    `tflstm._ops._xla_steps`).
    """
    a = tf.reshape(a, [-1, dims(a)[-1]])
    b = tf.reshape(b, [-1, dims(b)[-1]])
    rows = tf.shape(a)[0]
    pad = [[0, -rows % CONTRACT_BLOCK], [0, 0]]
    blocks_a, blocks_b = (
        tf.reshape(tf.pad(t, pad), [-1, CONTRACT_BLOCK, dims(t)[-1]]) for t in (a, b)
    )
    count = tf.shape(blocks_a)[0]

    def body(i, total):
        product = tf.matmul(blocks_a[i], blocks_b[i], transpose_a=True)
        return i + 1, total + product

    total = tf.zeros([dims(a)[1], dims(b)[1]], a.dtype)
    _, total = tf.while_loop(lambda i, _: i < count, body, (0, total))
    return total


# With XLA: each loop compiled (once per input shape). Dense tensors in and
# out, so no TensorList crosses the XLA boundary.
def compiled(fn: Callable) -> Callable:
    """`fn` traced for XLA and compiled by it, once per input shape."""
    return tf.function(
        functools.partial(fn, xla=True), jit_compile=True, autograph=False
    )


_bptt_forward_xla = compiled(_bptt_forward)


_bptt_backward_xla = compiled(_bptt_backward)


def _bptt_recurrence(x, h0, c0, weights, valid, *, xla=False, compiled=False):
    """The training path of one direction. The input projection of all steps
    is one matmul (autodiff gives its gradient); the recurrence has the
    hand-written gradient. `compiled`: both loops compiled by XLA on their
    own; `xla`: traced inside an XLA computation already."""
    forward = (
        _bptt_forward_xla if compiled else functools.partial(_bptt_forward, xla=xla)
    )
    backward = (
        _bptt_backward_xla if compiled else functools.partial(_bptt_backward, xla=xla)
    )
    weight_hr = weights.weight_hr

    @tf.custom_gradient
    def recurrence(x_gates, h0, c0, weight_hh, *maybe_weight_hr):
        h_n, c_n, tape = forward(x_gates, h0, c0, weight_hh, weight_hr, valid)

        # Closes over dense tensors only (no TensorArray handles), so that
        # SavedModel can serialise it with the forward function.
        def grad(d_output, d_h_n, d_c_n):
            upstream = (
                or_zeros(d_output, tape.output),
                or_zeros(d_h_n, h0),
                or_zeros(d_c_n, c0),
            )
            return backward(upstream, (h0, c0), weight_hh, weight_hr, valid, tape)

        return (tape.output, h_n, c_n), grad

    args = [project(x, weights), h0, c0, weights.weight_hh]
    return recurrence(*args, *([] if weight_hr is None else [weight_hr]))


def or_zeros(upstream: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if upstream is None else upstream


def bptt(x, h0, c0, weights, lengths, *, xla=False):
    recurrence = functools.partial(_bptt_recurrence, xla=xla)
    return directions(recurrence, x, h0, c0, weights, lengths)


def bptt_xla(x, h0, c0, weights, lengths, *, xla=False):
    del xla  # compiled on its own either way
    recurrence = functools.partial(_bptt_recurrence, compiled=True)
    return directions(recurrence, x, h0, c0, weights, lengths)


def with_bptt_gradient(forward: Kernel) -> Kernel:
    """`forward`'s outputs, with `bptt`'s gradient recomputed from the inputs
    when one is asked for. Besides giving kernels without a usable gradient
    one (XLA, BlockLSTMV2), this keeps TensorFlow from building the
    autodiff gradient of the inference loop, which is slow to trace and
    accumulates the weight gradients step by step (less accurate)."""

    def kernel(x, h0, c0, weights, lengths, *, xla=False):
        present = [w is not None for w in weights]

        def unpack(tensors):
            it = iter(tensors)
            return LSTMWeights(*(next(it) if p else None for p in present))

        @tf.custom_gradient
        def run(x, h0, c0, *tensors):
            def grad(*upstream):
                args = (x, h0, c0, *tensors)
                with tf.GradientTape() as tape:
                    tape.watch(args)
                    outputs = bptt(x, h0, c0, unpack(tensors), lengths, xla=xla)
                upstream = [
                    or_zeros(u, o) for u, o in zip(upstream, outputs, strict=True)
                ]
                return tape.gradient(outputs, args, output_gradients=upstream)

            return forward(x, h0, c0, unpack(tensors), lengths, xla=xla), grad

        return run(x, h0, c0, *(w for w in weights if w is not None))

    return kernel
