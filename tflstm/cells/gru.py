r"""The GRU cell definition: `torch.nn.GRU`'s step.

.. math::
    \begin{array}{ll}
    r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
    z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
    n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
    h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
    \end{array}

`b_hn` sits inside `r_t \odot (...)`, so the two biases cannot be summed:
`bias_ih` goes with the input projection, `bias_hh` with the recurrent one
(as torch computes it). Gates are stacked in PyTorch's order (r, z, n); the
update gate is `u` below, to keep `z` for the input projection. State: `(h,)`.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from _tflstm import cells as specs
from tflstm.cells.base import Cell, Recurrent, State, StepGrad


class GRUCellMath(Cell):
    spec = specs.GRU
    cudnn_mode = "gru"

    def split_bias(self, bias_ih: Any, bias_hh: Any) -> tuple[Any, Any]:
        return bias_ih, bias_hh

    def state_sizes(self, hidden_size: int, output_size: int) -> tuple[int, ...]:
        return (hidden_size,)

    def _step(self, z: tf.Tensor, h: tf.Tensor, rec: Recurrent) -> tuple:
        a = rec.preactivation(h)
        z_r, z_u, z_n = tf.split(z, 3, axis=-1)
        a_r, a_u, a_n = tf.split(a, 3, axis=-1)
        r = tf.sigmoid(z_r + a_r)
        u = tf.sigmoid(z_u + a_u)
        n = tf.tanh(z_n + r * a_n)
        # torch's order of operations (aten's GRUCell): (h - n) * u + n
        return (h - n) * u + n, (r, u, n), a_n

    def step(self, z: tf.Tensor, state: State, rec: Recurrent) -> tuple[State, Any]:
        h, _, _ = self._step(z, state[0], rec)
        return (h,), h

    def train_step(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[State, tf.Tensor, tuple[tf.Tensor, ...]]:
        h, acts, a_n = self._step(z, state[0], rec)
        return (h,), h, (tf.concat(acts, -1), a_n)

    def saved_like(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[tf.Tensor, ...]:
        return z, state[0]  # the gates (r, u, n); a_n

    def backward_factors(
        self, saved: tuple[tf.Tensor, ...], start: State, h_prev: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        acts, a_n = saved
        r, u, n = tf.split(acts, 3, axis=-1)
        # dh' = dh: dn_pre = dh (1-u)(1-n^2); du_pre = dh (h_prev - n) u (1-u);
        # dr_pre = dn_pre a_n r (1-r); dh_prev = dh u + da @ W_hh.
        from_n = (1 - u) * (1 - n * n)
        gate_factors = tf.concat(
            [from_n * a_n * r * (1 - r), (h_prev - n) * u * (1 - u), from_n], -1
        )
        return gate_factors, r, u

    def step_backward(
        self,
        factors: tuple[tf.Tensor, ...],
        d_state: State,
        d_output: tf.Tensor,
        rec: Recurrent,
    ) -> StepGrad:
        gate_factors, r, u = factors
        dh = d_state[0] + d_output
        dz = tf.concat([dh, dh, dh], -1) * gate_factors
        dr, du, dn = tf.split(dz, 3, axis=-1)
        da = tf.concat([dr, du, dn * r], -1)
        return StepGrad(dz, da, (dh * u,))


GRU = GRUCellMath()
