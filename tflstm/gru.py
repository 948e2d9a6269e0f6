"""`tflstm.GRU` and `tflstm.GRUCell`: `torch.nn.GRU` and `nn.GRUCell` as
Keras 3 layers."""

from __future__ import annotations

from typing import Any

import keras

from tflstm import cells
from tflstm._cell_layer import CellLayer
from tflstm._recurrent import RecurrentLayer
from tflstm.kernels import policy


@keras.saving.register_keras_serializable(package="tflstm")
class GRU(RecurrentLayer):
    r"""A multi-layer GRU that computes exactly what `torch.nn.GRU` computes.

    For each element of the input sequence, each layer computes

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    where :math:`\sigma` is the sigmoid and :math:`\odot` the elementwise
    product: the reset gate multiplies the recurrent part of the candidate,
    bias included (Keras's `reset_after=True`), so the two biases are kept
    apart. The input of layer `l > 0` is the output of layer `l - 1`,
    multiplied in training by a Bernoulli mask with keep probability
    `1 - dropout` and scaled by `1 / (1 - dropout)`. Gates are stacked in
    the order (r, z, n), as in PyTorch.

    Shapes (`D = 2` if `bidirectional` else 1, `H_out = hidden_size`):

    - `input`: `(L, N, H_in)`, `(N, L, H_in)` with `batch_first=True`, or
      `(L, H_in)` unbatched.
    - `h_0`, `h_n`: `(D*num_layers, N, H_out)`, or `(D*num_layers, H_out)`
      unbatched. `batch_first` does not apply to the states.
    - `output`: `(L, N, D*H_out)` (`(N, L, D*H_out)` with `batch_first=True`,
      `(L, D*H_out)` unbatched); the last axis holds the forward direction
      then the backward one.

    `h_n[layer * D + direction]` is the final state of that layer and
    direction. Keras models: as for `tflstm.LSTM`, a time-major layer on a
    model input raises a `ValueError` (use `batch_first=True` or
    `converters.keras_model(layer)`).

    Args:
        input_size: The number of features `H_in` of the input. Must be a
            positive integer.
        hidden_size: The number of features `H_out` of the state. Must be a
            positive integer.
        num_layers: The number of stacked GRU layers. Defaults to `1`.
        bias: Whether to use the biases `b_ih` and `b_hh`. Defaults to `True`.
        batch_first: Whether `input` and `output` are `(N, L, H)` instead of
            `(L, N, H)`. Defaults to `False`.
        dropout: The dropout probability applied in training to the output of
            every layer except the last. Defaults to `0.0`.
        bidirectional: Whether each layer also runs backward in time. Defaults
            to `False`.
        return_state: Keyword-only. Whether the call returns
            `(output, h_n)`, as torch does, or only `output`. Defaults to
            `True`.
        kernel: Keyword-only. `"auto"` (default), `"loop"` or `"xla"`, as for
            `tflstm.LSTM` (a GRU has no `"block"` kernel).
        use_cudnn: Keyword-only. As in `keras.layers.GRU`: `"auto"` (default)
            runs cuDNN's GRU when a GPU is visible; `True` requires it;
            `False` never uses it.
        seed: Keyword-only. An integer seed for the initial weights and the
            dropout masks. Defaults to `None`.
        **kwargs: Base layer arguments such as `name` and `dtype`.

    Call arguments:
        input: The input sequence, shaped as above.
        hx: `None` (zeros) or the initial state `h_0`.
        training: Whether dropout is applied; it also chooses the gradient,
            as for `tflstm.LSTM`.
        sequence_lengths: `None`, or the length of each sequence of a
            right-padded batch, integers `(N,)` in `[1, L]`, with PyTorch's
            packed-sequence semantics (see `tflstm.LSTM`).
        mask: A right-padded Keras mask, as for `tflstm.LSTM`.

    Returns:
        `(output, h_n)`, shaped as above; only `output` with
        `return_state=False`.

    Attributes:
        weight_ih_l{k}: `(3*hidden_size, H_in)` for `k = 0`, else
            `(3*hidden_size, D*hidden_size)`; the rows are `W_ir|W_iz|W_in`.
        weight_hh_l{k}: `(3*hidden_size, hidden_size)`.
        bias_ih_l{k}, bias_hh_l{k}: `(3*hidden_size,)`, only with `bias=True`.

    The backward direction's weights end in `_reverse`. All are initialised
    from `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`.

    Example:

    >>> import numpy as np
    >>> gru = GRU(10, 20, num_layers=2, bidirectional=True, seed=0)
    >>> x = np.random.rand(5, 3, 10).astype("float32")  # (L, N, H_in)
    >>> output, h_n = gru(x)
    >>> tuple(output.shape), tuple(h_n.shape)
    ((5, 3, 40), (4, 3, 20))
    """

    cell = cells.GRU
    kernel_options = tuple(k for k in policy.KERNEL_OPTIONS if k != "block")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        return_state: bool = True,
        seed: int | None = None,
        kernel: str = "auto",
        use_cudnn: str | bool = "auto",
        **kwargs: Any,
    ) -> None:
        if "proj_size" in kwargs:  # as torch, whatever its value
            raise ValueError(
                "proj_size argument is only supported for LSTM, not RNN or GRU. "
                f"Received: proj_size={kwargs['proj_size']!r}"
            )
        self._init_recurrent(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            0,
            return_state=return_state,
            seed=seed,
            kernel=kernel,
            use_cudnn=use_cudnn,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="tflstm")
class GRUCell(CellLayer):
    r"""One GRU step, exactly as `torch.nn.GRUCell` computes it.

    .. math::
        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    Shapes: `input` is `(N, H_in)` or `(H_in,)` unbatched; `h_0` and `h'`
    are `(N, H)` or `(H,)` with `H = hidden_size`.

    Args:
        input_size: The number of features `H_in` of the input. Must be a
            positive integer.
        hidden_size: The number of features `H` of the state. Must be a
            positive integer.
        bias: Whether to use the biases `b_ih` and `b_hh`. Defaults to `True`.
        seed: An integer seed for the initial weights. Defaults to `None`.
        **kwargs: Base layer arguments such as `name` and `dtype`.

    Call arguments:
        input: One time step, shaped as above.
        hx: `None` (zeros) or the state `h_0`.

    Returns:
        `h'`, the next hidden state.

    Attributes:
        weight_ih: `(3*hidden_size, input_size)`, rows `W_ir|W_iz|W_in`.
        weight_hh: `(3*hidden_size, hidden_size)`.
        bias_ih, bias_hh: `(3*hidden_size,)`, only with `bias=True`.

    All are initialised from `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`.

    Example:

    >>> import numpy as np
    >>> cell = GRUCell(10, 20, seed=0)
    >>> h = None
    >>> for x_t in np.random.rand(6, 3, 10).astype("float32"):  # (L, N, H_in)
    ...     h = cell(x_t, h)
    >>> tuple(h.shape)
    (3, 20)
    """

    cell = cells.GRU

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
