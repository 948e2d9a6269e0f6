"""`tflstm.LSTMCell`: `torch.nn.LSTMCell` as a Keras 3 layer."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from _tflstm.params import lstm_cell_param_shapes
from tflstm import _errors
from tflstm._init import FromWeights, create_weights
from tflstm._ops import LSTMWeights, cell_step, stack_weights


@keras.saving.register_keras_serializable(package="tflstm")
class LSTMCell(FromWeights, keras.layers.Layer):
    r"""One LSTM step, exactly as `torch.nn.LSTMCell` computes it.

    .. math::
        \begin{array}{ll}
        i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
        f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
        g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
        o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
        c' = f \odot c + i \odot g \\
        h' = o \odot \tanh(c')
        \end{array}

    Shapes: `input` is `(N, H_in)` or `(H_in,)` unbatched; `h_0`, `c_0`, `h_1`
    and `c_1` are `(N, H)` or `(H,)` with `H = hidden_size`.

    Args:
        input_size: The number of features `H_in` of the input. Must be a
            positive integer.
        hidden_size: The number of features `H` of the states. Must be a
            positive integer.
        bias: Whether to use the biases `b_ih` and `b_hh`. Defaults to `True`.
        seed: An integer seed for the initial weights. Defaults to `None`.
        **kwargs: Base layer arguments such as `name` and `dtype`.

    Call arguments:
        input: One time step, shaped as above.
        hx: `None` (zeros) or a tuple `(h_0, c_0)`.

    Returns:
        `(h_1, c_1)`, the next hidden and cell states.

    Attributes:
        weight_ih: `(4*hidden_size, input_size)`, rows `W_ii|W_if|W_ig|W_io`.
        weight_hh: `(4*hidden_size, hidden_size)`.
        bias_ih, bias_hh: `(4*hidden_size,)`, only with `bias=True`.
        All are initialised from `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`.

    Example:

    >>> import numpy as np
    >>> cell = LSTMCell(10, 20, seed=0)
    >>> x = np.random.rand(6, 3, 10).astype("float32")  # (L, N, H_in)
    >>> hx = None
    >>> for x_t in x:
    ...     hx = cell(x_t, hx)
    >>> h, c = hx
    >>> tuple(h.shape), tuple(c.shape)
    ((3, 20), (3, 20))
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        seed: int | None = None,
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
        shapes = lstm_cell_param_shapes(self.input_size, self.hidden_size, self.bias)
        create_weights(self, shapes, self.hidden_size, seed)
        self._build_at_init()

    def _check_inputs(self, input: Any, hx: Any) -> bool:
        _errors.check_floating("input", input.dtype)
        input_shape = tuple(input.shape)
        _errors.check_rank("input", input_shape, {2: "batched", 1: "unbatched"})
        _errors.check_features("input", input_shape, self.input_size, "input_size")
        if hx is not None:
            _errors.check_state_pair("hx", hx)
            expected = (*input_shape[:-1], self.hidden_size)
            legend = "(N, H)" if len(input_shape) == 2 else "(H,)"
            for name, value in (("h_0", hx[0]), ("c_0", hx[1])):
                _errors.check_shape(name, tuple(value.shape), expected, legend)
        return len(input_shape) == 2

    def compute_output_shape(self, input_shape: tuple, hx_shape: Any = None) -> tuple:
        shape = (*tuple(input_shape)[:-1], self.hidden_size)
        return shape, shape

    def compute_output_spec(self, input: Any, hx: Any = None) -> tuple:
        self._check_inputs(input, hx)
        shape, _ = self.compute_output_shape(input.shape)
        dtype = self.compute_dtype
        return keras.KerasTensor(shape, dtype), keras.KerasTensor(shape, dtype)

    def call(self, input: Any, hx: Any = None) -> tuple[tf.Tensor, tf.Tensor]:
        batched = self._check_inputs(input, hx)
        x = tf.cast(input, self.variable_dtype)
        if not batched:
            x = x[None]
        if hx is None:
            h = c = tf.zeros([tf.shape(x)[0], self.hidden_size], x.dtype)
        else:
            h, c = (tf.cast(s, x.dtype) for s in hx)
            if not batched:
                h, c = h[None], c[None]
        h, c = cell_step(x, h, c, self.cell_weights())
        h, c = tf.cast(h, self.compute_dtype), tf.cast(c, self.compute_dtype)
        if not batched:
            h, c = h[0], c[0]
        return h, c

    def cell_weights(self, stack: Any = tf.stack) -> LSTMWeights:
        """The cell's weights (`bias = bias_ih + bias_hh`); with
        `stack=numpy.stack`, numpy constants (for exports)."""

        def get(name: str) -> Any:
            variable = getattr(self, name)
            return variable.value if stack is tf.stack else variable.numpy()

        weights = stack_weights(
            get, lambda kind, d: kind, 1, bias=self.bias, projection=False, stack=stack
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
