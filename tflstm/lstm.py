"""`tflstm.LSTM`: `torch.nn.LSTM` as a Keras 3 layer."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import keras
import tensorflow as tf

from _tflstm.params import lstm_param_name, lstm_param_shapes
from tflstm import _errors
from tflstm._init import FromWeights, create_weights
from tflstm._ops import (
    LSTMWeights,
    dims,
    stack_weights,
    time_major_mask,
    valid_steps,
)
from tflstm.kernels import policy, probes, run_kernel

_STATE_LEGEND_H = "(D*num_layers, N, H_out)"
_STATE_LEGEND_C = "(D*num_layers, N, H_cell)"


@keras.saving.register_keras_serializable(package="tflstm")
class LSTM(FromWeights, keras.layers.Layer):
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
        _errors.check_backend()
        self.return_state = _errors.check_bool("return_state", return_state)
        self.kernel = _errors.check_choice("kernel", kernel, policy.KERNEL_OPTIONS)
        self.use_cudnn = _errors.check_choice(
            "use_cudnn", use_cudnn, policy.CUDNN_OPTIONS
        )
        self.input_size = _errors.check_int("input_size", input_size, minimum=1)
        self.hidden_size = _errors.check_int("hidden_size", hidden_size, minimum=1)
        self.num_layers = _errors.check_int("num_layers", num_layers, minimum=1)
        self.bias = _errors.check_bool("bias", bias)
        self.batch_first = _errors.check_bool("batch_first", batch_first)
        self.dropout = _errors.check_dropout(dropout)
        self.bidirectional = _errors.check_bool("bidirectional", bidirectional)
        self.proj_size = _errors.check_int("proj_size", proj_size, minimum=0)
        _errors.check_proj_size(self.proj_size, self.hidden_size)
        if seed is not None:
            _errors.check_int("seed", seed, minimum=0)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, "
                "so non-zero dropout expects num_layers greater than 1, but got "
                f"dropout={dropout} and num_layers={num_layers}",
                UserWarning,
                stacklevel=2,
            )
        super().__init__(**kwargs)
        self.seed = seed
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.proj_size or self.hidden_size

        # The weights do not depend on the input's shape: create them now, as
        # torch does, so that they can be assigned before the first call.
        shapes = lstm_param_shapes(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            self.bias,
            self.bidirectional,
            self.proj_size,
        )
        create_weights(self, shapes, self.hidden_size, seed)
        if self.dropout > 0:
            self.seed_generator = keras.random.SeedGenerator(seed)
        self._build_at_init()
        # Read by Keras's `jit_compile="auto"`, as for keras.layers.LSTM.
        self.supports_jit = policy.supports_jit(
            kernel=self.kernel, use_cudnn=self.use_cudnn, projection=self.proj_size > 0
        )

    # -- layout at a model's boundary ----------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Before Keras's own __call__, which may cast the input (mixed
        # precision) into a tensor that no longer shows where it came from.
        self._check_layouts_of_model_inputs(args, kwargs)
        return super().__call__(*args, **kwargs)

    def _check_layouts_of_model_inputs(self, args: tuple, kwargs: dict) -> None:
        """Refuses a Keras model input where the layer reads something other
        than the batch on axis 0: Keras's `predict`, `evaluate` and `fit` cut
        every model input into batches along axis 0, so they would cut the
        sequences along time (a time-major `input` or `mask`) or the states
        along their layer-direction axis (`h_0`, `c_0`, whatever
        `batch_first`)."""
        flat = keras.tree.flatten((args, kwargs))
        if not any(isinstance(t, keras.KerasTensor) for t in flat):
            return  # eager or inside a traced function: nothing to check
        try:
            arguments = inspect.signature(self.call).bind(*args, **kwargs).arguments
        except TypeError:
            return  # a wrong call: Keras's own error says what is wrong
        input = arguments.get("input")
        if len(getattr(input, "shape", ())) != 3:
            return  # unbatched (or not a tensor: the shape checks say so)
        time_major = "a time-major tflstm.LSTM (batch_first=False)"
        checks = []  # (name, tensor, layout, axis 0 instead of the batch, fix)
        if not self.batch_first:
            checks += [
                (
                    "input",
                    input,
                    f"(L, N, H_in), as {time_major} reads it",
                    "time",
                    "Use batch_first=True for an (N, L, H_in) input, or "
                    "converters.keras_model(layer), which transposes at the "
                    "model's boundary (or keras.ops.transpose(x, (1, 0, 2)) "
                    "inside the model).",
                ),
                (
                    "mask",
                    arguments.get("mask"),
                    f"(L, N), as {time_major} reads it",
                    "time",
                    "Use batch_first=True for an (N, L) mask and input, or "
                    "keras.ops.transpose(mask) inside the model.",
                ),
            ]
        hx = arguments.get("hx")
        if isinstance(hx, (tuple, list)) and len(hx) == 2:
            for name, value, legend, size in (
                ("h_0", hx[0], _STATE_LEGEND_H, "H_out"),
                ("c_0", hx[1], _STATE_LEGEND_C, "H_cell"),
            ):
                checks.append(
                    (
                        name,
                        value,
                        f"{legend}, as torch's states are, whatever batch_first",
                        "its layer-direction axis",
                        f"Take it as a batch-major (N, D*num_layers, {size}) "
                        "model input and transpose it inside the model: "
                        f"keras.ops.transpose({name}, (1, 0, 2)).",
                    )
                )
        for name, tensor, layout, axis, fix in checks:
            source = probes.model_input_layer(tensor)
            if source is not None:
                raise ValueError(
                    f"Expected `{name}` laid out {layout}, not a Keras model "
                    "input: Keras's predict, evaluate and fit cut every model "
                    "input into batches along axis 0, so they would cut this "
                    f"one along {axis}. {fix} Received: {name}=the model input "
                    f"{source.name!r} of shape {tuple(source.batch_shape)}"
                )

    # -- shapes ---------------------------------------------------------------

    def _check_inputs(self, input: Any, hx: Any) -> bool:
        """Validates the call's shapes with torch's rules; returns `is_batched`."""
        _errors.check_floating("input", input.dtype)
        input_shape = tuple(input.shape)
        _errors.check_rank("input", input_shape, {3: "batched", 2: "unbatched"})
        batched = len(input_shape) == 3
        time_axis = 1 if batched and self.batch_first else 0
        _errors.check_sequence_length("input", input_shape, time_axis)
        _errors.check_features("input", input_shape, self.input_size, "input_size")
        if hx is None:
            return batched
        _errors.check_state_pair("hx", hx)
        n_states = self.num_directions * self.num_layers
        batch = (input_shape[0 if self.batch_first else 1],) if batched else ()
        for name, value, size, legend in (
            ("h_0", hx[0], self.output_size, _STATE_LEGEND_H),
            ("c_0", hx[1], self.hidden_size, _STATE_LEGEND_C),
        ):
            if not batched:
                legend = legend.replace("N, ", "")
            expected = (n_states, *batch, size)
            _errors.check_shape(name, tuple(value.shape), expected, legend)
        return batched

    def _output_shapes(self, input_shape: tuple) -> tuple[tuple, tuple, tuple]:
        *lead, _ = input_shape
        n_states = self.num_directions * self.num_layers
        batch = (lead[0 if self.batch_first else 1],) if len(lead) == 2 else ()
        return (
            (*lead, self.num_directions * self.output_size),
            (n_states, *batch, self.output_size),
            (n_states, *batch, self.hidden_size),
        )

    def compute_output_shape(self, input_shape: tuple, hx_shape: Any = None) -> tuple:
        output, h_n, c_n = self._output_shapes(tuple(input_shape))
        return (output, (h_n, c_n)) if self.return_state else output

    def compute_output_spec(
        self,
        input: Any,
        hx: Any = None,
        training: bool | None = None,
        sequence_lengths: Any = None,
        mask: Any = None,
    ) -> tuple:
        batched = self._check_inputs(input, hx)
        self._check_lengths(input, batched, sequence_lengths, mask)
        shapes = self.compute_output_shape(tuple(input.shape))
        return keras.tree.map_shape_structure(
            lambda shape: keras.KerasTensor(shape, self.compute_dtype), shapes
        )

    def compute_mask(self, input: Any, previous_mask: Any = None) -> Any:
        # `output` keeps the input's mask (padded steps are 0); states have none.
        if previous_mask is None:
            return None
        return (previous_mask, (None, None)) if self.return_state else previous_mask

    def _check_lengths(
        self, input: Any, batched: bool, sequence_lengths: Any, mask: Any
    ) -> None:
        """Static checks of `sequence_lengths` or `mask` (dtype and shape)."""
        shape = tuple(input.shape)
        steps = shape[1 if batched and self.batch_first else 0]
        batch = shape[0 if self.batch_first else 1] if batched else None
        if sequence_lengths is not None:
            _errors.check_integer_dtype("sequence_lengths", sequence_lengths.dtype)
            lengths_shape = tuple(sequence_lengths.shape)
            if batched:
                _errors.check_shape("sequence_lengths", lengths_shape, (batch,), "(N,)")
            elif lengths_shape not in ((), (1,)):
                _errors.check_shape("sequence_lengths", lengths_shape, (), "()")
        elif mask is not None:
            expected: tuple = (steps,)
            legend = "(L,)"
            if batched:
                expected = (batch, steps) if self.batch_first else (steps, batch)
                legend = "(N, L)" if self.batch_first else "(L, N)"
            _errors.check_shape("mask", tuple(mask.shape), expected, legend)

    def _lengths(
        self, x: tf.Tensor, batched: bool, sequence_lengths: Any, mask: Any
    ) -> tuple[tf.Tensor | None, list]:
        """The int32 lengths (N,) for time-major `x`, and run-time checks.

        Concrete values are checked here (a ValueError before any work); in a
        graph, the checks are assertions that run before the LSTM.
        """
        if sequence_lengths is None and mask is None:
            return None, []
        steps = dims(x)[0]
        if sequence_lengths is not None:
            lengths = tf.reshape(tf.cast(sequence_lengths, tf.int32), [-1])
            source = "sequence_lengths"
            padded_ok = None
        else:
            # int32, not bool: oneDNN's transpose of a bool tensor logs an
            # error line on CPUs without AVX-512.
            mask = tf.cast(mask, tf.int32)
            mask = tf.reshape(mask, [-1, 1]) if not batched else mask
            if batched and self.batch_first:
                mask = tf.transpose(mask)  # (L, N)
            mask = tf.cast(mask, tf.bool)
            lengths = tf.reduce_sum(tf.cast(mask, tf.int32), 0)
            padded_ok = tf.reduce_all(tf.equal(mask, time_major_mask(lengths, steps)))
            source = "mask"
        if tf.executing_eagerly():
            unpadded = ()
            if padded_ok is not None and not bool(padded_ok):
                right = time_major_mask(lengths, steps)
                rows = tf.reduce_any(tf.not_equal(mask, right), axis=0)
                unpadded = tf.where(rows)[:, 0].numpy().tolist()
            _errors.check_length_values(source, lengths.numpy(), int(steps), unpadded)
            return lengths, []
        checks = [
            tf.debugging.assert_greater_equal(
                lengths, 1, message=_errors.LENGTHS_MESSAGE.format(source)
            ),
            tf.debugging.assert_less_equal(
                lengths, steps, message=_errors.LENGTHS_MESSAGE.format(source)
            ),
        ]
        if padded_ok is not None:
            checks.append(
                tf.debugging.Assert(padded_ok, [_errors.MASK_PADDING_MESSAGE])
            )
        return lengths, checks

    # -- computation ----------------------------------------------------------

    def layer_weights(self, layer: int, stack: Any = tf.stack) -> LSTMWeights:
        """Layer `layer`'s weights, both directions stacked on a leading axis
        (with `stack=numpy.stack` and numpy values: constants for exports)."""

        def get(name: str) -> Any:
            variable = getattr(self, name)
            return variable.value if stack is tf.stack else variable.numpy()

        return stack_weights(
            get,
            lambda kind, d: lstm_param_name(kind, layer, d),
            self.num_directions,
            bias=self.bias,
            projection=self.proj_size > 0,
            stack=stack,
        )

    def call(
        self,
        input: Any,
        hx: Any = None,
        training: bool | None = None,
        sequence_lengths: Any = None,
        mask: Any = None,
    ) -> tf.Tensor | tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        result = self.forward(input, hx, training, sequence_lengths, mask)
        return result if self.return_state else result[0]

    def forward(
        self,
        input: Any,
        hx: Any = None,
        training: bool | None = None,
        sequence_lengths: Any = None,
        mask: Any = None,
        *,
        export: str = "",
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, tf.Tensor]]:
        """`call`'s computation, always returning `(output, (h_n, c_n))`
        whatever `return_state` (what the exporters use). `export`: the
        export being traced ("saved_model", "litert"), which runs portable
        kernels only (no cuDNN, no BlockLSTMV2) unless asked for by name."""
        batched = self._check_inputs(input, hx)
        if sequence_lengths is not None:
            sequence_lengths = tf.convert_to_tensor(sequence_lengths)
        self._check_lengths(input, batched, sequence_lengths, mask)
        x = tf.cast(input, self.variable_dtype)
        if not batched:
            x = x[:, None]
        elif self.batch_first:
            x = tf.transpose(x, [1, 0, 2])
        checks = []
        if not (tf.executing_eagerly() or x.shape[0] is not None):
            # unknown length: torch's "no empty sequence" rule at run time
            checks.append(
                tf.debugging.assert_positive(
                    tf.shape(x)[0], message="Expected a sequence length of at least 1."
                )
            )
        lengths, length_checks = self._lengths(x, batched, sequence_lengths, mask)
        checks += length_checks
        if checks:  # data dependencies: a control dependency of a function call
            # does not hold back the ops of its body once TensorFlow inlines it
            with tf.control_dependencies(checks):
                x = tf.identity(x)
                lengths = None if lengths is None else tf.identity(lengths)
        if lengths is not None:  # padding never reaches the math (even NaN)
            x = tf.where(valid_steps(lengths, dims(x)[0]), x, tf.zeros_like(x))

        n_states = self.num_directions * self.num_layers
        if hx is None:
            batch = dims(x)[1]  # static when known (a fixed batch for TFLite)
            h0 = tf.zeros([n_states, batch, self.output_size], x.dtype)
            c0 = tf.zeros([n_states, batch, self.hidden_size], x.dtype)
        else:
            h0, c0 = (tf.cast(s, x.dtype) for s in hx)
            if not batched:
                h0, c0 = h0[:, None], c0[:, None]

        h_n, c_n = [], []
        facts = self._kernel_facts(x, bool(training), lengths, export)
        kernel, inline = policy.choose_kernel(facts), policy.inline(facts)
        for layer in range(self.num_layers):
            states = slice(
                layer * self.num_directions, (layer + 1) * self.num_directions
            )
            x, h, c = run_kernel(
                kernel,
                x,
                h0[states],
                c0[states],
                self.layer_weights(layer),
                lengths,
                inline=inline,
                xla=facts.in_xla,
            )
            x.set_shape([None, None, self.num_directions * self.output_size])
            h_n.append(h)
            c_n.append(c)
            if training and self.dropout > 0 and layer < self.num_layers - 1:
                x = self._dropout(x)
        h_n, c_n = tf.concat(h_n, 0), tf.concat(c_n, 0)

        x, h_n, c_n = (tf.cast(t, self.compute_dtype) for t in (x, h_n, c_n))
        if not batched:
            x, h_n, c_n = x[:, 0], h_n[:, 0], c_n[:, 0]
        elif self.batch_first:
            x = tf.transpose(x, [1, 0, 2])
        return x, (h_n, c_n)

    def _kernel_facts(
        self, x: tf.Tensor, training: bool, lengths: tf.Tensor | None, export: str
    ) -> policy.KernelFacts:
        """`x`: the time-major input (L, N, H_in)."""
        return policy.gather_facts(
            training=training,
            dtype=x.dtype.name,
            projection=self.proj_size > 0,
            lengths=lengths is not None,
            hidden_size=self.hidden_size,
            batch=x.shape[1],
            kernel=self.kernel,
            use_cudnn=self.use_cudnn,
            exporting=export,
        )

    def _dropout(self, x: tf.Tensor) -> tf.Tensor:
        if self.dropout == 1.0:  # torch zeroes everything; Keras would divide by 0
            return tf.zeros_like(x)
        return keras.random.dropout(x, self.dropout, seed=self.seed_generator)

    # -- serialisation --------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        config = {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "proj_size": self.proj_size,
            "return_state": self.return_state,
            "seed": self.seed,
            "kernel": self.kernel,
            "use_cudnn": self.use_cudnn,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LSTM:
        return cls(**config)
