"""`tflstm.RNN` and `tflstm.RNNCell`: `torch.nn.RNN` and `nn.RNNCell` (tanh
or relu) as Keras 3 layers."""

from __future__ import annotations

from typing import Any

import keras

from _tflstm.cells import RNN as SPEC
from tflstm import _errors, cells
from tflstm._cell_layer import CellLayer
from tflstm._recurrent import RecurrentLayer
from tflstm.kernels import policy


@keras.saving.register_keras_serializable(package="tflstm")
class RNN(RecurrentLayer):
    r"""A multi-layer Elman RNN that computes exactly what `torch.nn.RNN`
    computes.

    For each element of the input sequence, each layer computes

    .. math::
        h_t = \mathrm{act}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    where `act` is tanh or relu (`nonlinearity`). The input of layer `l > 0`
    is the output of layer `l - 1`, multiplied in training by a Bernoulli
    mask with keep probability `1 - dropout` and scaled by
    `1 / (1 - dropout)`.

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
        num_layers: The number of stacked RNN layers. Defaults to `1`.
        nonlinearity: `"tanh"` (default) or `"relu"`.
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
            `tflstm.LSTM` (an RNN has no `"block"` kernel).
        use_cudnn: Keyword-only. `"auto"` (default) runs cuDNN's RNN (its
            `rnn_tanh` or `rnn_relu` mode) when a GPU is visible; `True`
            requires it; `False` never uses it.
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
        weight_ih_l{k}: `(hidden_size, H_in)` for `k = 0`, else
            `(hidden_size, D*hidden_size)`.
        weight_hh_l{k}: `(hidden_size, hidden_size)`.
        bias_ih_l{k}, bias_hh_l{k}: `(hidden_size,)`, only with `bias=True`.

    The backward direction's weights end in `_reverse`. All are initialised
    from `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`.

    Example:

    >>> import numpy as np
    >>> rnn = RNN(10, 20, num_layers=2, nonlinearity="relu", seed=0)
    >>> x = np.random.rand(5, 3, 10).astype("float32")  # (L, N, H_in)
    >>> output, h_n = rnn(x)
    >>> tuple(output.shape), tuple(h_n.shape)
    ((5, 3, 20), (2, 3, 20))
    """

    kernel_options = tuple(k for k in policy.KERNEL_OPTIONS if k != "block")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
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
        self.nonlinearity = _errors.check_nonlinearity(
            nonlinearity, SPEC.nonlinearities
        )
        self.cell = cells.rnn_cell(self.nonlinearity)
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

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "nonlinearity": self.nonlinearity}


@keras.saving.register_keras_serializable(package="tflstm")
class RNNCell(CellLayer):
    r"""One Elman RNN step, exactly as `torch.nn.RNNCell` computes it.

    .. math::
        h' = \mathrm{act}(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    with `act` tanh or relu (`nonlinearity`).

    Shapes: `input` is `(N, H_in)` or `(H_in,)` unbatched; `h_0` and `h'`
    are `(N, H)` or `(H,)` with `H = hidden_size`.

    Args:
        input_size: The number of features `H_in` of the input. Must be a
            positive integer.
        hidden_size: The number of features `H` of the state. Must be a
            positive integer.
        bias: Whether to use the biases `b_ih` and `b_hh`. Defaults to `True`.
        nonlinearity: `"tanh"` (default) or `"relu"`.
        seed: An integer seed for the initial weights. Defaults to `None`.
        **kwargs: Base layer arguments such as `name` and `dtype`.

    Call arguments:
        input: One time step, shaped as above.
        hx: `None` (zeros) or the state `h_0`.

    Returns:
        `h'`, the next hidden state.

    Attributes:
        weight_ih: `(hidden_size, input_size)`.
        weight_hh: `(hidden_size, hidden_size)`.
        bias_ih, bias_hh: `(hidden_size,)`, only with `bias=True`.

    All are initialised from `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`.

    Example:

    >>> import numpy as np
    >>> cell = RNNCell(10, 20, nonlinearity="tanh", seed=0)
    >>> h = None
    >>> for x_t in np.random.rand(6, 3, 10).astype("float32"):  # (L, N, H_in)
    ...     h = cell(x_t, h)
    >>> tuple(h.shape)
    (3, 20)
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.nonlinearity = _errors.check_nonlinearity(
            nonlinearity, SPEC.nonlinearities
        )
        self.cell = cells.rnn_cell(self.nonlinearity)
        self._init_cell(input_size, hidden_size, bias, seed=seed, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "nonlinearity": self.nonlinearity}
