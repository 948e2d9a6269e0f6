"""The multi-layer recurrent layer that `tflstm.LSTM` and `tflstm.GRU` are:
torch's `nn.LSTM` / `nn.GRU` call for any cell definition (`tflstm.cells`).

A concrete class sets `cell` (its definition) and writes its own `__init__`
(torch's signature, then `_init_recurrent`) and docstring; everything else,
from the shape checks to the kernels and `get_config`, is here once.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar

import keras
import tensorflow as tf

from _tflstm.params import layer_param_shapes, param_name
from tflstm import _errors
from tflstm._init import FromWeights, create_weights
from tflstm._ops import Weights, dims, stack_weights, time_major_mask, valid_steps
from tflstm.cells import Cell
from tflstm.kernels import policy, probes, run_kernel


def state_legend(state: str, batched: bool = True) -> str:
    """A state's shape legend, e.g. `(D*num_layers, N, H_out)` for `h`
    (`H_out` = proj_size or hidden_size; `H_cell` = hidden_size)."""
    size = "H_out" if state == "h" else "H_cell"
    return f"(D*num_layers, N, {size})" if batched else f"(D*num_layers, {size})"


class RecurrentLayer(FromWeights, keras.layers.Layer):
    """The base of `tflstm.LSTM` and `tflstm.GRU` (see their docstrings)."""

    # The cell definition: a class attribute, or set per instance before
    # `_init_*` (an RNN's depends on its nonlinearity).
    cell: Cell
    # The `kernel=` choices this cell has (`kernel="block"` is an LSTM's).
    kernel_options: ClassVar[tuple[str, ...]] = policy.KERNEL_OPTIONS

    def _init_recurrent(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        proj_size: int,
        *,
        return_state: bool,
        seed: int | None,
        kernel: str,
        use_cudnn: str | bool,
        **kwargs: Any,
    ) -> None:
        """Checks torch's arguments and creates the weights (what every
        concrete class's `__init__` does)."""
        _errors.check_backend()
        self.return_state = _errors.check_bool("return_state", return_state)
        self.kernel = _errors.check_choice("kernel", kernel, self.kernel_options)
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
                stacklevel=3,
            )
        super().__init__(**kwargs)
        self.seed = seed
        self.num_directions = 2 if self.bidirectional else 1
        self.output_size = self.proj_size or self.hidden_size
        self.state_sizes = self.cell.state_sizes(self.hidden_size, self.output_size)

        # The weights do not depend on the input's shape: create them now, as
        # torch does, so that they can be assigned before the first call.
        shapes = layer_param_shapes(
            self.cell.spec,
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

    # -- torch's state structure ------------------------------------------------

    def _states_of(self, hx: Any) -> tuple:
        """`hx` as a tuple of states (`(h_0, c_0)`, `(h_0,)`); checked."""
        _errors.check_states("hx", hx, self.cell.spec.states)
        return tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)

    def _pack_states(self, states: tuple) -> Any:
        """The states as torch returns them: `(h_n, c_n)`, or `h_n` alone."""
        return states if len(states) > 1 else states[0]

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
        time_major = f"a time-major tflstm.{type(self).__name__} (batch_first=False)"
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
        names = self.cell.spec.states
        hx = (hx,) if len(names) == 1 else hx
        if isinstance(hx, (tuple, list)) and len(hx) == len(names):
            for state, value in zip(names, hx, strict=True):
                name, legend = f"{state}_0", state_legend(state)
                size = "H_out" if state == "h" else "H_cell"
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
        hx = self._states_of(hx)
        n_states = self.num_directions * self.num_layers
        batch = (input_shape[0 if self.batch_first else 1],) if batched else ()
        for state, value, size in zip(
            self.cell.spec.states, hx, self.state_sizes, strict=True
        ):
            expected = (n_states, *batch, size)
            legend = state_legend(state, batched)
            _errors.check_shape(f"{state}_0", tuple(value.shape), expected, legend)
        return batched

    def _output_shapes(self, input_shape: tuple) -> tuple[tuple, tuple]:
        """The output's shape and each final state's."""
        *lead, _ = input_shape
        n_states = self.num_directions * self.num_layers
        batch = (lead[0 if self.batch_first else 1],) if len(lead) == 2 else ()
        return (
            (*lead, self.num_directions * self.output_size),
            tuple((n_states, *batch, size) for size in self.state_sizes),
        )

    def compute_output_shape(self, input_shape: tuple, hx_shape: Any = None) -> Any:
        output, states = self._output_shapes(tuple(input_shape))
        return (output, self._pack_states(states)) if self.return_state else output

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
        if not self.return_state:
            return previous_mask
        return previous_mask, self._pack_states((None,) * len(self.state_sizes))

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
        graph, the checks are assertions that run before the recurrence.
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

    def layer_weights(self, layer: int, stack: Any = tf.stack) -> Weights:
        """Layer `layer`'s weights, both directions stacked on a leading axis
        (with `stack=numpy.stack` and numpy values: constants for exports)."""

        def get(name: str) -> Any:
            variable = getattr(self, name)
            return variable.value if stack is tf.stack else variable.numpy()

        return stack_weights(
            self.cell,
            get,
            lambda kind, d: param_name(kind, layer, d),
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
    ) -> Any:
        output, states = self.forward(input, hx, training, sequence_lengths, mask)
        return (output, self._pack_states(states)) if self.return_state else output

    def forward(
        self,
        input: Any,
        hx: Any = None,
        training: bool | None = None,
        sequence_lengths: Any = None,
        mask: Any = None,
        *,
        export: str = "",
    ) -> tuple[tf.Tensor, tuple[tf.Tensor, ...]]:
        """`call`'s computation, always returning `(output, states)` whatever
        `return_state`, the final states as a tuple (`(h_n, c_n)`, `(h_n,)`;
        what the exporters use). `export`: the
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
            start = tuple(
                tf.zeros([n_states, batch, size], x.dtype) for size in self.state_sizes
            )
        else:
            start = tuple(tf.cast(s, x.dtype) for s in self._states_of(hx))
            if not batched:
                start = tuple(s[:, None] for s in start)

        finals = []
        facts = self._kernel_facts(x, bool(training), lengths, export)
        kernel, inline = policy.choose_kernel(facts), policy.inline(facts)
        for layer in range(self.num_layers):
            rows = slice(layer * self.num_directions, (layer + 1) * self.num_directions)
            x, final = run_kernel(
                kernel,
                self.cell,
                x,
                tuple(s[rows] for s in start),
                self.layer_weights(layer),
                lengths,
                inline=inline,
                xla=facts.in_xla,
            )
            x.set_shape([None, None, self.num_directions * self.output_size])
            finals.append(final)
            if training and self.dropout > 0 and layer < self.num_layers - 1:
                x = self._dropout(x)
        states = tuple(tf.concat(s, 0) for s in zip(*finals, strict=True))

        x = tf.cast(x, self.compute_dtype)
        states = tuple(tf.cast(s, self.compute_dtype) for s in states)
        if not batched:
            x, states = x[:, 0], tuple(s[:, 0] for s in states)
        elif self.batch_first:
            x = tf.transpose(x, [1, 0, 2])
        return x, states

    def _kernel_facts(
        self, x: tf.Tensor, training: bool, lengths: tf.Tensor | None, export: str
    ) -> policy.KernelFacts:
        """`x`: the time-major input (L, N, H_in)."""
        return policy.gather_facts(
            cell=self.cell.spec.kind,
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
            **({"proj_size": self.proj_size} if self.cell.spec.projection else {}),
            "return_state": self.return_state,
            "seed": self.seed,
            "kernel": self.kernel,
            "use_cudnn": self.use_cudnn,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RecurrentLayer:
        return cls(**config)
