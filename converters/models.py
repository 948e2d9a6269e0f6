"""Keras models around a tflstm layer, with Keras's batch conventions.

Keras's `predict`, `evaluate` and `fit` cut every input into batches along
axis 0 and concatenate every output along axis 0. A time-major layer
(`batch_first=False`, PyTorch's default) has time on axis 0, and `h_n`/`c_n`
have PyTorch's layer-direction axis there, so such a layer's tensors cannot
be a model's inputs or outputs: `model.predict(x)` would cut the sequence into
pieces and stack states of different batches. `keras_model` therefore puts
the batch on axis 0 of every input and output of the model, whatever the
layer's `batch_first`:

- `input`: (N, L, H_in);
- `output`: (N, L, D*H_out);
- `h_n`: (N, D*num_layers, H_out) and `c_n`: (N, D*num_layers, H_cell), the
  states of `layer * D + direction` on axis 1. PyTorch's layout is
  `numpy.transpose(h_n, (1, 0, 2))` (`torch_layout` does it).

A GRU has `h_n` only. For a cell layer the model is one streaming step, as
the SavedModel's `with_state` signature and the `.tflite` are: inputs
`input` (N, H_in), `h_0` and an LSTMCell's `c_0` (N, H), in that order, give
`h_1` (and `c_1`) (N, H), as torch's cell does; feed each step's states back
as the next step's (zeros for the first).
"""

from __future__ import annotations

from typing import Any

import tflstm  # noqa: F401  (before Keras: TensorFlow without the start-up lines)

# isort: split
import keras
import numpy as np

from converters.torch_io import Layer, torch_kind
from tflstm._cell_layer import CellLayer


def keras_model(layer: Layer) -> keras.Model:
    """A batch-major `keras.Model` computing `layer`.

    For an `LSTM` (`GRU`), the model takes `input` and starts from a zero
    state; its outputs are `[output, h_n, c_n]` (`[output, h_n]`; `[output]`
    for one built with `return_state=False`). For an `LSTMCell`, it takes
    `[input, h_0, c_0]` and returns `[h_1, c_1]` (a `GRUCell`: `[input,
    h_0]` and `h_1`): one step of a stream that carries its state.
    The batch is on axis 0 of every input and output (see the module
    docstring), so that `predict`, `evaluate` and `fit` give the numbers of
    one call for any `batch_size`, and Keras's `model.export` takes it.

    >>> import numpy as np
    >>> model = keras_model(tflstm.LSTM(3, 5, num_layers=2, bidirectional=True))
    >>> output, h_n, c_n = model.predict(np.zeros((7, 4, 3)), verbose=0)
    >>> output.shape, h_n.shape, c_n.shape  # (N, L, D*H), (N, D*num_layers, H)
    ((7, 4, 10), (7, 4, 5), (7, 4, 5))
    >>> step = keras_model(tflstm.LSTMCell(3, 5))
    >>> h, c = np.zeros((7, 5)), np.zeros((7, 5))  # the first step's state
    >>> for x_t in np.ones((4, 7, 3)):  # one (N, H_in) input per step
    ...     h, c = step.predict([x_t, h, c], verbose=0)
    >>> h.shape, c.shape
    ((7, 5), (7, 5))
    """
    torch_kind(layer)  # a tflstm layer, or a TypeError
    states = layer.cell.spec.states
    # The layer's variable dtype: a float64 layer takes float64 inputs (Keras's
    # default, float32, would round them first).
    dtype = layer.variable_dtype
    if isinstance(layer, CellLayer):
        inputs = [keras.Input((layer.input_size,), name="input", dtype=dtype)]
        inputs += [
            keras.Input((layer.hidden_size,), name=f"{s}_0", dtype=dtype)
            for s in states
        ]
        result = layer(inputs[0], layer._pack_states(tuple(inputs[1:])))
        result = result if isinstance(result, tuple) else (result,)
        step_names = [f"{s}_1" for s in states]
        return keras.Model(
            inputs,
            _named(result, *step_names, dtype=layer.dtype_policy.name),
            name=f"{layer.name}_model",
        )
    inputs = keras.Input((None, layer.input_size), name="input", dtype=dtype)
    x = inputs if layer.batch_first else keras.ops.transpose(inputs, (1, 0, 2))
    result = layer(x)
    output = result[0] if layer.return_state else result
    if not layer.batch_first:
        output = keras.ops.transpose(output, (1, 0, 2))
    outputs = [output]
    if layer.return_state:
        final = result[1] if isinstance(result[1], tuple) else (result[1],)
        outputs += [keras.ops.transpose(s, (1, 0, 2)) for s in final]
    names = ("output", *(f"{s}_n" for s in states))[: len(outputs)]
    return keras.Model(
        inputs,
        _named(outputs, *names, dtype=layer.dtype_policy.name),
        name=f"{layer.name}_model",
    )


def _named(tensors: Any, *names: str, dtype: Any) -> list:
    """The model's outputs under their PyTorch names (in `evaluate`'s and
    `model.export`'s output names), in the layer's dtype policy (Keras's
    default would cast a float64 layer's outputs to float32)."""
    return [
        keras.layers.Identity(name=name, dtype=dtype)(t)
        for t, name in zip(tensors, names, strict=True)
    ]


def torch_layout(layer: Any, outputs: Any) -> tuple:
    """`keras_model(layer)`'s outputs in the layer's (PyTorch's) layout:
    `(output, (h_n, c_n))` (a GRU's `(output, h_n)`) with the layer's time
    axis and (D*num_layers, N, H) states."""
    output, *final = (np.asarray(t) for t in outputs)
    if not layer.batch_first:
        output = output.transpose(1, 0, 2)
    states = tuple(s.transpose(1, 0, 2) for s in final)
    return output, states if len(states) > 1 else states[0]
