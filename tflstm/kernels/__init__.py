"""The kernels: the ways to run one recurrent layer (one or two directions)
over a whole sequence, for any cell definition (`tflstm.cells`).
`tflstm.kernels.policy.choose_kernel` picks one by name.

Every kernel has the same signature:

    kernel(cell, x, state, weights, lengths) -> (output, state_n)

- cell: the cell definition (`tflstm.cells.Cell`).
- x: time-major input (L, N, H_in).
- state: the initial state, a tuple in `cell.spec.states`' order of
  (D, N, size) tensors: the LSTM's (h_0 (D, N, H_out), c_0 (D, N, H)), the
  GRU's (h_0,).
- weights: `tflstm._ops.Weights` with the directions on a leading axis D.
- lengths: None, or int32 (N,) in [1, L] (PyTorch's packed sequences): the
  output is 0 past a sequence's length, the final state is that of its last
  valid step, and the backward direction starts there.
- output (L, N, D*H_out), forward then backward halves; state_n shaped as
  `state`.

The kernels (forward; gradient):

- `loop`: a while loop, UNROLL steps per iteration, holding only the
  outputs; `bptt`'s gradient, recomputed.
- `bptt`: a while loop saving the gates;
  backpropagation through time written by hand, the weight gradients as
  blocked matmuls over all L*N steps (torch's float32 accuracy).
- `block`: TensorFlow's fused `BlockLSTMV2` op (LSTM only; no projection,
  no lengths);
  `bptt`'s gradient, recomputed (TensorFlow's registered gradient of
  BlockLSTMV2 is wrong by O(1) in TF 2.21).
- `loop_xla`: `loop` compiled by XLA (once per input shape); `bptt`'s
  gradient, recomputed (TensorLists cannot cross the XLA boundary).
- `bptt_xla`: `bptt` with both loops compiled by XLA.
- `portable`: `loop` with TensorFlow's autodiff gradient: plain TensorFlow
  ops only, what exports contain (SavedModel, Keras's `model.export`).
- `cudnn`: cuDNN's RNN (`CudnnRNNV3`) in the cell's mode, GPU only, no
  projection; cuDNN's gradient.

One module per kernel family (`loop`, `bptt`, `block`, `cudnn`, `litert`),
the choice among them (`policy`) and what it asks of TensorFlow and Keras
(`probes`).
"""

from __future__ import annotations

import functools
from typing import Any

import tensorflow as tf

from tflstm._ops import Weights
from tflstm.cells import Cell, State
from tflstm.kernels.block import block
from tflstm.kernels.bptt import Kernel, bptt, bptt_xla
from tflstm.kernels.cudnn import cudnn
from tflstm.kernels.litert import buffer_loop_forward
from tflstm.kernels.loop import loop, loop_forward, loop_xla

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
    cell: Cell,
    x: tf.Tensor,
    state: State,
    weights: Weights,
    lengths: tf.Tensor | None,
    *,
    inline: bool = False,
    xla: bool = False,
) -> tuple[tf.Tensor, State]:
    """Runs the kernel `name`: its ops traced into the graph being built with
    `inline=True` (`policy.inline`: exports and XLA; `xla`: that graph is an
    XLA computation, `KernelFacts.in_xla`), else through its cached
    tf.function, traced once per process for every size (eager calls, and
    graphs such as Keras's train and predict functions, which then hold one
    call op per layer instead of the loops)."""
    kernel = KERNELS[name]
    if inline:
        return kernel(cell, x, state, weights, lengths, xla=xla)
    weights = weights.with_bias(cell)  # one trace with and without a bias
    # TensorFlow counts traces per Python code object: a partial (which has
    # none) gives each cached function a count of its own.
    key = (
        name,
        cell,  # a definition: an RNN's kind has two (tanh, relu)
        weights.num_directions,
        tuple(w is None for w in weights),
        lengths is None,
        x.dtype,
    )
    fn = _EAGER.get(key)
    if fn is None:
        fn = tf.function(
            functools.partial(kernel, cell), reduce_retracing=True, autograph=False
        )
        fn.get_concrete_function(*_relaxed_specs(x, state, weights, lengths))
        _EAGER[key] = fn
    return fn(x, state, weights, lengths)


def _relaxed_specs(x, state, weights, lengths) -> tuple:
    """The call's specs with every size unknown, so that one trace serves
    calls of any shape (the weights keep their direction axis, which the
    kernels unroll)."""

    def spec(t: Any, keep: int = 0) -> tf.TensorSpec | None:
        if t is None:
            return None
        return tf.TensorSpec(
            [*t.shape[:keep], *[None] * (t.shape.rank - keep)], t.dtype
        )

    return (
        spec(x),
        tuple(spec(s) for s in state),
        weights.map(lambda w: spec(w, keep=1)),
        spec(lengths),
    )
