"""The recurrent core's math as pure TensorFlow functions of tensors (no
Keras state), for any cell definition (`tflstm.cells`).

One copy of each piece, used by every kernel, the cell layers and the
exporters: `stack_weights` (the only place where torch's two biases are
split between the input and the recurrent side, by the cell), `project`
(the input projection), `inference_steps` (a run of a cell's steps),
`keep_state` (the masking rule of packed sequences), `reverse_time` and
`directions` (the backward direction's view of a batch, and the two
directions put together) and `blocked_loop` (the time loop).

Conventions, as in torch: gates are stacked along the last axis of size
G * hidden_size (G = the cell's gate count, in torch's gate order), and
weights keep PyTorch's shapes (`weight_ih`: (G*H, H_in), `weight_hh`:
(G*H, H_out), `weight_hr`: (H_out, H)). The kernels transpose them once per
call, never per step. A state is a tuple of tensors, `h` first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from tflstm.cells.base import Cell, Recurrent, State

# Every path uses TensorFlow's own sigmoid and tanh in the compute dtype:
# float64 activations on the training path bought no accuracy that the
# float32 criterion of tests/test_long.py can see, and cost a tenth to a
# quarter of a training step (docs/equality.md).


class Weights(NamedTuple):
    """The weights of one layer, in PyTorch's shapes.

    Per direction: `weight_ih` (G*H, H_in), `weight_hh` (G*H, H_out), `bias`
    (G*H,) the input-side bias or None, `weight_hr` (H_out, H) or None,
    `recurrent_bias` (G*H,) the recurrent-side bias or None
    (`Cell.split_bias`: an LSTM sums both biases into `bias`, a GRU keeps
    `bias_hh` here). A layer's weights stack its directions on a leading axis
    D (`stack_weights`); `direction(d)` takes one out.
    """

    weight_ih: Any
    weight_hh: Any
    bias: Any = None
    weight_hr: Any = None
    recurrent_bias: Any = None

    @property
    def num_directions(self) -> int:
        return int(self.weight_ih.shape[0])

    def direction(self, d: int) -> Weights:
        return self.map(lambda w: w[d])

    def map(self, fn: Callable) -> Weights:
        """`fn` applied to every weight that is present."""
        return Weights(*(None if w is None else fn(w) for w in self))

    def with_bias(self, cell: Cell) -> Weights:
        """These weights with zero biases where there are none (`bias=False`),
        for the kernels and exports that always take them: adding zeros is
        exact. numpy arrays stay numpy."""
        w = self.weight_ih
        if isinstance(w, np.ndarray):
            zeros = np.zeros(w.shape[:-1], w.dtype)
        else:
            zeros = tf.zeros(tf.shape(w)[:-1], w.dtype)
        bias, recurrent_bias = cell.split_bias(zeros, zeros)
        return self._replace(
            bias=bias if self.bias is None else self.bias,
            recurrent_bias=(
                recurrent_bias if self.recurrent_bias is None else self.recurrent_bias
            ),
        )

    def recurrent(self) -> Recurrent:
        """One direction's recurrent weights, transposed (once per call)."""
        return Recurrent(
            transposed(self.weight_hh), self.recurrent_bias, transposed(self.weight_hr)
        )


def stack_weights(
    cell: Cell,
    get: Callable[[str], Any],
    names: Callable[[str, int], str],
    num_directions: int,
    *,
    bias: bool,
    projection: bool,
    stack: Callable = tf.stack,
) -> Weights:
    """One layer's weights from PyTorch's parameters, directions stacked.

    Args:
        cell: the cell definition, which splits the biases.
        get: returns the parameter of a name (a variable, tensor or array).
        names: `names(kind, direction)` gives the parameter's name, e.g.
            `("weight_ih", 1) -> "weight_ih_l0_reverse"`.
        stack: `tf.stack`, or `numpy.stack` for constants (the exporters).
    """

    def stacked(kind: str) -> Any:
        return stack([get(names(kind, d)) for d in range(num_directions)])

    input_bias, recurrent_bias = (
        cell.split_bias(stacked("bias_ih"), stacked("bias_hh"))
        if bias
        else (None, None)
    )
    return Weights(
        stacked("weight_ih"),
        stacked("weight_hh"),
        input_bias,
        stacked("weight_hr") if projection else None,
        recurrent_bias,
    )


def keep_state(valid: tf.Tensor | None, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    """The masking rule of packed sequences: past its length (`valid` False)
    a sequence keeps its state; its output there is `keep_state(valid, h, 0)`.
    """
    return new if valid is None else tf.where(valid, new, old)


def reverse_time(t: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
    """The backward direction's view of a time-major batch (L, N, ...): each
    sequence reversed within its own length, the padding left in place."""
    if lengths is None:
        return tf.reverse(t, [0])
    return tf.reverse_sequence(t, lengths, seq_axis=0, batch_axis=1)


def time_major_mask(lengths: tf.Tensor, steps: Any) -> tf.Tensor:
    """(L, N) bool: True where `t < lengths[n]` (PyTorch's packed sequences).

    Built by comparison, not by transposing `tf.sequence_mask`: oneDNN's
    transpose of a bool tensor logs an error line on CPUs without AVX-512.
    """
    return tf.range(steps)[:, None] < lengths[None, :]


def valid_steps(lengths: tf.Tensor, steps: Any) -> tf.Tensor:
    """(L, N, 1) bool: True where `t < lengths[n]`. (Built at rank 3, not
    expanded afterwards: a bool STRIDED_SLICE with a dynamic batch and length
    is a Flex op in TFLite.)"""
    return tf.range(steps)[:, None, None] < lengths[None, :, None]


def transposed(w: tf.Tensor | None) -> tf.Tensor | None:
    return None if w is None else tf.transpose(w)


def dims(t: tf.Tensor) -> list:
    """Each dimension of `t`: a Python int when static, else a scalar tensor."""
    dynamic = tf.shape(t)
    return [d if d is not None else dynamic[i] for i, d in enumerate(t.shape)]


def take(t: tf.Tensor, d: int) -> tf.Tensor:
    """`t[d]` of a (D, ...) tensor, as a slice and a reshape: `t[d]` becomes a
    shrinking STRIDED_SLICE in TFLite, which LiteRT's XNNPACK delegate does not
    take; one such op before the recurrence split the unrolled graph into two
    delegated partitions (docs/guides/kernels.md, "Measurements behind the code")."""
    rank = len(t.shape)
    part = tf.slice(t, [d] + [0] * (rank - 1), [1] + [-1] * (rank - 1))
    return tf.reshape(part, dims(t)[1:])


def directions(
    recurrence: Callable,
    x: tf.Tensor,
    state: State,
    weights: Weights,
    lengths: tf.Tensor | None,
) -> tuple[tf.Tensor, State]:
    """Runs `recurrence(x, state, weights, valid) -> (output, state)` for each
    direction (the backward one on the time-reversed input: the loops never
    index backwards) and puts the directions together. `state`: a tuple of
    (D, N, ...) tensors; returns the output (L, N, D*H_out) and the final
    state, each (D, N, ...)."""
    valid = None if lengths is None else valid_steps(lengths, dims(x)[0])
    outputs, finals = [], []
    for d in range(weights.num_directions):
        x_d = reverse_time(x, lengths) if d else x
        y, final = recurrence(
            x_d, tuple(take(s, d) for s in state), weights.direction(d), valid
        )
        outputs.append(reverse_time(y, lengths) if d else y)
        finals.append(final)
    output = outputs[0] if len(outputs) == 1 else tf.concat(outputs, -1)
    return output, tuple(tf.stack(s) for s in zip(*finals, strict=True))


def project(x: tf.Tensor, weights: Weights) -> tf.Tensor:
    """`x @ weight_ih^T + bias` for every row of x (..., H_in) -> (..., G*H)."""
    *lead, input_size = dims(x)
    z = tf.matmul(tf.reshape(x, [-1, input_size]), weights.weight_ih, transpose_b=True)
    if weights.bias is not None:  # fused with the MatMul (Recurrent.preactivation)
        z = tf.nn.bias_add(z, weights.bias)
    return tf.reshape(z, [*lead, -1])


def cell_step(cell: Cell, x: tf.Tensor, state: State, weights: Weights) -> State:
    """One step of a cell layer (`nn.LSTMCell`, ...) from its input (N, H_in):
    the next state. `weights`: one direction's, without projection."""
    state, _ = cell.step(project(x, weights), state, weights.recurrent())
    return state


def window(t: tf.Tensor, t0: Any, k: int, *, xla: bool = False) -> tf.Tensor:
    """Steps t0 .. t0+k-1 of a time-major tensor, (k, ...). A slice of static
    size k (`t[t0 : t0 + k]` has no static size, which XLA needs); with `xla`
    (traced for XLA), the k steps taken one at a time (`_xla_steps`)."""
    if xla:
        return tf.stack(_xla_steps(t, t0, k))
    rank = len(t.shape)
    return tf.slice(t, tf.stack([t0] + [0] * (rank - 1)), [k] + [-1] * (rank - 1))


def unstack_steps(
    t: tf.Tensor, t0: Any, k: int, *, xla: bool = False
) -> list[tf.Tensor]:
    """Steps t0 .. t0+k-1 of a time-major tensor, one tensor each."""
    if xla:
        return _xla_steps(t, t0, k)
    return tf.unstack(window(t, t0, k), num=k)


def _xla_steps(t: tf.Tensor, t0: Any, k: int) -> list[tf.Tensor]:
    """`[t[t0], ..., t[t0 + k - 1]]`: XLA:CPU runs a one-step index at the
    speed of a copy, but `tf.slice` with a computed start 10-50x slower
    (docs/guides/kernels.md, "Measurements behind the code"); under
    TensorFlow's executor the one slice is the faster."""
    return [t[t0 + j] for j in range(k)]


def inference_steps(
    cell: Cell,
    z: list,
    masks: list,
    state: State,
    rec: Recurrent,
    zeros: tf.Tensor,
) -> tuple[State, list]:
    """Consecutive steps of inference from their input gates `z` and masks
    (None entries: no lengths), from `state` with the transposed recurrent
    weights `rec`; returns the state after them and each step's output (0
    past a sequence's length)."""
    outputs = []
    for z_t, valid in zip(z, masks, strict=True):
        new, output = cell.step(z_t, state, rec)
        state = tuple(keep_state(valid, n, o) for n, o in zip(new, state, strict=True))
        outputs.append(keep_state(valid, output, zeros))
    return state, outputs


# Steps per iteration of the time loops. TensorFlow's executor spends a few
# microseconds on every op and on every iteration of a while loop; doing UNROLL
# steps per iteration amortises the latter, and lets the inference loop compute
# the input projection of UNROLL steps as one matmul (reading the input a block
# at a time, so that no (L, N, 4*H) tensor is ever held).
# benchmarks/bench.py measures it (UNROLL=1 is the plain loop).
UNROLL = 4


def blocked_loop(
    steps: Any,
    body: Callable,
    state: tuple,
    out_like: list[tf.Tensor],
    *,
    reverse: bool = False,
    unroll: int = UNROLL,
) -> tuple[tuple, list[tf.Tensor]]:
    """`state, outs = body(t0, k, state)` over the time steps [0, steps).

    `body` handles the `k` steps `t0, ..., t0 + k - 1` (k is a Python int:
    `unroll`, or 1 for the last `steps % unroll`), in that order, or in
    reverse order with `reverse=True` (then the loop starts at the end). It
    returns the new state and, for each entry of `out_like` (a tensor shaped
    as one step's value), the list of its k per-step values in time order.
    Returns the final state and each output for all steps, (L, ...).

    Two while loops: whole blocks, then the remaining steps one at a time
    (the first of them in reverse). Both are always built (one may run 0
    times), so that the graph does not depend on the length; static sizes
    (the batch, for TFLite; everything, under XLA) stay static.
    """
    if isinstance(steps, int):
        blocks, rest = divmod(steps, unroll)
    else:
        blocks, rest = steps // unroll, steps % unroll
    head = blocks * unroll
    arrays = [
        tf.TensorArray(o.dtype, size=steps, element_shape=o.shape) for o in out_like
    ]

    def run(count, k, first, state, arrays):
        """`count` iterations of k steps; iteration b covers first + b*k, ..."""

        def iteration(b, state, arrays):
            t0 = first + (count - 1 - b if reverse else b) * k
            state, outs = body(t0, k, state)
            for j in range(k):
                arrays = [
                    a.write(t0 + j, o[j]) for a, o in zip(arrays, outs, strict=True)
                ]
            return b + 1, state, arrays

        _, state, arrays = tf.while_loop(
            lambda b, *_: b < count,
            iteration,
            (tf.constant(0), state, arrays),
            maximum_iterations=count,
        )
        return state, arrays

    if reverse:
        state, arrays = run(rest, 1, head, state, arrays)
        state, arrays = run(blocks, unroll, 0, state, arrays)
    else:
        state, arrays = run(blocks, unroll, 0, state, arrays)
        state, arrays = run(rest, 1, head, state, arrays)
    return state, [a.stack() for a in arrays]
