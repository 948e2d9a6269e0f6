"""`tflstm.LSTM`: `torch.nn.LSTM` as a Keras 3 layer."""

from __future__ import annotations

from typing import Any

import keras

from tflstm import cells
from tflstm._recurrent import RecurrentLayer


@keras.saving.register_keras_serializable(package="tflstm")
class LSTM(RecurrentLayer):
    r"""A multi-layer LSTM that computes exactly what `torch.nn.LSTM` computes.

    For each element of the input sequence, each layer computes

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`\sigma` is the sigmoid and :math:`\odot` the elementwise
    product. With `proj_size > 0`, :math:`h_t = W_{hr}(o_t \odot \tanh(c_t))`,
    so that :math:`h_t` has `proj_size` features. The input of layer `l > 0` is
    the output :math:`h_t` of layer `l - 1`, multiplied in training by a
    Bernoulli mask with keep probability `1 - dropout` and scaled by
    `1 / (1 - dropout)`. Gates are stacked in the order (i, f, g, o), as in
    PyTorch; both biases are kept as separate trainable weights.

    Shapes (`D = 2` if `bidirectional` else 1, `H_out = proj_size` if
    `proj_size > 0` else `hidden_size`, `H_cell = hidden_size`):

    - `input`: `(L, N, H_in)`, `(N, L, H_in)` with `batch_first=True`, or
      `(L, H_in)` unbatched.
    - `h_0`, `h_n`: `(D*num_layers, N, H_out)`, or `(D*num_layers, H_out)`
      unbatched. `batch_first` does not apply to the states.
    - `c_0`, `c_n`: `(D*num_layers, N, H_cell)`, or `(D*num_layers, H_cell)`.
    - `output`: `(L, N, D*H_out)` (`(N, L, D*H_out)` with `batch_first=True`,
      `(L, D*H_out)` unbatched); the last axis holds the forward direction
      then the backward one.

    `h_n[layer * D + direction]` is the final state of that layer and
    direction. For a bidirectional LSTM, `h_n` is not `output[-1]`: the
    backward direction's final state is at `output[0]`, its second half.

    Keras's `predict`, `evaluate` and `fit` cut every model input into
    batches along axis 0, so a time-major layer (`batch_first=False`) called
    on a model input (`keras.Input`) raises a `ValueError` when the model is
    built, as do `hx` and a time-major `mask` taken straight from one: use
    `batch_first=True`, transpose inside the model, or
    `converters.keras_model(layer)`, which transposes at the model's boundary.

    Args:
        input_size: The number of features `H_in` of the input. Must be a
            positive integer.
        hidden_size: The number of features `H_cell` of the cell state. Must be
            a positive integer.
        num_layers: The number of stacked LSTM layers. Defaults to `1`.
        bias: Whether to use the biases `b_ih` and `b_hh`. Defaults to `True`.
        batch_first: Whether `input` and `output` are `(N, L, H)` instead of
            `(L, N, H)`. Defaults to `False`.
        dropout: The dropout probability applied in training to the output of
            every layer except the last. Defaults to `0.0`.
        bidirectional: Whether each layer also runs backward in time. Defaults
            to `False`.
        proj_size: If `> 0`, the size `H_out` of the projection of `h_t`; must
            be smaller than `hidden_size`. Defaults to `0` (no projection).
        return_state: Keyword-only. Whether the call returns
            `(output, (h_n, c_n))`, as torch does, or only `output`, which lets
            the layer sit inside `keras.Sequential`. Defaults to `True`.
        kernel: Keyword-only. Which kernel runs the recurrence: `"auto"`
            (default) chooses by measurement for the CPU and oneDNN setting,
            and always a portable one (a plain TensorFlow loop) inside XLA
            and in exports; `"loop"` a `tf.while_loop` of TensorFlow ops;
            `"block"` TensorFlow's fused `BlockLSTMV2` op (inference only; no
            projection, `sequence_lengths` or float64; not under XLA, not a
            TFLite builtin); `"xla"` the loop compiled by XLA on its own
            (once per input shape, about 1-2 s each on CPU: best with fixed
            or bucketed lengths). Same tolerances for all. Inside a model
            compiled with `jit_compile=True` every choice but `"block"`
            runs as part of the model's XLA computation.
        use_cudnn: Keyword-only. As in `keras.layers.LSTM`: `"auto"`
            (default) runs cuDNN's LSTM when a GPU is visible (and the
            device scope is not a CPU), the layer has no projection and no
            other `kernel` was asked for; `True` requires cuDNN (an error
            where it cannot serve); `False` never uses it. Exports never
            contain cuDNN ops unless `use_cudnn=True`.
        seed: Keyword-only. An integer seed for the initial weights and the
            dropout masks.
            Defaults to `None` (Keras's global seed, see
            `keras.utils.set_random_seed`).
        **kwargs: Base layer arguments such as `name` and `dtype`.

    Call arguments:
        input: The input sequence, shaped as above.
        hx: `None` (zeros) or a tuple `(h_0, c_0)` of the initial states.
        training: Whether dropout is applied (Keras sets it in `fit`). It
            also chooses the gradient: training saves the gates for a
            hand-written gradient whose float32 error stays at torch's level
            on long sequences (or runs cuDNN on a GPU); inference stores
            nothing for a gradient (gradients through it are still correct,
            and within 1e-5 of torch on the test grid).
        sequence_lengths: `None`, or the length of each sequence of a
            right-padded batch, integers `(N,)` in `[1, L]` (a scalar for
            unbatched input): PyTorch's `pack_padded_sequence(input, lengths,
            enforce_sorted=False)` -> LSTM -> `pad_packed_sequence`. Past its
            length a sequence's `output` is 0, its `h_n`, `c_n` are those of
            its last valid step, the backward direction starts at that step,
            and the padding is never read.
        mask: A Keras mask, boolean, laid out as the input's leading axes
            (`(L, N)`, `(N, L)` with `batch_first=True`, `(L,)` unbatched);
            Keras passes it from `Embedding(mask_zero=True)` or `Masking`.
            It must be right-padded (True, then False); it gives the lengths
            when `sequence_lengths` is not given. `output` keeps the mask.

    Returns:
        `(output, (h_n, c_n))`, shaped as above; only `output` with
        `return_state=False`.

    Attributes:
        weight_ih_l{k}: `(4*hidden_size, H_in)` for `k = 0`, else
            `(4*hidden_size, D*H_out)`; the rows are `W_ii|W_if|W_ig|W_io`.
        weight_hh_l{k}: `(4*hidden_size, H_out)`.
        bias_ih_l{k}, bias_hh_l{k}: `(4*hidden_size,)`, only with `bias=True`.
        weight_hr_l{k}: `(proj_size, hidden_size)`, only with `proj_size > 0`.

    The backward direction's weights end in `_reverse`. All are initialised
    from `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`.

    Example:

    >>> import numpy as np
    >>> lstm = LSTM(10, 20, num_layers=2, bidirectional=True, seed=0)
    >>> x = np.random.rand(5, 3, 10).astype("float32")  # (L, N, H_in)
    >>> output, (h_n, c_n) = lstm(x)
    >>> tuple(output.shape), tuple(h_n.shape), tuple(c_n.shape)
    ((5, 3, 40), (4, 3, 20), (4, 3, 20))
    >>> tuple(lstm.weight_ih_l1_reverse.shape)
    (80, 40)
    """

    cell = cells.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        return_state: bool = True,
        seed: int | None = None,
        kernel: str = "auto",
        use_cudnn: str | bool = "auto",
        **kwargs: Any,
    ) -> None:
        self._init_recurrent(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            return_state=return_state,
            seed=seed,
            kernel=kernel,
            use_cudnn=use_cudnn,
            **kwargs,
        )
