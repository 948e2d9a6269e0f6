r"""The RNN cell definitions: `torch.nn.RNN`'s step, tanh or relu.

.. math::
    h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

with `act` tanh or relu (torch's `nonlinearity`). No gate sits between the
two biases, so they are summed on the input side, as the LSTM's are. One
"gate" of `hidden_size` rows; state `(h,)`. `RNN_TANH` and `RNN_RELU` are the
two definitions; `rnn_cell(nonlinearity)` picks one.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from _tflstm import cells as specs
from tflstm.cells.base import Cell, Recurrent, State, StepGrad


class RNNCellMath(Cell):
    spec = specs.RNN
    recurrent_grad_apart = False  # the recurrent matmul takes the one sum
    tflite_fused_op = "UNIDIRECTIONAL_SEQUENCE_RNN"  # tanh or relu fused

    def __init__(self, nonlinearity: str) -> None:
        self.nonlinearity = nonlinearity
        # cuDNN's modes are torch's: "rnn_tanh", "rnn_relu".
        self.cudnn_mode = f"rnn_{nonlinearity}"

    def __repr__(self) -> str:
        return f"RNNCellMath({self.nonlinearity!r})"

    def activation(self, a: tf.Tensor) -> tf.Tensor:
        return tf.tanh(a) if self.nonlinearity == "tanh" else tf.nn.relu(a)

    def split_bias(self, bias_ih: Any, bias_hh: Any) -> tuple[Any, Any]:
        return bias_ih + bias_hh, None

    def state_sizes(self, hidden_size: int, output_size: int) -> tuple[int, ...]:
        return (hidden_size,)

    def step(self, z: tf.Tensor, state: State, rec: Recurrent) -> tuple[State, Any]:
        h = self.activation(z + rec.preactivation(state[0]))
        return (h,), h

    def train_step(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[State, tf.Tensor, tuple[tf.Tensor, ...]]:
        (h,), _ = self.step(z, state, rec)
        return (h,), h, (h,)

    def saved_like(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[tf.Tensor, ...]:
        return (state[0],)  # h

    def backward_factors(
        self, saved: tuple[tf.Tensor, ...], start: State, h_prev: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        (h,) = saved
        # act'(a) from act(a): 1 - tanh^2; relu's 1 where the output is > 0
        # (torch's threshold_backward: 0 at a = 0).
        if self.nonlinearity == "tanh":
            return (1 - h * h,)
        return (tf.cast(h > 0, h.dtype),)

    def step_backward(
        self,
        factors: tuple[tf.Tensor, ...],
        d_state: State,
        d_output: tf.Tensor,
        rec: Recurrent,
    ) -> StepGrad:
        (slope,) = factors
        dz = (d_state[0] + d_output) * slope
        # h_prev reaches h only through the recurrent matmul (da @ W_hh).
        return StepGrad(dz, dz, (None,))


RNN_TANH = RNNCellMath("tanh")
RNN_RELU = RNNCellMath("relu")


def rnn_cell(nonlinearity: str) -> RNNCellMath:
    """The definition of `nonlinearity` ("tanh" or "relu"; checked by the
    layers)."""
    return RNN_TANH if nonlinearity == "tanh" else RNN_RELU
