"""Export for serving: TensorFlow SavedModel (what TF Serving loads).

`export_saved_model(layer, path)` writes a SavedModel with two signatures,
both with dynamic batch size and sequence length:

- `serving_default`: `input` -> `output`, `h_n`, `c_n` (zero initial state);
- `with_state`: `input`, `h_0`, `c_0` -> `output`, `h_n`, `c_n`.

With `sequence_lengths=True` (LSTM only) both signatures also take
`sequence_lengths`, int32 `(N,)`: PyTorch's packed-sequence semantics for
right-padded batches (see `tflstm.LSTM`).

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
from tflstm._quiet import without_info_logs
from tflstm.lstm import LSTM
from tflstm.lstm_cell import LSTMCell


def serving_specs(layer: LSTM | LSTMCell) -> dict[str, tf.TensorSpec]:
    """The `TensorSpec`s of `input`, `h_0`, `c_0` and, for an LSTM,
    `sequence_lengths` (dynamic batch and length)."""
    dtype = layer.compute_dtype
    if isinstance(layer, LSTMCell):
        return {
            "input": tf.TensorSpec([None, layer.input_size], dtype, name="input"),
            "h_0": tf.TensorSpec([None, layer.hidden_size], dtype, name="h_0"),
            "c_0": tf.TensorSpec([None, layer.hidden_size], dtype, name="c_0"),
        }
    n_states = layer.num_directions * layer.num_layers
    return {
        "input": tf.TensorSpec([None, None, layer.input_size], dtype, name="input"),
        "h_0": tf.TensorSpec([n_states, None, layer.output_size], dtype, name="h_0"),
        "c_0": tf.TensorSpec([n_states, None, layer.hidden_size], dtype, name="c_0"),
        "sequence_lengths": tf.TensorSpec([None], tf.int32, name="sequence_lengths"),
    }


class ServingModule(tf.Module):
    """A `tf.Module` holding a tflstm layer and its two serving functions."""

    def __init__(
        self, layer: LSTM | LSTMCell, *, sequence_lengths: bool = False
    ) -> None:
        if not isinstance(layer, (LSTM, LSTMCell)):
            raise TypeError(
                "Expected a tflstm.LSTM or tflstm.LSTMCell layer. "
                f"Received: an object of type {type(layer).__name__}"
            )
        _errors.check_bool("sequence_lengths", sequence_lengths)
        if sequence_lengths and isinstance(layer, LSTMCell):
            raise ValueError(
                "Expected a tflstm.LSTM for `sequence_lengths=True` (a cell runs "
                "one step). Received: a tflstm.LSTMCell"
            )
        super().__init__(name=f"{layer.name}_serving")
        self.layer = layer
        specs = serving_specs(layer)
        if sequence_lengths:
            lengths = [specs["sequence_lengths"]]
            self.serve = tf.function(
                self._serve_lengths, input_signature=[specs["input"], *lengths]
            )
            self.serve_with_state = tf.function(
                self._serve_with_state_lengths,
                input_signature=[specs["input"], specs["h_0"], specs["c_0"], *lengths],
            )
            return
        self.serve = tf.function(self._serve, input_signature=[specs["input"]])
        self.serve_with_state = tf.function(
            self._serve_with_state,
            input_signature=[specs["input"], specs["h_0"], specs["c_0"]],
        )

    def _outputs(self, result: Any) -> dict[str, tf.Tensor]:
        if isinstance(self.layer, LSTMCell):
            return {"h_1": result[0], "c_1": result[1]}
        output, (h_n, c_n) = result
        return {"output": output, "h_n": h_n, "c_n": c_n}

    def _run(self, input: tf.Tensor, hx: Any = None, **kwargs: Any) -> Any:
        if isinstance(self.layer, LSTM):  # (output, (h_n, c_n)), whatever
            # Traced for the SavedModel: portable kernels only.
            return self.layer.forward(
                input, hx, training=False, export="saved_model", **kwargs
            )
        return self.layer(input, hx)

    def _serve(self, input: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._outputs(self._run(input))

    def _serve_with_state(
        self, input: tf.Tensor, h_0: tf.Tensor, c_0: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        return self._outputs(self._run(input, (h_0, c_0)))

    def _serve_lengths(
        self, input: tf.Tensor, sequence_lengths: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        return self._outputs(self._run(input, sequence_lengths=sequence_lengths))

    def _serve_with_state_lengths(
        self,
        input: tf.Tensor,
        h_0: tf.Tensor,
        c_0: tf.Tensor,
        sequence_lengths: tf.Tensor,
    ) -> dict[str, tf.Tensor]:
        return self._outputs(
            self._run(input, (h_0, c_0), sequence_lengths=sequence_lengths)
        )

    def signatures(self) -> dict[str, Any]:
        return {"serving_default": self.serve, "with_state": self.serve_with_state}


def export_saved_model(
    layer: LSTM | LSTMCell,
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
