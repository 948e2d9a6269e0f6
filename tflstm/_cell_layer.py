"""The one-step layer that `tflstm.LSTMCell` and `tflstm.GRUCell` are:
torch's `nn.LSTMCell` / `nn.GRUCell` call for any cell definition.

A concrete class sets `cell` and writes its own `__init__` (torch's
signature, then `_init_cell`) and docstring; the checks, the step and
`get_config` are here once.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from _tflstm.params import cell_param_shapes
from tflstm import _errors
from tflstm._init import FromWeights, create_weights
from tflstm._ops import Weights, cell_step, stack_weights
from tflstm.cells import Cell


class CellLayer(FromWeights, keras.layers.Layer):
    """The base of `tflstm.LSTMCell` and `tflstm.GRUCell` (see theirs)."""

    # The cell definition: a class attribute, or set per instance before
    # `_init_*` (an RNN's depends on its nonlinearity).
    cell: Cell

    def _init_cell(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        *,
        seed: int | None,
        **kwargs: Any,
    ) -> None:
        _errors.check_backend()
        self.input_size = _errors.check_int("input_size", input_size, minimum=1)
        self.hidden_size = _errors.check_int("hidden_size", hidden_size, minimum=1)
        self.bias = _errors.check_bool("bias", bias)
        if seed is not None:
            _errors.check_int("seed", seed, minimum=0)
        super().__init__(**kwargs)
        self.seed = seed
        shapes = cell_param_shapes(
            self.cell.spec, self.input_size, self.hidden_size, self.bias
        )
        create_weights(self, shapes, self.hidden_size, seed)
        self._build_at_init()

    def _states_of(self, hx: Any) -> tuple:
        _errors.check_states("hx", hx, self.cell.spec.states)
        return tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)

    def _pack_states(self, states: tuple) -> Any:
        """As torch returns them: `(h_1, c_1)`, or `h_1` alone."""
        return states if len(states) > 1 else states[0]

    def _check_inputs(self, input: Any, hx: Any) -> bool:
        _errors.check_floating("input", input.dtype)
        input_shape = tuple(input.shape)
        _errors.check_rank("input", input_shape, {2: "batched", 1: "unbatched"})
        _errors.check_features("input", input_shape, self.input_size, "input_size")
        if hx is not None:
            expected = (*input_shape[:-1], self.hidden_size)
            legend = "(N, H)" if len(input_shape) == 2 else "(H,)"
            for state, value in zip(
                self.cell.spec.states, self._states_of(hx), strict=True
            ):
                _errors.check_shape(f"{state}_0", tuple(value.shape), expected, legend)
        return len(input_shape) == 2

    def compute_output_shape(self, input_shape: tuple, hx_shape: Any = None) -> Any:
        shape = (*tuple(input_shape)[:-1], self.hidden_size)
        return self._pack_states((shape,) * len(self.cell.spec.states))

    def compute_output_spec(self, input: Any, hx: Any = None) -> Any:
        self._check_inputs(input, hx)
        shape = (*tuple(input.shape)[:-1], self.hidden_size)
        return self._pack_states(
            tuple(
                keras.KerasTensor(shape, self.compute_dtype)
                for _ in self.cell.spec.states
            )
        )

    def call(self, input: Any, hx: Any = None) -> Any:
        return self._pack_states(self.step(input, hx))

    def step(self, input: Any, hx: Any = None) -> tuple[tf.Tensor, ...]:
        """`call`'s computation, the next states always as a tuple (what the
        exporters use)."""
        batched = self._check_inputs(input, hx)
        x = tf.cast(input, self.variable_dtype)
        if not batched:
            x = x[None]
        if hx is None:
            zeros = tf.zeros([tf.shape(x)[0], self.hidden_size], x.dtype)
            states = (zeros,) * len(self.cell.spec.states)
        else:
            states = tuple(tf.cast(s, x.dtype) for s in self._states_of(hx))
            if not batched:
                states = tuple(s[None] for s in states)
        states = cell_step(self.cell, x, states, self.cell_weights())
        states = tuple(tf.cast(s, self.compute_dtype) for s in states)
        return states if batched else tuple(s[0] for s in states)

    def cell_weights(self, stack: Any = tf.stack) -> Weights:
        """The cell's weights (the biases split by the cell); with
        `stack=numpy.stack`, numpy constants (for exports)."""

        def get(name: str) -> Any:
            variable = getattr(self, name)
            return variable.value if stack is tf.stack else variable.numpy()

        weights = stack_weights(
            self.cell,
            get,
            lambda kind, d: kind,
            1,
            bias=self.bias,
            projection=False,
            stack=stack,
        )
        return weights.direction(0)

    def get_config(self) -> dict[str, Any]:
        config = {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "bias": self.bias,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}
