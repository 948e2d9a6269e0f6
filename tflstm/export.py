"""Export for serving: TensorFlow SavedModel (what TF Serving loads).

`export_saved_model(layer, path)` writes a SavedModel with two signatures,
both with dynamic batch size and sequence length:

- `serving_default`: `input` -> `output`, `h_n`, `c_n` (zero initial state);
- `with_state`: `input`, `h_0`, `c_0` -> `output`, `h_n`, `c_n`.

(A GRU has `h` only: `h_0` -> `h_n`. A cell layer: `input`, `h_0` (`c_0`)
-> `h_1` (`c_1`).)

With `sequence_lengths=True` (multi-layer layers only) both signatures also
take `sequence_lengths`, int32 `(N,)`: PyTorch's packed-sequence semantics
for right-padded batches (see `tflstm.LSTM`).

`with_state` is also the streaming mode: feed a sequence chunk by chunk, each
call taking the `h_n`, `c_n` of the previous one; for a unidirectional LSTM
this equals running the whole sequence at once. (A bidirectional LSTM needs
the whole sequence: its backward direction starts at the end.)

The SavedModel needs neither tflstm nor Keras to load: `tf.saved_model.load`
and `saved_model_cli` see plain TensorFlow functions. Models that contain
tflstm layers also export with Keras's own `model.export(path)`, provided the
model's outputs are tensors or a flat list of them (Keras's rule).
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from tflstm import _errors
from tflstm._cell_layer import CellLayer
from tflstm._quiet import without_info_logs
from tflstm._recurrent import RecurrentLayer

Layer = RecurrentLayer | CellLayer


def serving_specs(layer: Layer) -> dict[str, tf.TensorSpec]:
    """The `TensorSpec`s of `input`, the initial states (`h_0`, and an LSTM's
    `c_0`) and, for a multi-layer one, `sequence_lengths` (dynamic batch and
    length)."""
    dtype = layer.compute_dtype
    states = layer.cell.spec.states
    if isinstance(layer, CellLayer):
        return {
            "input": tf.TensorSpec([None, layer.input_size], dtype, name="input"),
            **{
                f"{s}_0": tf.TensorSpec([None, layer.hidden_size], dtype, name=f"{s}_0")
                for s in states
            },
        }
    n_states = layer.num_directions * layer.num_layers
    return {
        "input": tf.TensorSpec([None, None, layer.input_size], dtype, name="input"),
        **{
            f"{s}_0": tf.TensorSpec([n_states, None, size], dtype, name=f"{s}_0")
            for s, size in zip(states, layer.state_sizes, strict=True)
        },
        "sequence_lengths": tf.TensorSpec([None], tf.int32, name="sequence_lengths"),
    }


class ServingModule(tf.Module):
    """A `tf.Module` holding a tflstm layer and its two serving functions."""

    def __init__(self, layer: Layer, *, sequence_lengths: bool = False) -> None:
        if not isinstance(layer, (RecurrentLayer, CellLayer)):
            raise TypeError(
                "Expected a tflstm layer (tflstm.LSTM, GRU, RNN or their cells). "
                f"Received: an object of type {type(layer).__name__}"
            )
        _errors.check_bool("sequence_lengths", sequence_lengths)
        if sequence_lengths and isinstance(layer, CellLayer):
            raise ValueError(
                "Expected a multi-layer tflstm.LSTM, GRU or RNN for "
                "`sequence_lengths=True` (a cell runs one step). Received: a "
                f"tflstm.{type(layer).__name__}"
            )
        super().__init__(name=f"{layer.name}_serving")
        self.layer = layer
        self.states = layer.cell.spec.states
        specs = serving_specs(layer)
        states = [specs[f"{s}_0"] for s in self.states]
        lengths = [specs["sequence_lengths"]] if sequence_lengths else []
        # autograph=False: the layer's code is plain TensorFlow (its loops are
        # tf.while_loop already); converting it only slows every trace.
        self.serve = tf.function(
            self._serve, input_signature=[specs["input"], *lengths], autograph=False
        )
        self.serve_with_state = tf.function(
            self._serve_with_state,
            input_signature=[specs["input"], *states, *lengths],
            autograph=False,
        )
        self.sequence_lengths = sequence_lengths

    def _run(
        self, input: tf.Tensor, start: tuple, lengths: Any
    ) -> dict[str, tf.Tensor]:
        """The outputs by name: `output` and `{state}_n`, or a cell's `{state}_1`."""
        if isinstance(self.layer, CellLayer):
            final = self.layer.step(
                input, self.layer._pack_states(start) if start else None
            )
            return {f"{s}_1": v for s, v in zip(self.states, final, strict=True)}
        hx = self.layer._pack_states(start) if start else None
        # Traced for the SavedModel: portable kernels only.
        output, final = self.layer.forward(
            input, hx, training=False, sequence_lengths=lengths, export="saved_model"
        )
        named = {f"{s}_n": v for s, v in zip(self.states, final, strict=True)}
        return {"output": output, **named}

    def _serve(self, input: tf.Tensor, *lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._run(input, (), lengths[0] if lengths else None)

    def _serve_with_state(
        self, input: tf.Tensor, *args: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        count = len(self.states)
        lengths = args[count] if len(args) > count else None
        return self._run(input, tuple(args[:count]), lengths)

    def signatures(self) -> dict[str, Any]:
        return {"serving_default": self.serve, "with_state": self.serve_with_state}


def export_saved_model(
    layer: Layer,
    path: str | os.PathLike,
    *,
    sequence_lengths: bool = False,
) -> None:
    """Writes `layer` as a SavedModel with the `serving_default` and
    `with_state` signatures (see the module docstring); with
    `sequence_lengths=True`, both also take `sequence_lengths`.

    >>> import tempfile, numpy as np, tensorflow as tf
    >>> from tflstm import LSTM
    >>> path = tempfile.mkdtemp()
    >>> export_saved_model(LSTM(3, 5, num_layers=2), path)
    >>> served = tf.saved_model.load(path).signatures["serving_default"]
    >>> out = served(input=tf.zeros([7, 2, 3]))  # (L, N, H_in), time-major
    >>> sorted((k, tuple(v.shape)) for k, v in out.items())
    [('c_n', (2, 2, 5)), ('h_n', (2, 2, 5)), ('output', (7, 2, 5))]
    """
    module = ServingModule(layer, sequence_lengths=sequence_lengths)
    with without_info_logs():
        tf.saved_model.save(module, os.fspath(path), signatures=module.signatures())
