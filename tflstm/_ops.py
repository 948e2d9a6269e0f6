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
    gates = x_gates + tf.matmul(h, weight_hh, transpose_b=True)
    i, f, g, o = tf.split(gates, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    if weight_hr is not None:
        h = tf.matmul(h, weight_hr, transpose_b=True)
    return h, c


def _recurrence(
    x_gates: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    weight_hh: tf.Tensor,
    weight_hr: tf.Tensor | None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Runs `lstm_step` over the leading time axis of `x_gates` in one loop op.

    Shapes: x_gates (L, D, N, 4*H), h0 (D, N, H_out), c0 (D, N, H).
    Returns the stacked hidden states (L, D, N, H_out) and the final (h, c).
    """
    steps = tf.shape(x_gates)[0]
    inputs = tf.TensorArray(x_gates.dtype, size=steps, element_shape=x_gates.shape[1:])
    inputs = inputs.unstack(x_gates)
    outputs = tf.TensorArray(h0.dtype, size=steps, element_shape=h0.shape)

    def body(t, h, c, outputs):
        h, c = lstm_step(inputs.read(t), h, c, weight_hh, weight_hr)
        return t + 1, h, c, outputs.write(t, h)

    _, h, c, outputs = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), h0, c0, outputs),
        maximum_iterations=steps,
    )
    return outputs.stack(), h, c


def _lstm_layer(
    x: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    weight_ih: tf.Tensor,
    weight_hh: tf.Tensor,
    bias: tf.Tensor | None,
    weight_hr: tf.Tensor | None,
    bidirectional: bool,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    # Shapes are read at run time: the trace is shared by every layer size.
    steps, batch = tf.shape(x)[0], tf.shape(x)[1]
    num_directions = 2 if bidirectional else 1
    gate_size, input_size = tf.shape(weight_ih)[1], tf.shape(weight_ih)[2]

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
        x_gates = tf.stack([x_gates[:, 0], tf.reverse(x_gates[:, 1], [0])], axis=1)

    ys, h_n, c_n = _recurrence(x_gates, h0, c0, weight_hh, weight_hr)

    if bidirectional:
        ys = tf.stack([ys[:, 0], tf.reverse(ys[:, 1], [0])], axis=1)
    ys = tf.transpose(ys, [0, 2, 1, 3])  # (L, N, D, H_out)
    ys = tf.reshape(ys, [steps, batch, -1])
    return ys, h_n, c_n


# One graph op for the whole sequence, also when called eagerly; weights are
# arguments (not captures), so every layer with the same shapes shares a trace.
lstm_layer = tf.function(_lstm_layer, reduce_retracing=True, autograph=False)
lstm_layer.__doc__ = """One LSTM layer (one or two directions) over a whole sequence.

Args:
    x: time-major input, shape (L, N, H_in).
    h0: initial hidden states, shape (D, N, H_out).
    c0: initial cell states, shape (D, N, H).
    weight_ih: (D, 4*H, H_in); weight_hh: (D, 4*H, H_out).
    bias: `bias_ih + bias_hh`, shape (D, 4*H), or None.
    weight_hr: (D, H_out, H), or None without projection.
    bidirectional: whether D is 2 (a Python bool: part of the trace key).

Returns:
    `(output, h_n, c_n)`: output (L, N, D*H_out), forward then backward
    halves on the last axis; h_n (D, N, H_out); c_n (D, N, H).
"""
