"""The kernels: the ways to run one LSTM layer (one or two directions) over a
whole sequence. `tflstm._policy.choose_kernel` picks one by name.

Every kernel has the same signature:

    kernel(x, h0, c0, weights, lengths) -> (output, h_n, c_n)

- x: time-major input (L, N, H_in).
- h0: (D, N, H_out); c0: (D, N, H).
- weights: `LSTMWeights` with the directions on a leading axis D.
- lengths: None, or int32 (N,) in [1, L] (PyTorch's packed sequences): the
  output is 0 past a sequence's length, h_n/c_n are those of its last valid
  step, and the backward direction starts there.
- output (L, N, D*H_out), forward then backward halves; h_n (D, N, H_out);
  c_n (D, N, H).

The kernels (forward; gradient):

- `loop`: a while loop, UNROLL steps per iteration, holding only the
  outputs; `bptt`'s gradient, recomputed.
- `bptt`: a while loop saving the gates;
  backpropagation through time written by hand, the weight gradients as
  blocked matmuls over all L*N steps (torch's float32 accuracy).
- `block`: TensorFlow's fused `BlockLSTMV2` op (no projection, no lengths);
  `bptt`'s gradient, recomputed (TensorFlow's registered gradient of
  BlockLSTMV2 is wrong by O(1) in TF 2.21).
- `loop_xla`: `loop` compiled by XLA (once per input shape); `bptt`'s
  gradient, recomputed (TensorLists cannot cross the XLA boundary).
- `bptt_xla`: `bptt` with both loops compiled by XLA.
- `portable`: `loop` with TensorFlow's autodiff gradient: plain TensorFlow
  ops only, what exports contain (SavedModel, Keras's `model.export`).
- `cudnn`: cuDNN's LSTM (`CudnnRNNV3`), GPU only, no projection; cuDNN's
  gradient.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from tflstm._litert_kernel import buffer_loop_forward
from tflstm._ops import (
    LSTMWeights,
    blocked_loop,
    dims,
    directions,
    inference_steps,
    keep_state,
    project,
    step,
    transposed,
    unstack_steps,
    window,
)

Kernel = Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]]


# -- loop ----------------------------------------------------------------------


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


# -- bptt ----------------------------------------------------------------------


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
    grads = [d_gates, d_h0, d_c0, _contract(d_gates, h_prev)]
    if projection:
        grads.append(_contract(outs[1], ms))
    return grads


# Steps (rows of L*N) per block of the weight-gradient contraction.
CONTRACT_BLOCK = 128


def _contract(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
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
def _compiled(fn: Callable) -> Callable:
    """`fn` traced for XLA and compiled by it, once per input shape."""
    return tf.function(
        functools.partial(fn, xla=True), jit_compile=True, autograph=False
    )


_bptt_forward_xla = _compiled(_bptt_forward)
_bptt_backward_xla = _compiled(_bptt_backward)


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
                _or_zeros(d_output, tape.output),
                _or_zeros(d_h_n, h0),
                _or_zeros(d_c_n, c0),
            )
            return backward(upstream, (h0, c0), weight_hh, weight_hr, valid, tape)

        return (tape.output, h_n, c_n), grad

    args = [project(x, weights), h0, c0, weights.weight_hh]
    return recurrence(*args, *([] if weight_hr is None else [weight_hr]))


def _or_zeros(upstream: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if upstream is None else upstream


def bptt(x, h0, c0, weights, lengths, *, xla=False):
    recurrence = functools.partial(_bptt_recurrence, xla=xla)
    return directions(recurrence, x, h0, c0, weights, lengths)


def bptt_xla(x, h0, c0, weights, lengths, *, xla=False):
    del xla  # compiled on its own either way
    recurrence = functools.partial(_bptt_recurrence, compiled=True)
    return directions(recurrence, x, h0, c0, weights, lengths)


# -- kernels with bptt's gradient -----------------------------------------------


def _with_bptt_gradient(forward: Kernel) -> Kernel:
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
                    _or_zeros(u, o) for u, o in zip(upstream, outputs, strict=True)
                ]
                return tape.gradient(outputs, args, output_gradients=upstream)

            return forward(x, h0, c0, unpack(tensors), lengths, xla=xla), grad

        return run(x, h0, c0, *(w for w in weights if w is not None))

    return kernel


loop = _with_bptt_gradient(loop_forward)


def _block_forward(x, h0, c0, weights, lengths, *, xla=False):
    """TensorFlow's fused LSTM kernel, `BlockLSTMV2`, one op per direction. It
    takes the gates in PyTorch's order (i, f, g, o) with `w = [weight_ih^T;
    weight_hh^T]` and one bias; it has no projection and no lengths."""
    del lengths, xla  # the policy never chooses it with lengths, nor in XLA

    def recurrence(x, h0, c0, weights, valid):
        w = tf.concat([transposed(weights.weight_ih), transposed(weights.weight_hh)], 0)
        gate_size = dims(weights.weight_ih)[0]
        bias = weights.with_bias().bias
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
        return hs, hs[-1], cs[-1]

    return directions(recurrence, x, h0, c0, weights, None)


block = _with_bptt_gradient(_block_forward)
_loop_forward_xla = _compiled(loop_forward)


def _loop_compiled(x, h0, c0, weights, lengths, *, xla=False):
    del xla  # compiled on its own either way
    return _loop_forward_xla(x, h0, c0, weights, lengths)


loop_xla = _with_bptt_gradient(_loop_compiled)


# -- cuDNN ---------------------------------------------------------------------

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


KERNELS: dict[str, Kernel] = {
    "loop": loop,
    "portable": loop_forward,
    # What Keras's `model.export(format="litert")` traces.
    "litert": buffer_loop_forward,
    "bptt": bptt,
    "block": block,
    "loop_xla": loop_xla,
    "bptt_xla": bptt_xla,
    "cudnn": cudnn,
}

# Eager calls go through one tf.function per kernel and structure (which
# weights are None, whether there are lengths, the dtype), so that layers of
# several configurations called one after another each reuse their own trace
# and never make TensorFlow warn about retracing; shapes are relaxed.
_EAGER: dict[tuple, Any] = {}


def run_kernel(
    name: str,
    x: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    weights: LSTMWeights,
    lengths: tf.Tensor | None,
    *,
    inline: bool = False,
    xla: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Runs the kernel `name`: its ops traced into the graph being built with
    `inline=True` (`_policy.inline`: exports and XLA; `xla`: that graph is an
    XLA computation, `KernelFacts.in_xla`), else through its cached
    tf.function, traced once per process for every size (eager calls, and
    graphs such as Keras's train and predict functions, which then hold one
    call op per layer instead of the loops)."""
    kernel = KERNELS[name]
    if inline:
        return kernel(x, h0, c0, weights, lengths, xla=xla)
    weights = weights.with_bias()  # one trace with and without a bias
    # TensorFlow counts traces per Python code object: a partial (which has
    # none) gives each cached function a count of its own.
    key = (
        name,
        weights.num_directions,
        tuple(w is None for w in weights),
        lengths is None,
        x.dtype,
    )
    fn = _EAGER.get(key)
    if fn is None:
        fn = tf.function(
            functools.partial(kernel), reduce_retracing=True, autograph=False
        )

        # Traced once, for every size: calls of any shape reuse this trace
        # (the weights keep their direction axis, which the kernels unroll).
        def relaxed(t, keep=0):
            if t is None:
                return None
            return tf.TensorSpec(
                [*t.shape[:keep], *[None] * (t.shape.rank - keep)], t.dtype
            )

        specs = (
            *(relaxed(t) for t in (x, h0, c0)),
            weights.map(lambda w: relaxed(w, keep=1)),
            relaxed(lengths),
        )
        fn.get_concrete_function(*specs)
        _EAGER[key] = fn
    return fn(x, h0, c0, weights, lengths)
