"""The LSTM math as pure TensorFlow functions of tensors (no Keras state).

Conventions, as in `torch.nn.LSTM`: gates are stacked in the order
(input, forget, cell, output) along the last axis of size 4 * hidden_size, and
weights keep PyTorch's shapes (`weight_ih`: (4*H, H_in), `weight_hh`:
(4*H, H_out), `weight_hr`: (H_out, H)), so a matmul uses `transpose_b=True`.

Both directions of a bidirectional layer run in the same time loop: their
weights are stacked on a leading "direction" axis D and every matmul of the step
is one batched matmul. The backward direction sees its input already reversed in
time, so that the loop body has no direction-dependent indexing.
"""

from __future__ import annotations

import tensorflow as tf

# TensorFlow's float32 sigmoid and tanh are Eigen's fast approximations: up to
# 6 ulp off (mean 0.8 ulp) where torch's are within 2 ulp (mean 0.4). Over
# 1,000 steps that makes tflstm's float32 error 2.5 times torch's. Evaluating
# them one precision up and rounding once brings them within 0.5 ulp.
_WIDER = {tf.float32: tf.float64, tf.float16: tf.float32, tf.bfloat16: tf.float32}


def _widened(fn, x: tf.Tensor) -> tf.Tensor:
    wide = _WIDER.get(x.dtype)
    return fn(x) if wide is None else tf.cast(fn(tf.cast(x, wide)), x.dtype)


def _plain(fn, x: tf.Tensor) -> tf.Tensor:
    return fn(x)


def _gates(gates: tf.Tensor, act=_widened) -> tuple[tf.Tensor, ...]:
    """The activated gates (i, f, g, o) from their pre-activations (..., 4*H)."""
    i, f, g, o = tf.split(gates, 4, axis=-1)
    ifo = act(tf.sigmoid, tf.concat([i, f, o], -1))
    i, f, o = tf.split(ifo, 3, axis=-1)
    return i, f, act(tf.tanh, g), o


def _step(x_gates, h, c, weight_hh, weight_hr, act=_widened):
    i, f, g, o = _gates(x_gates + tf.matmul(h, weight_hh, transpose_b=True), act)
    c = f * c + i * g
    h = m = o * act(tf.tanh, c)
    if weight_hr is not None:
        h = tf.matmul(m, weight_hr, transpose_b=True)
    return h, c, (i, f, g, o), m


def lstm_step(
    x_gates: tf.Tensor,
    h: tf.Tensor,
    c: tf.Tensor,
    weight_hh: tf.Tensor,
    weight_hr: tf.Tensor | None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One LSTM step from the precomputed input part of the gates.

    Args:
        x_gates: `x @ weight_ih^T + bias_ih + bias_hh`, shape (..., N, 4*H).
        h: previous hidden state, shape (..., N, H_out).
        c: previous cell state, shape (..., N, H).
        weight_hh: shape (..., 4*H, H_out).
        weight_hr: projection, shape (..., H_out, H), or None.

    Returns:
        `(h_next, c_next)` with the shapes of `h` and `c`.
    """
    h, c, _, _ = _step(x_gates, h, c, weight_hh, weight_hr)
    return h, c


def _loop(steps: tf.Tensor, body, state: tuple, reverse: bool = False) -> tuple:
    """`state = body(t, *state)` for t in [0, steps) (or reversed): one op."""
    start, stop, step = (steps - 1, -1, -1) if reverse else (0, steps, 1)
    out = tf.while_loop(
        lambda t, *_: t != stop,
        lambda t, *s: (t + step, *body(t, *s)),
        (tf.convert_to_tensor(start), *state),
        maximum_iterations=steps,
    )
    return out[1:]


def _sequence(dtype: tf.DType, steps: tf.Tensor, like: tf.Tensor) -> tf.TensorArray:
    return tf.TensorArray(dtype, size=steps, element_shape=like.shape)


def _inference_recurrence(
    x_gates: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    weight_hh: tf.Tensor,
    weight_hr: tf.Tensor | None,
    mask: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`_recurrence` for inference: stores only the outputs, autodiff gradient,
    TensorFlow's own sigmoid and tanh.

    Every op has a TFLite builtin (no float64), so that Keras's
    `model.export(format="litert")` converts it (with a static batch: see
    `tflstm.tflite`). Its float32 error stays within twice torch's on
    L = 1,000 (measured 1.6x), and without the training path's bookkeeping
    it is faster.
    """
    steps = tf.shape(x_gates)[0]
    inputs = _sequence(x_gates.dtype, steps, x_gates[0]).unstack(x_gates)
    # Transposed once, not at every step.
    weight_hh_t = tf.linalg.matrix_transpose(weight_hh)
    weight_hr_t = None if weight_hr is None else tf.linalg.matrix_transpose(weight_hr)

    def step(t, h, c, hs):
        z = inputs.read(t) + tf.matmul(h, weight_hh_t)
        i, f, g, o = tf.split(z, 4, axis=-1)
        c_new = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h_new = tf.sigmoid(o) * tf.tanh(c_new)
        if weight_hr_t is not None:
            h_new = tf.matmul(h_new, weight_hr_t)
        if mask is None:
            return h_new, c_new, hs.write(t, h_new)
        valid = mask[t]
        return (
            tf.where(valid, h_new, h),
            tf.where(valid, c_new, c),
            hs.write(t, tf.where(valid, h_new, tf.zeros_like(h_new))),
        )

    h_n, c_n, hs = _loop(steps, step, (h0, c0, _sequence(h0.dtype, steps, h0)))
    return hs.stack(), h_n, c_n


def _recurrence(
    x_gates: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    weight_hh: tf.Tensor,
    weight_hr: tf.Tensor | None,
    mask: tf.Tensor | None = None,
    jit_compile: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The training path: `lstm_step` over the leading time axis of `x_gates`
    in one loop op, activations one precision up, gradient written by hand.

    Shapes: x_gates (L, D, N, 4*H), h0 (D, N, H_out), c0 (D, N, H), mask
    (L, 1, N, 1) bool or None. Returns the stacked hidden states
    (L, D, N, H_out) and the final (h, c).

    With a mask (packed sequences), a step where it is False keeps the
    states, outputs 0 and, in the gradient, passes the state gradients
    through unchanged and gives 0 to its gates.

    The gradient is written by hand (backpropagation through time in one
    reverse loop) so that the weight gradients are one matmul over all L*N
    steps after the loop, as torch and cuDNN compute them, rather than L
    float32 additions in sequence: on L = 1,000 the latter is 2-4 times less
    accurate than torch.
    """

    @tf.custom_gradient
    def grad_fn(*args):
        return _recurrence_grad(jit_compile, mask, *args)

    if weight_hr is None:
        return grad_fn(x_gates, h0, c0, weight_hh)
    return grad_fn(x_gates, h0, c0, weight_hh, weight_hr)


def _train_forward(x_gates, h0, c0, weight_hh, weight_hr, mask):
    """The training path's forward loop: outputs and what the gradient needs,
    all dense (L, D, N, ...) tensors."""
    dtype = x_gates.dtype
    steps = tf.shape(x_gates)[0]
    inputs = _sequence(dtype, steps, x_gates[0]).unstack(x_gates)

    def step(t, h, c, hs, cs, acts, ms):
        h_new, c_new, gates, m = _step(inputs.read(t), h, c, weight_hh, weight_hr)
        if weight_hr is not None:
            ms = ms.write(t, m)
        acts = acts.write(t, tf.concat(gates, -1))
        if mask is None:
            h, c, y = h_new, c_new, h_new
        else:  # past its length, a sequence keeps its state and outputs 0
            valid = mask[t]
            h, c = tf.where(valid, h_new, h), tf.where(valid, c_new, c)
            y = tf.where(valid, h_new, tf.zeros_like(h_new))
        return h, c, hs.write(t, y), cs.write(t, c), acts, ms

    h_n, c_n, hs, cs, acts, ms = _loop(
        steps,
        step,
        (
            h0,
            c0,
            _sequence(dtype, steps, h0),
            _sequence(dtype, steps, c0),
            _sequence(dtype, steps, x_gates[0]),
            _sequence(dtype, steps, c0),
        ),
    )
    ms_stacked = ms.stack() if weight_hr is not None else tf.zeros([0], dtype)
    return hs.stack(), h_n, c_n, cs.stack(), acts.stack(), ms_stacked


def _train_backward(
    d_hs, d_h_n, d_c_n, h0, c0, weight_hh, weight_hr, mask, hs, cs, acts, ms
):
    """Backpropagation through time of `_train_forward`, in one reverse loop;
    the weight gradients are blocked matmuls over all L*N steps after it."""
    dtype = hs.dtype
    steps = tf.shape(hs)[0]
    # Every factor that does not depend on the running gradients, for all
    # steps at once (a few large elementwise ops): the loop is left with the
    # recurrence itself.
    i, f, g, o = tf.split(acts, 4, axis=-1)
    c_prev = tf.concat([c0[None], cs[:-1]], 0)
    tanh_c = _widened(tf.tanh, cs)
    # dz = [dc, dc, dc, dm] * gate_factors; dc += dm * o * (1 - tanh(c)^2)
    gate_factors = _sequence(dtype, steps, acts[0]).unstack(
        tf.concat(
            [
                g * i * (1 - i),
                c_prev * f * (1 - f),
                i * (1 - g * g),
                tanh_c * o * (1 - o),
            ],
            -1,
        )
    )
    state_factors = _sequence(dtype, steps, tf.concat([c0, c0], -1)).unstack(
        tf.concat([o * (1 - tanh_c * tanh_c), f], -1)
    )
    d_hs = _sequence(dtype, steps, h0).unstack(d_hs)

    def back(t, dh_next, dc_next, d_gates, d_hs_total):
        dh = dh_next + d_hs.read(t)
        dm = tf.matmul(dh, weight_hr) if weight_hr is not None else dh
        from_h, forget = tf.split(state_factors.read(t), 2, axis=-1)
        dc = dc_next + dm * from_h
        dz = tf.concat([dc, dc, dc, dm], -1) * gate_factors.read(t)
        dh_out = dh
        dh, dc = tf.matmul(dz, weight_hh), dc * forget
        if mask is not None:  # a padded step: states pass, gates get 0
            valid = mask[t]
            dz = tf.where(valid, dz, tf.zeros_like(dz))
            dh = tf.where(valid, dh, dh_next)
            dc = tf.where(valid, dc, dc_next)
            dh_out = tf.where(valid, dh_out, tf.zeros_like(dh_out))
        if weight_hr is not None:  # for the gradient of weight_hr
            d_hs_total = d_hs_total.write(t, dh_out)
        return dh, dc, d_gates.write(t, dz), d_hs_total

    d_h0, d_c0, d_gates, d_hs_total = _loop(
        steps,
        back,
        (
            d_h_n,
            d_c_n,
            _sequence(dtype, steps, acts[0]),
            _sequence(dtype, steps, h0),
        ),
        reverse=True,
    )
    d_gates = d_gates.stack()  # (L, D, N, 4H)
    h_prev = tf.concat([h0[None], hs[:-1]], 0)
    # Weight gradients: one matmul each, contracting over all L*N steps.
    grads = [d_gates, d_h0, d_c0, _contract(d_gates, h_prev)]
    if weight_hr is not None:
        grads.append(_contract(d_hs_total.stack(), ms))
    return grads


# With jit_compile: each loop compiled by XLA (once per input shape). Dense
# tensors in and out, so no TensorList crosses the XLA boundary.
_train_forward_xla = tf.function(_train_forward, jit_compile=True, autograph=False)
_train_backward_xla = tf.function(_train_backward, jit_compile=True, autograph=False)


def _recurrence_grad(jit_compile, mask, x_gates, h0, c0, weight_hh, *maybe_weight_hr):
    weight_hr = maybe_weight_hr[0] if maybe_weight_hr else None
    fwd = _train_forward_xla if jit_compile else _train_forward
    bwd = _train_backward_xla if jit_compile else _train_backward
    hs, h_n, c_n, cs, acts, ms = fwd(x_gates, h0, c0, weight_hh, weight_hr, mask)
    # The gradient closes over dense tensors only (no TensorArray handles), so
    # that SavedModel can serialise it along with the forward function.

    def grad(d_hs, d_h_n, d_c_n):
        return bwd(
            _or_zeros(d_hs, hs),
            _or_zeros(d_h_n, h0),
            _or_zeros(d_c_n, c0),
            h0,
            c0,
            weight_hh,
            weight_hr,
            mask,
            hs,
            cs,
            acts,
            ms if weight_hr is not None else None,
        )

    return (hs, h_n, c_n), grad


def _or_zeros(upstream: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    return tf.zeros_like(like) if upstream is None else upstream


def _contract(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """sum over (l, n) of outer(a[l, d, n], b[l, d, n]), shape (D, A, B).

    A float32 matmul here accumulates its K = L*N terms one after the other
    (error growing like K). Splitting K into about sqrt(K) blocks, one batched
    matmul for all blocks, then a sum over the blocks, makes the error grow
    like sqrt(K): on L = 1,000 this is what keeps the weight gradients within
    torch's own float32 error.
    """
    num_directions = tf.shape(a)[1]
    a = tf.reshape(tf.transpose(a, [1, 0, 2, 3]), [num_directions, -1, tf.shape(a)[-1]])
    b = tf.reshape(tf.transpose(b, [1, 0, 2, 3]), [num_directions, -1, tf.shape(b)[-1]])
    k = tf.shape(a)[1]
    block = tf.cast(tf.math.ceil(tf.sqrt(tf.cast(k, tf.float32))), tf.int32)
    pad = [[0, 0], [0, -k % block], [0, 0]]

    def blocks(t):
        t = tf.pad(t, pad)
        return tf.reshape(t, [num_directions, -1, block, tf.shape(t)[-1]])

    return tf.reduce_sum(tf.matmul(blocks(a), blocks(b), transpose_a=True), axis=1)


def _dims(t: tf.Tensor) -> list:
    """Each dimension of `t`: a Python int when static, else a scalar tensor."""
    dynamic = tf.shape(t)
    return [d if d is not None else dynamic[i] for i, d in enumerate(t.shape)]


def _lstm_layer(
    x: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    weight_ih: tf.Tensor,
    weight_hh: tf.Tensor,
    bias: tf.Tensor | None,
    weight_hr: tf.Tensor | None,
    bidirectional: bool,
    training: bool = True,
    lengths: tf.Tensor | None = None,
    jit_compile: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    # Static sizes where the trace knows them, else read at run time (the
    # eager trace is shared by every layer size).
    steps, batch = _dims(x)[:2]
    mask = None
    if lengths is None:

        def reverse(t):
            return tf.reverse(t, [0])

    else:  # packed sequences: (L, 1, N, 1), True at t < lengths[n]
        mask = tf.transpose(tf.sequence_mask(lengths, steps))[:, None, :, None]

        def reverse(t):  # each sequence's own valid steps, padding stays put
            return tf.reverse_sequence(t, lengths, seq_axis=0, batch_axis=1)

    num_directions = 2 if bidirectional else 1
    gate_size, input_size = _dims(weight_ih)[1:]

    # Input projections of all time steps and both directions: one matmul.
    x_gates = tf.matmul(
        tf.reshape(x, [-1, input_size]),
        tf.reshape(weight_ih, [-1, input_size]),
        transpose_b=True,
    )
    if bias is not None:
        x_gates += tf.reshape(bias, [-1])
    x_gates = tf.reshape(x_gates, [steps, batch, num_directions, gate_size])
    x_gates = tf.transpose(x_gates, [0, 2, 1, 3])  # (L, D, N, 4H)
    if bidirectional:
        x_gates = tf.stack([x_gates[:, 0], reverse(x_gates[:, 1])], axis=1)

    # One loop per direction (independent ops, so they run in parallel).
    per_direction = []
    for d in range(num_directions):
        w_hr = None if weight_hr is None else weight_hr[d : d + 1]
        if training:
            parts = _recurrence(
                x_gates[:, d : d + 1],
                h0[d : d + 1],
                c0[d : d + 1],
                weight_hh[d : d + 1],
                w_hr,
                mask,
                jit_compile,
            )
        else:  # 2-D matmuls: faster than a batch of one
            parts = _inference_recurrence(
                x_gates[:, d],
                h0[d],
                c0[d],
                weight_hh[d],
                None if w_hr is None else w_hr[0],
                None if mask is None else mask[:, 0],
            )
            parts = (parts[0][:, None], parts[1][None], parts[2][None])
        per_direction.append(parts)
    ys, h_n, c_n = (
        tf.concat(parts, axis=a)
        for parts, a in zip(zip(*per_direction, strict=True), (1, 0, 0), strict=True)
    )

    if bidirectional:
        ys = tf.stack([ys[:, 0], reverse(ys[:, 1])], axis=1)
    ys = tf.transpose(ys, [0, 2, 1, 3])  # (L, N, D, H_out)
    ys = tf.reshape(ys, [steps, batch, -1])
    return ys, h_n, c_n


def _with_loop_gradient(
    fast, x, h0, c0, weight_ih, weight_hh, bias, weight_hr, bidirectional, lengths
):
    """`fast(...)`'s outputs, with the gradient of the inference loop,
    recomputed from the inputs when asked for.

    For the inference kernels whose own gradient is missing or wrong: XLA
    (TensorLists cannot cross its boundary) and `BlockLSTMV2` (TensorFlow's
    registered gradient is off by order 1 in TF 2.21).
    """
    present = [w is not None for w in (bias, weight_hr)]
    args = [x, h0, c0, weight_ih, weight_hh] + [
        w for w in (bias, weight_hr) if w is not None
    ]

    def unpack(args):
        extra = iter(args[5:])
        return (*args[:5], *(next(extra) if p else None for p in present))

    @tf.custom_gradient
    def run(*args):
        def grad(*upstream):
            with tf.GradientTape() as tape:
                tape.watch(args)
                outputs = _lstm_layer(*unpack(args), bidirectional, False, lengths)
            upstream = [_or_zeros(u, o) for u, o in zip(upstream, outputs, strict=True)]
            return tape.gradient(outputs, args, output_gradients=upstream)

        return fast(*unpack(args), bidirectional, lengths), grad

    return run(*args)


def _xla_forward(
    x, h0, c0, weight_ih, weight_hh, bias, weight_hr, bidirectional, lengths
):
    return _lstm_layer_xla(
        x, h0, c0, weight_ih, weight_hh, bias, weight_hr, bidirectional, False, lengths
    )


def _block_forward_all(
    x, h0, c0, weight_ih, weight_hh, bias, weight_hr, bidirectional, lengths
):
    return _block_forward(x, h0, c0, weight_ih, weight_hh, bias, bidirectional)


def _cudnn_forward(x, h0, c0, weight_ih, weight_hh, bias, bidirectional, lengths):
    """Both paths on a GPU: cuDNN's LSTM (`CudnnRNNV3`), one call per
    direction, with cuDNN's own gradient (the kernel torch uses on GPU).

    The opaque parameter buffer is the concatenation Keras 2 used for its
    cuDNN LSTM: the 4 input then the 4 recurrent gate matrices, each (H, *)
    as torch stores them, in the gate order (i, f, g, o), then the 8 biases
    (the summed bias as the input bias, zeros as the recurrent one). With
    `lengths`, cuDNN's own variable-length mode (padded outputs are 0).
    """
    num_directions = 2 if bidirectional else 1
    steps, batch = _dims(x)[:2]
    hidden = tf.shape(weight_hh)[1] // 4
    if lengths is None:
        lengths = tf.fill([batch], steps)

        def reverse(t):
            return tf.reverse(t, [0])

    else:

        def reverse(t):
            return tf.reverse_sequence(t, lengths, seq_axis=0, batch_axis=1)

    ys, h_n, c_n = [], [], []
    for d in range(num_directions):
        b = bias[d] if bias is not None else tf.zeros([4 * hidden], x.dtype)
        pieces = tf.split(weight_ih[d], 4, 0) + tf.split(weight_hh[d], 4, 0)
        pieces += tf.split(b, 4) + [tf.zeros([hidden], x.dtype)] * 4
        params = tf.concat([tf.reshape(p, [-1]) for p in pieces], 0)
        y, h, c, _, _ = tf.raw_ops.CudnnRNNV3(
            input=reverse(x) if d else x,
            input_h=h0[d : d + 1],
            input_c=c0[d : d + 1],
            params=params,
            sequence_lengths=tf.cast(lengths, tf.int32),
            rnn_mode="lstm",
            input_mode="linear_input",
            direction="unidirectional",
            is_training=True,
            time_major=True,
        )
        ys.append(reverse(y) if d else y)
        h_n.append(h)
        c_n.append(c)
    return tf.concat(ys, -1), tf.concat(h_n, 0), tf.concat(c_n, 0)


def _gpu_visible() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


def _block_forward(x, h0, c0, weight_ih, weight_hh, bias, bidirectional):
    """Inference on TensorFlow's fused LSTM kernel, `BlockLSTMV2` (CPU and
    GPU): one op per direction for the whole sequence, TensorFlow's float32
    activations (as the inference loop). It takes the gates in PyTorch's
    order (i, f, g, o) with `w = [weight_ih^T; weight_hh^T]` and one bias;
    it has no projection and no per-sequence lengths, so those run the loop.
    """
    num_directions = 2 if bidirectional else 1
    steps = tf.cast(tf.shape(x)[0], tf.int64)
    gate_size = tf.shape(weight_ih)[1]
    no_peephole = tf.zeros([gate_size // 4], x.dtype)
    ys, h_n, c_n = [], [], []
    for d in range(num_directions):
        w = tf.concat([tf.transpose(weight_ih[d]), tf.transpose(weight_hh[d])], 0)
        b = bias[d] if bias is not None else tf.zeros([gate_size], x.dtype)
        _, cs, _, _, _, _, hs = tf.raw_ops.BlockLSTMV2(
            seq_len_max=steps,
            x=tf.reverse(x, [0]) if d else x,
            cs_prev=c0[d],
            h_prev=h0[d],
            w=w,
            wci=no_peephole,
            wcf=no_peephole,
            wco=no_peephole,
            b=b,
            cell_clip=-1.0,  # no clipping, as torch
            use_peephole=False,
        )
        ys.append(tf.reverse(hs, [0]) if d else hs)
        h_n.append(hs[-1])
        c_n.append(cs[-1])
    return tf.concat(ys, -1), tf.stack(h_n), tf.stack(c_n)


# BlockLSTMV2 computes [x, h] @ w at every step; the loop's one input matmul
# for all steps wins from hidden_size 512 on (benchmarks/results.md: L=200,
# N=64, H=512: loop 803 ms, BlockLSTMV2 989 ms; H<=256: BlockLSTMV2 15-35%
# faster than the loop).
_BLOCK_MAX_HIDDEN = 256


def _block_applies(x, weight_ih, weight_hr, lengths) -> bool:
    hidden = weight_ih.shape[1]
    return (
        weight_hr is None
        and lengths is None
        and x.dtype in (tf.float32, tf.float16)
        and hidden is not None
        and hidden // 4 <= _BLOCK_MAX_HIDDEN
    )


# Eager calls go through one tf.function (a graph op for the whole sequence;
# weights are arguments, so layers of the same shapes share a trace). Inside
# a graph being built (Keras fit, export, tf.function) the layer is inlined
# instead, so that static shapes (e.g. a fixed batch for TFLite) reach the loop.
_lstm_layer_fn = tf.function(_lstm_layer, reduce_retracing=True, autograph=False)
# XLA compiles it once per input shape.
_lstm_layer_xla = tf.function(_lstm_layer, jit_compile=True, autograph=False)
_fast_fn = tf.function(_with_loop_gradient, reduce_retracing=True, autograph=False)
_cudnn_fn = tf.function(_cudnn_forward, reduce_retracing=True, autograph=False)


def lstm_layer(
    x,
    h0,
    c0,
    weight_ih,
    weight_hh,
    bias,
    weight_hr,
    bidirectional,
    training=True,
    lengths=None,
    fused=False,
    jit_compile=False,
):
    fast = None
    if not training:
        if jit_compile:
            fast = _xla_forward
        elif fused and _block_applies(x, weight_ih, weight_hr, lengths):
            fast = _block_forward_all
    args = (x, h0, c0, weight_ih, weight_hh, bias, weight_hr, bidirectional)
    if fused and weight_hr is None and x.dtype in (tf.float32, tf.float16):
        if _gpu_visible():  # cuDNN, both paths (untested here: no GPU on CI)
            cudnn = _cudnn_fn if tf.executing_eagerly() else _cudnn_forward
            return cudnn(x, h0, c0, weight_ih, weight_hh, bias, bidirectional, lengths)
    if fast is not None:
        run = _fast_fn if tf.executing_eagerly() else _with_loop_gradient
        return run(fast, *args, lengths)
    if tf.executing_eagerly():
        return _lstm_layer_fn(*args, training, lengths, jit_compile)
    return _lstm_layer(*args, training, lengths, jit_compile)


lstm_layer.__doc__ = """One LSTM layer (one or two directions) over a whole sequence.

Args:
    x: time-major input, shape (L, N, H_in).
    h0: initial hidden states, shape (D, N, H_out).
    c0: initial cell states, shape (D, N, H).
    weight_ih: (D, 4*H, H_in); weight_hh: (D, 4*H, H_out).
    bias: `bias_ih + bias_hh`, shape (D, 4*H), or None.
    weight_hr: (D, H_out, H), or None without projection.
    bidirectional: whether D is 2 (a Python bool: part of the trace key).
    training: the training path (hand-written gradient, activations one
        precision up) or the inference path (see `_inference_recurrence`).
    fused: on the inference path, use TensorFlow's fused kernel
        (`BlockLSTMV2`) where it applies (float32/float16, no projection,
        no lengths); it is not a TFLite builtin.
    jit_compile: compile the recurrences with XLA (once per input shape):
        on the inference path the whole layer (instead of `fused`), on the
        training path its forward and backward loops.
    lengths: None, or the valid length of each sequence, int32 (N,) in
        [1, L] (PyTorch's packed sequences): the output is 0 past it, the
        final states are those of each sequence's last valid step and the
        backward direction starts there.

Returns:
    `(output, h_n, c_n)`: output (L, N, D*H_out), forward then backward
    halves on the last axis; h_n (D, N, H_out); c_n (D, N, H).
"""
