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
    Weights,
    blocked_loop,
    dims,
    directions,
    keep_state,
    project,
    unstack_steps,
)
from tflstm.cells.base import Recurrent, State

Kernel = Callable[..., tuple[tf.Tensor, State]]


class Tape(NamedTuple):
    """What the training forward loop saves for the backward one: dense
    (L, N, ...) tensors, so that they can leave an XLA function."""

    output: tf.Tensor  # h_t (0 past a sequence's length)
    saved: tuple[tf.Tensor, ...]  # the cell's `saved` of every step


def _bptt_forward(cell, z, state, rec, valid, *, xla=False):
    """The training forward loop: the final state and the `Tape`."""
    zeros = tf.zeros_like(state[0])
    saved_like = cell.saved_like(z[0], state, rec)

    def body(t0, k, state):
        z_k = unstack_steps(z, t0, k, xla=xla)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k, xla=xla)
        outputs, saved = [], [[] for _ in saved_like]
        for j in range(k):
            new, output, step_saved = cell.train_step(z_k[j], state, rec)
            state = tuple(
                keep_state(masks[j], n, o) for n, o in zip(new, state, strict=True)
            )
            outputs.append(keep_state(masks[j], output, zeros))
            for column, value in zip(saved, step_saved, strict=True):
                column.append(value)
        return state, [outputs, *saved]

    final, (output, *saved) = blocked_loop(
        dims(z)[0], body, state, [state[0], *saved_like]
    )
    return final, Tape(output, tuple(saved))


class _Backward(NamedTuple):
    """What `_bptt_backward` needs besides the upstream gradients."""

    start: State  # the initial state
    weight_hh: tf.Tensor  # (G*H, H_out)
    rec: Recurrent
    valid: tf.Tensor | None  # (L, N, 1) bool, or None
    tape: Tape


def _bptt_backward(cell, d_output, d_final, args: _Backward, *, xla=False):
    """Backpropagation through time of `_bptt_forward` in one reverse loop;
    the weight gradients are blocked matmuls over all L*N steps after it.

    `d_output`, `d_final`: the gradients of the output and the final state.
    Returns the gradients of z, of the initial state (a tuple), of
    weight_hh, then of the recurrent bias and of the cell's own weights
    (`Cell.extra_contractions`) where present."""
    start, weight_hh, rec, valid, tape = args
    h_prev = tf.concat([start[0][None], tape.output[:-1]], 0)
    factors = cell.backward_factors(tape.saved, start, h_prev)
    extras_like = cell.extras_like(start, rec)
    apart = cell.recurrent_grad_apart  # else da is dz: one array for both

    def body(t0, k, d_state):
        factors_k = [unstack_steps(f, t0, k, xla=xla) for f in factors]
        upstream = unstack_steps(d_output, t0, k, xla=xla)
        masks = [None] * k if valid is None else unstack_steps(valid, t0, k, xla=xla)
        das = [None] * k
        extras = [[None] * k for _ in extras_like]
        dzs = [None] * k
        for j in reversed(range(k)):
            grad = cell.step_backward(
                tuple(f[j] for f in factors_k), d_state, upstream[j], rec
            )
            # a padded step: the state's gradient passes, its gates get 0
            dzs[j] = keep_state(masks[j], grad.dz, tf.zeros_like(grad.dz))
            if apart:
                das[j] = keep_state(masks[j], grad.da, tf.zeros_like(grad.da))
            for column, e in zip(extras, grad.extras, strict=True):
                column[j] = keep_state(masks[j], e, tf.zeros_like(e))
            d_h = tf.matmul(grad.da, weight_hh)
            if grad.d_state[0] is not None:
                d_h += grad.d_state[0]
            new = (d_h, *grad.d_state[1:])
            d_state = tuple(
                s if n is None else keep_state(masks[j], n, s)
                for n, s in zip(new, d_state, strict=True)
            )
        return d_state, [dzs, *([das] if apart else []), *extras]

    gates_like = tf.zeros([dims(start[0])[0], dims(weight_hh)[0]], weight_hh.dtype)
    like = [gates_like, *([gates_like] if apart else []), *extras_like]
    d_start, outs = blocked_loop(dims(d_output)[0], body, d_final, like, reverse=True)
    d_z, *outs = outs
    d_a = outs.pop(0) if apart else d_z
    extras = outs
    grads = [d_z, d_start, contract(d_a, h_prev)]
    if rec.bias is not None:
        grads.append(blocked_sum(d_a))
    grads += [contract(a, b) for a, b in cell.extra_contractions(tape.saved, extras)]
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
    followed by their sum (docs/guides/kernels.md, "Measurements behind the
    code"). Each block is read with a scalar index, which XLA runs at the
    speed of a copy (see `tflstm._ops._xla_steps`).
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


def blocked_sum(a: tf.Tensor) -> tf.Tensor:
    """sum over (l, n) of a[l, n], shape (A,): a bias's gradient, summed per
    block of CONTRACT_BLOCK rows, then over the blocks, as `contract` sums a
    weight's (a plain float32 sum over all L*N rows took a GRU's bias
    gradient past the float32 rule at L = 2,000). Two reductions, no loop."""
    rows = tf.reshape(a, [-1, dims(a)[-1]])
    pad = [[0, -tf.shape(rows)[0] % CONTRACT_BLOCK], [0, 0]]
    blocks = tf.reshape(tf.pad(rows, pad), [-1, CONTRACT_BLOCK, dims(a)[-1]])
    return tf.reduce_sum(tf.reduce_sum(blocks, 1), 0)


# With XLA: each loop compiled (once per input shape). Dense tensors in and
# out, so no TensorList crosses the XLA boundary.
def compiled(fn: Callable) -> Callable:
    """`fn` traced for XLA and compiled by it, once per input shape."""
    return tf.function(
        functools.partial(fn, xla=True), jit_compile=True, autograph=False
    )


_bptt_forward_xla = compiled(_bptt_forward)


_bptt_backward_xla = compiled(_bptt_backward)


def _projection(x: tf.Tensor, weight_ih: tf.Tensor) -> tf.Tensor:
    """`x @ weight_ih^T` for every step (`_ops.project`), one matmul, whose
    weight gradient is contracted in blocks (`contract`): as one matmul over
    all L*N rows, it took a relu RNN's `weight_ih_l1` gradient past the
    float32 rule at L = 2,000 (1.02x the bound)."""

    @tf.custom_gradient
    def projection(x, weight_ih):
        def grad(d_z):
            d_x = tf.reshape(
                tf.matmul(tf.reshape(d_z, [-1, dims(d_z)[-1]]), weight_ih), tf.shape(x)
            )
            return d_x, contract(d_z, x)

        return project(x, Weights(weight_ih, None)), grad

    return projection(x, weight_ih)


def _bptt_recurrence(cell, x, state, weights, valid, *, xla=False, compiled=False):
    """The training path of one direction. The input projection of all steps
    is one matmul (`_projection`: its weight gradient contracted in blocks);
    the recurrence has the hand-written gradient. `compiled`: both loops
    compiled by XLA on their own; `xla`: traced inside an XLA computation
    already."""
    forward = (
        _bptt_forward_xla if compiled else functools.partial(_bptt_forward, xla=xla)
    )
    backward = (
        _bptt_backward_xla if compiled else functools.partial(_bptt_backward, xla=xla)
    )
    # The weights the gradient is taken for, those present: the recurrent
    # ones, then the input-side bias (added here rather than in the
    # projection, so that its gradient is summed in blocks, `blocked_sum`).
    names = [
        n
        for n in ("weight_hh", "recurrent_bias", "weight_hr", "bias")
        if getattr(weights, n) is not None
    ]
    count = len(state)

    @tf.custom_gradient
    def recurrence(xw, *args):
        start, given = tuple(args[:count]), dict(zip(names, args[count:], strict=True))
        used = weights._replace(**given)
        rec = used.recurrent()
        z = xw if used.bias is None else xw + used.bias
        final, tape = forward(cell, z, start, rec, valid)

        # Closes over dense tensors only (no TensorArray handles), so that
        # SavedModel can serialise it with the forward function.
        def grad(d_output, *d_final):
            context = _Backward(start, used.weight_hh, rec, valid, tape)
            d_final = tuple(or_zeros(d, s) for d, s in zip(d_final, start, strict=True))
            d_z, d_start, *d_weights = backward(
                cell, or_zeros(d_output, tape.output), d_final, context
            )
            d_bias = [] if used.bias is None else [blocked_sum(d_z)]
            return [d_z, *d_start, *d_weights, *d_bias]

        return (tape.output, *final), grad

    output, *final = recurrence(
        _projection(x, weights.weight_ih),
        *state,
        *(getattr(weights, n) for n in names),
    )
    return output, tuple(final)


def or_zeros(upstream: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if upstream is None else upstream


def bptt(cell, x, state, weights, lengths, *, xla=False):
    recurrence = functools.partial(_bptt_recurrence, cell, xla=xla)
    return directions(recurrence, x, state, weights, lengths)


def bptt_xla(cell, x, state, weights, lengths, *, xla=False):
    del xla  # compiled on its own either way
    recurrence = functools.partial(_bptt_recurrence, cell, compiled=True)
    return directions(recurrence, x, state, weights, lengths)


def with_bptt_gradient(forward: Kernel) -> Kernel:
    """`forward`'s outputs, with `bptt`'s gradient recomputed from the inputs
    when one is asked for. Besides giving kernels without a usable gradient
    one (XLA, BlockLSTMV2), this keeps TensorFlow from building the
    autodiff gradient of the inference loop, which is slow to trace and
    accumulates the weight gradients step by step (less accurate)."""

    def kernel(cell, x, state, weights, lengths, *, xla=False):
        present = [w is not None for w in weights]
        count = len(state)

        def unpack(tensors):
            it = iter(tensors)
            return Weights(*(next(it) if p else None for p in present))

        @tf.custom_gradient
        def run(x, *args):
            start, tensors = tuple(args[:count]), args[count:]

            def grad(d_output, *d_final):
                inputs = (x, *args)
                with tf.GradientTape() as tape:
                    tape.watch(inputs)
                    output, final = bptt(
                        cell, x, start, unpack(tensors), lengths, xla=xla
                    )
                outputs = (output, *final)
                upstream = [
                    or_zeros(u, o)
                    for u, o in zip((d_output, *d_final), outputs, strict=True)
                ]
                return tape.gradient(outputs, inputs, output_gradients=upstream)

            output, final = forward(cell, x, start, unpack(tensors), lengths, xla=xla)
            return (output, *final), grad

        output, *final = run(x, *state, *(w for w in weights if w is not None))
        return output, tuple(final)

    return kernel
