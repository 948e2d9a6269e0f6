"""What a cell definition gives the one recurrent core (`tflstm._ops`,
`tflstm.kernels`, the exports): its math, step by step, as pure TensorFlow
functions of tensors.

The core runs every cell the same way. Per direction and call:

1. `z = x @ weight_ih^T + bias` for a block of steps (`_ops.project`), where
   `bias` is the part of the biases that can be added to the input side
   (`Cell.split_bias`: both for an LSTM, `bias_ih` alone for a GRU);
2. at each step, `state, output = cell.step(z_t, state, recurrent)`, where
   `recurrent` holds the transposed recurrent weights (`Recurrent`) and
   `state` is a tuple, `h` first (the LSTM's `(h, c)`, the GRU's `(h,)`);
3. past a sequence's length, the state is kept and the output is 0
   (`_ops.keep_state`).

Training runs `train_step` instead, which also returns what the backward
needs of that step; `kernels.bptt` runs the backward loop with
`step_backward` and contracts the weight gradients. A cell's step backward
returns the gradient of its input gates `dz` and of its recurrent
pre-activations `da` (`h @ weight_hh^T + recurrent bias`) separately: they
are equal for an LSTM, not for a GRU, whose reset gate multiplies the
recurrent part of its candidate.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import tensorflow as tf

from _tflstm.cells import CellSpec

State = tuple[tf.Tensor, ...]


class Recurrent(NamedTuple):
    """One direction's recurrent weights, transposed once per call.

    `weight_hh_t` (H_out, G*H); `bias` (G*H,) the recurrent-side bias, or
    None where the cell adds all its biases on the input side; `weight_hr_t`
    (H, H_out), the LSTM's projection, or None.
    """

    weight_hh_t: tf.Tensor
    bias: tf.Tensor | None = None
    weight_hr_t: tf.Tensor | None = None

    def preactivation(self, h: tf.Tensor) -> tf.Tensor:
        """`h @ weight_hh^T (+ bias)`, (N, G*H)."""
        a = tf.matmul(h, self.weight_hh_t)
        # BiasAdd, not +: TensorFlow's graph optimiser fuses MatMul + BiasAdd
        # into one op (fewer ops per step). The fused op may round
        # differently in the last bit (within the float32 rule; a GRU's loop
        # kernel gave bit-identical outputs).
        return a if self.bias is None else tf.nn.bias_add(a, self.bias)


class StepGrad(NamedTuple):
    """One step's backward (see the module docstring).

    `dz` (N, G*H): the gradient of the input gates `z_t`; `da` (N, G*H): of
    the recurrent pre-activations (the core adds `da @ weight_hh` to the
    previous `h`'s gradient and contracts `weight_hh`'s gradient from it);
    `d_state`: the previous state's gradient other than through `da` (None
    for a state with no other path); `extras`: per-step tensors of the
    cell's own weight gradients (`Cell.extra_contractions`), masked by the core.
    """

    dz: tf.Tensor
    da: tf.Tensor
    d_state: tuple[tf.Tensor | None, ...]
    extras: tuple[tf.Tensor, ...] = ()


class Cell:
    """A cell definition: `spec` (the pure-Python facts, `_tflstm.cells`) and
    the math. Subclasses define the methods below; the core never looks at
    a cell's kind except through `spec` (and the kernels that only one cell
    has, e.g. BlockLSTMV2, through the policy's facts)."""

    spec: ClassVar[CellSpec]
    # cuDNN's `rnn_mode` (CudnnRNNV3) for this cell, or "" if cuDNN has none
    # (an instance's: the RNN's depends on its nonlinearity).
    cudnn_mode: str = ""
    # TFLite's fused builtin op for a whole sequence of this cell, or "" (a
    # GRU has none): what `export_tflite(graph="fused")` writes.
    tflite_fused_op: ClassVar[str] = ""
    # Whether `StepGrad.da` differs from `dz` (a GRU's), so that the backward
    # keeps both; where they are one (an LSTM's), it keeps one.
    recurrent_grad_apart: ClassVar[bool] = True

    def split_bias(self, bias_ih: Any, bias_hh: Any) -> tuple[Any, Any]:
        """`(input-side bias, recurrent-side bias or None)` from torch's two
        (tensors or numpy arrays)."""
        raise NotImplementedError

    def state_sizes(self, hidden_size: int, output_size: int) -> tuple[int, ...]:
        """The feature size of each state, in `spec.states`' order."""
        raise NotImplementedError

    def step(self, z: tf.Tensor, state: State, rec: Recurrent) -> tuple[State, Any]:
        """One step of inference: `(next state, output)`; the output is the
        next `h`."""
        raise NotImplementedError

    def train_step(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[State, tf.Tensor, tuple[tf.Tensor, ...]]:
        """One step of training: `(next state, output, saved)`; `saved` are
        this step's tensors that `backward_factors` reads, shaped as
        `saved_like` says."""
        raise NotImplementedError

    def saved_like(
        self, z: tf.Tensor, state: State, rec: Recurrent
    ) -> tuple[tf.Tensor, ...]:
        """Tensors shaped as one step's `saved` (`z`: one step's input gates)."""
        raise NotImplementedError

    def backward_factors(
        self, saved: tuple[tf.Tensor, ...], start: State, h_prev: tf.Tensor
    ) -> tuple[tf.Tensor, ...]:
        """Everything the step backward needs that does not depend on the
        running gradients, for all steps at once (L, N, ...): a few large
        elementwise ops instead of many small ones in the loop. `saved`: the
        stacked `saved` of every step; `start`: the initial state; `h_prev`:
        each step's previous `h`."""
        raise NotImplementedError

    def step_backward(
        self,
        factors: tuple[tf.Tensor, ...],
        d_state: State,
        d_output: tf.Tensor,
        rec: Recurrent,
    ) -> StepGrad:
        """One step's backward from its `factors`, the next state's gradient
        and the gradient of this step's output."""
        raise NotImplementedError

    def extras_like(self, state: State, rec: Recurrent) -> tuple[tf.Tensor, ...]:
        """Tensors shaped as one step's `StepGrad.extras`."""
        return ()

    def extra_contractions(
        self, saved: tuple[tf.Tensor, ...], extras: tuple[tf.Tensor, ...]
    ) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """The gradients of the cell's own recurrent weights besides
        `weight_hh` and the recurrent bias (the LSTM's `weight_hr`), as pairs
        `(a, b)` whose contraction over all steps (`kernels.bptt.contract`:
        the sum of `outer(a_t, b_t)`) is the gradient; from the stacked
        `saved` and `extras` of every step."""
        return []
