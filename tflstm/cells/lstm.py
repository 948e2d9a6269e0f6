r"""The LSTM cell definition: `torch.nn.LSTM`'s step, with its projection.

.. math::
    \begin{array}{ll}
    (i, f, g, o) = (\sigma, \sigma, \tanh, \sigma)(z_t + h_{t-1} W_{hh}^T) \\
    c_t = f \odot c_{t-1} + i \odot g \\
    m_t = o \odot \tanh(c_t), \quad h_t = m_t \text{ or } m_t W_{hr}^T
    \end{array}

with `z_t = x_t W_ih^T + b_ih + b_hh`: both biases sit outside every gate's
nonlinearity, so they are summed once, on the input side. Gates are stacked
in PyTorch's order (i, f, g, o). State: `(h, c)`, `h` of `H_out` features
(`proj_size` or `hidden_size`), `c` of `hidden_size`.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from _tflstm import cells as specs
from tflstm.cells.base import Cell, Recurrent, State, StepGrad


def gates(z: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """The activated gates (i, f, g, o) from their pre-activations (..., 4*H)."""
    i, f, g, o = tf.split(z, 4, axis=-1)
    return tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)


class LSTMCellMath(Cell):
    spec = specs.LSTM
    cudnn_mode = "lstm"
    tflite_fused_op = "UNIDIRECTIONAL_SEQUENCE_LSTM"
    recurrent_grad_apart = False  # the recurrent matmul takes the gates' sum

    def split_bias(self, bias_ih: Any, bias_hh: Any) -> tuple[Any, Any]:
        return bias_ih + bias_hh, None

    def state_sizes(self, hidden_size: int, output_size: int) -> tuple[int, ...]:
        return output_size, hidden_size

    def _step(self, z: tf.Tensor, state: State, rec: Recurrent) -> tuple:
        h, c = state
        i, f, g, o = gates(z + rec.preactivation(h))
        c = f * c + i * g
        h = m = o * tf.tanh(c)
        if rec.weight_hr_t is not None:
            h = tf.matmul(m, rec.weight_hr_t)
        return (h, c), (i, f, g, o), m

    def step(self, z: tf.Tensor, state: State, rec: Recurrent) -> tuple[State, Any]:
        (h, c), _, _ = self._step(z, state, rec)
        return (h, c), h

    def train_step(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[State, tf.Tensor, tuple[tf.Tensor, ...]]:
        (h, c), acts, m = self._step(z, state, rec)
        saved = (c, tf.concat(acts, -1))
        return (h, c), h, saved + ((m,) if rec.weight_hr_t is not None else ())

    def saved_like(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[tf.Tensor, ...]:
        m = (state[1],) if rec.weight_hr_t is not None else ()  # shaped as c
        return state[1], z, *m

    def backward_factors(
        self, saved: tuple[tf.Tensor, ...], start: State, h_prev: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        cs, acts = saved[:2]
        i, f, g, o = tf.split(acts, 4, axis=-1)
        c_prev = tf.concat([start[1][None], cs[:-1]], 0)
        tanh_c = tf.tanh(cs)
        # dz = [dc, dc, dc, dm] * gate_factors; dc += dm * o * (1 - tanh(c)^2)
        gate_factors = tf.concat(
            [
                g * i * (1 - i),
                c_prev * f * (1 - f),
                i * (1 - g * g),
                tanh_c * o * (1 - o),
            ],
            -1,
        )
        return gate_factors, tf.concat([o * (1 - tanh_c * tanh_c), f], -1)

    def step_backward(
        self,
        factors: tuple[tf.Tensor, ...],
        d_state: State,
        d_output: tf.Tensor,
        rec: Recurrent,
    ) -> StepGrad:
        gate_factors, state_factors = factors
        dh_next, dc_next = d_state
        dh = dh_next + d_output
        projection = rec.weight_hr_t is not None
        dm = tf.matmul(dh, rec.weight_hr_t, transpose_b=True) if projection else dh
        from_h, forget = tf.split(state_factors, 2, axis=-1)
        dc = dc_next + dm * from_h
        dz = tf.concat([dc, dc, dc, dm], -1) * gate_factors
        return StepGrad(dz, dz, (None, dc * forget), (dh,) if projection else ())

    def extras_like(self, state: State, rec: Recurrent) -> tuple[tf.Tensor, ...]:
        return (state[0],) if rec.weight_hr_t is not None else ()

    def extra_contractions(
        self, saved: tuple[tf.Tensor, ...], extras: tuple[tf.Tensor, ...]
    ) -> list[tuple[tf.Tensor, tf.Tensor]]:
        # weight_hr's gradient: sum over steps of outer(dh_t, m_t)
        return [(extras[0], saved[2])] if extras else []


LSTM = LSTMCellMath()
