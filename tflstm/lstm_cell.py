"""`tflstm.LSTMCell`: `torch.nn.LSTMCell` as a Keras 3 layer."""

from __future__ import annotations

from typing import Any

import keras

from tflstm import cells
from tflstm._cell_layer import CellLayer


@keras.saving.register_keras_serializable(package="tflstm")
class LSTMCell(CellLayer):
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

    cell = cells.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._init_cell(input_size, hidden_size, bias, seed=seed, **kwargs)
