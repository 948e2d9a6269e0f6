"""`export_tflite`: a tflstm layer as a `.tflite` flatbuffer (see
`tflstm.tflite`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from tflstm import _errors
from tflstm._cell_layer import CellLayer
from tflstm._ops import cell_step
from tflstm._recurrent import RecurrentLayer
from tflstm.cells.rnn import RNNCellMath
from tflstm.kernels.litert import unrolled_forward
from tflstm.kernels.loop import loop_forward
from tflstm.tflite import _internals as internals
from tflstm.tflite.graphs import (
    GRAPHS,
    choose_graph,
    convert,
    fused_graph,
    kernel_graph,
    signature,
)
from tflstm.tflite.quantize import (
    QUANTIZE_MODES,
    QuantizationWarning,
    cell_state_maxima,
    keep_heavy_float,
    keep_heavy_fused_float,
    predicted_misses,
)


def _export_fused(
    layer: RecurrentLayer,
    batch_size: int,
    fixed_length: int | None,
    lengths: bool,
    quantize: str | None,
    calibration: list[np.ndarray],
) -> bytes:
    int8 = quantize == "int8"
    specs = signature(layer, batch_size, fixed_length, lengths)
    serve, projections, exposed = fused_graph(layer, specs, lengths, int8)
    flatbuffer = convert(serve, quantize)
    if quantize == "dynamic":
        flatbuffer = keep_heavy_fused_float(layer, flatbuffer, lengths)
    if not int8:
        flatbuffer = internals.patch(flatbuffer, projections, exposed)
        if isinstance(layer.cell, RNNCellMath):  # written from the LSTM's op
            flatbuffer = internals.as_rnn_ops(flatbuffer, layer.cell.nonlinearity)
        return flatbuffer
    flatbuffer = internals.patch(flatbuffer, projections, {})
    feeds = []
    for x in calibration:
        steps = x.shape[1 if layer.batch_first else 0]
        feed = {"input": x}
        for spec in specs[1:]:
            feed[spec.name] = np.zeros(spec.shape, "float32")
        if lengths:
            feed["sequence_lengths"] = np.full(batch_size, steps, "int32")
        feeds.append(feed)
    return internals.quantize_int8(
        flatbuffer,
        feeds,
        cell_state_maxima(layer, calibration),
        {} if lengths else exposed,
    )


def _export_cell(cell: CellLayer, batch_size: int, quantize: str | None) -> bytes:
    """One step, no loop: a handful of builtin ops (FULLY_CONNECTED, LOGISTIC,
    TANH, MUL, ADD), TensorFlow's float32 activations as in inference.
    Inputs `input` and `{state}_0`, outputs `{state}_1` (`h`, and an LSTM's
    `c`)."""
    weights = cell.cell_weights(stack=np.stack).map(lambda w: w.astype("float32"))
    shape = [batch_size, cell.hidden_size]
    states = cell.cell.spec.states
    specs = [
        tf.TensorSpec([batch_size, cell.input_size], tf.float32, name="input"),
        *(tf.TensorSpec(shape, tf.float32, name=f"{s}_0") for s in states),
    ]

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, *state):
        state = cell_step(cell.cell, input, state, weights.map(tf.constant))
        return {f"{s}_1": value for s, value in zip(states, state, strict=True)}

    flatbuffer = convert(serve, quantize)
    if quantize == "dynamic":
        flatbuffer = keep_heavy_float(cell, flatbuffer)
    return flatbuffer


def _calibration_inputs(
    layer: RecurrentLayer,
    data: Iterable[Any] | None,
    batch_size: int,
    fixed_length: int | None,
) -> list[np.ndarray]:
    """`representative_data` as float32 inputs of batch `batch_size` (each
    item split along its batch axis), all checked before any work."""
    if data is None:
        raise ValueError(
            "Expected `representative_data` (an iterable of inputs laid out as "
            "the layer's input) for quantize='int8', which calibrates the "
            "activations' ranges on it. Received: None"
        )
    if isinstance(data, np.ndarray) or not isinstance(data, Iterable):
        hint = " (one array: wrap it in a list)" if isinstance(data, np.ndarray) else ""
        raise TypeError(
            "Expected `representative_data` to be an iterable of input arrays "
            f"(e.g. a list). Received: an object of type {type(data).__name__}{hint}"
        )
    batch_axis = 0 if layer.batch_first else 1
    layout = "(N, L, H_in)" if layer.batch_first else "(L, N, H_in)"
    inputs = []
    for i, item in enumerate(data):
        x = np.asarray(item)
        problem = None
        if x.ndim != 3 or x.shape[-1] != layer.input_size:
            problem = f"a batched input {layout} with H_in={layer.input_size}"
        elif x.shape[batch_axis] % batch_size:
            problem = f"a batch size that is a multiple of batch_size={batch_size}"
        elif fixed_length is not None and x.shape[1 - batch_axis] != fixed_length:
            problem = f"a length of fixed_length={fixed_length}"
        elif x.shape[1 - batch_axis] < 1:
            problem = "a length of at least 1"
        elif not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            problem = "finite numbers"
        if problem:
            raise ValueError(
                f"Expected each item of `representative_data` to be {problem}. "
                f"Received: item {i} of shape {x.shape} and dtype {x.dtype}"
            )
        x = x.astype("float32")
        inputs += np.split(x, x.shape[batch_axis] // batch_size, axis=batch_axis)
    if not inputs:
        raise ValueError(
            "Expected at least one input in `representative_data`. Received: an "
            "empty iterable"
        )
    return inputs


def export_tflite(
    layer: RecurrentLayer | CellLayer,
    path: str | os.PathLike | None = None,
    *,
    batch_size: int = 1,
    fixed_length: int | None = None,
    graph: str = "auto",
    sequence_lengths: bool = False,
    quantize: str | None = None,
    representative_data: Iterable[Any] | None = None,
) -> bytes:
    """Converts a `tflstm.LSTM`, `GRU` or `RNN` (or their cells) to a
    `.tflite` model (see the module docstring for the graphs, quantization
    and accuracy).

    A cell layer becomes one step with inputs `input`, `h_0` (and an
    `LSTMCell`'s `c_0`) and outputs `h_1` (and `c_1`).

    Args:
        layer: The layer to export; every configuration is supported.
        path: Where to write the model; `None` only returns it.
        batch_size: The batch size N the model is built for. Defaults to 1.
            The fused graph can be resized to another batch at run time.
        fixed_length: `None` (default): the sequence length is dynamic
            (resize the input at run time; the unrolled graph is not
            available). An int L: the model takes exactly L steps (static
            shapes); shorter sequences are right-padded to L and passed with
            `sequence_lengths`.
        graph: `"auto"` (default: chosen by `choose_graph`), `"fused"`
            (TFLite's LSTM op, or its RNN op with tanh or relu fused; not
            for a GRU, which has none), `"unrolled"` (needs
            `fixed_length`) or `"loop"`.
        sequence_lengths: Whether the model takes an int32 input
            `sequence_lengths` of shape (N,): PyTorch's packed-sequence
            semantics for right-padded batches, as in `tflstm.LSTM`. The
            lengths must lie in [1, L]; the model does not check them.
            Defaults to False.
        quantize: `None` (default: float32), `"dynamic"` (int8 weights,
            float activations), `"int8"` (full integer with a 16-bit cell
            state; the fused graph) or `"float16"` (float16 weights, float32
            math: half the size, for models that 8 bits do not serve).
        representative_data: An iterable of inputs laid out as the layer's
            input, each of a batch that is a multiple of `batch_size`; a few
            batches of real data, zero initial states. With `quantize="int8"`
            (required): the activations' ranges are calibrated on it. With
            `"dynamic"` (optional): only the accuracy check (a
            `QuantizationWarning` where the cell state grows beyond
            `LONG_MEMORY_CELL_STATE`). Refused with `quantize=None`.

    Returns:
        The `.tflite` flatbuffer.

    Raises:
        ValueError: for an invalid argument or combination, before any work.

    Warns:
        QuantizationWarning: when the quantized model is predicted to miss
            `QUANTIZED_RTOL` (heavy-tailed weights under int8, a long memory
            on `representative_data`); the message says why and what to do.

    Example:

    >>> import tflstm
    >>> from tflstm.tflite import run_tflite, tflite_ops
    >>> layer = tflstm.LSTM(4, 8, bidirectional=True)
    >>> windows = export_tflite(layer, batch_size=3, fixed_length=5)
    >>> "UNIDIRECTIONAL_SEQUENCE_LSTM" in tflite_ops(windows)  # unrolled
    False
    >>> x = np.zeros((5, 3, 4), "float32")
    >>> output, (h_n, c_n) = run_tflite(windows, layer.get_config(), x)
    >>> output.shape, h_n.shape
    ((5, 3, 16), (2, 3, 8))
    """
    _check_arguments(
        layer,
        batch_size=batch_size,
        fixed_length=fixed_length,
        graph=graph,
        sequence_lengths=sequence_lengths,
        quantize=quantize,
        representative_data=representative_data,
    )
    if isinstance(layer, CellLayer):
        flatbuffer = _export_cell(layer, batch_size, quantize)
    else:
        fused_op = layer.cell.tflite_fused_op  # TFLite's op for the cell, if any
        # before "auto" is resolved: the message names the user's choice
        _check_graph(graph, fixed_length, quantize, layer)
        if graph == "auto":
            graph = choose_graph(
                batch_size=batch_size,
                fixed_length=fixed_length,
                quantize=quantize,
                fused=fused_op,
            )
        _check_graph(graph, fixed_length, quantize, layer)
        calibration = []
        if quantize == "int8" or representative_data is not None:
            calibration = _calibration_inputs(
                layer, representative_data, batch_size, fixed_length
            )
        for message in predicted_misses(layer, quantize, calibration):
            warnings.warn(message, QuantizationWarning, stacklevel=2)
        if graph == "fused":
            flatbuffer = _export_fused(
                layer, batch_size, fixed_length, sequence_lengths, quantize, calibration
            )
        else:
            kernel = unrolled_forward if graph == "unrolled" else loop_forward
            specs = signature(layer, batch_size, fixed_length, sequence_lengths)
            serve = kernel_graph(layer, kernel, specs, sequence_lengths)
            flatbuffer = convert(serve, quantize)
            if quantize == "dynamic":
                flatbuffer = keep_heavy_float(layer, flatbuffer)
    if path is not None:
        with open(path, "wb") as f:
            f.write(flatbuffer)
    return flatbuffer


def _check_arguments(
    layer: Any,
    *,
    batch_size: int,
    fixed_length: int | None,
    graph: str,
    sequence_lengths: bool,
    quantize: str | None,
    representative_data: Any,
) -> None:
    """`export_tflite`'s arguments, each and together, before any work."""
    if not isinstance(layer, (RecurrentLayer, CellLayer)):
        raise TypeError(
            "Expected a tflstm layer (tflstm.LSTM, GRU, RNN or their cells). "
            f"Received: an object of type {type(layer).__name__}"
        )
    _errors.check_int("batch_size", batch_size, minimum=1)
    if fixed_length is not None:
        _errors.check_int("fixed_length", fixed_length, minimum=1)
    _errors.check_choice("graph", graph, GRAPHS)
    _errors.check_bool("sequence_lengths", sequence_lengths)
    _errors.check_choice("quantize", quantize, QUANTIZE_MODES)
    if representative_data is not None and quantize in (None, "float16"):
        raise ValueError(
            "Expected `representative_data` only with quantize='int8' or "
            "'dynamic' (float models need no calibration). Received: "
            f"quantize={quantize!r} and representative_data"
        )
    if isinstance(layer, CellLayer) and (
        sequence_lengths
        or fixed_length is not None
        or quantize == "int8"
        or representative_data is not None
    ):
        raise ValueError(
            "Expected a tflstm.LSTM, GRU or RNN for `sequence_lengths=True`, "
            "`fixed_length` or `representative_data`, and a tflstm.LSTM for "
            "quantize='int8' (a cell runs one step, quantized with "
            "quantize='dynamic' or 'float16'). "
            f"Received: a tflstm.{type(layer).__name__} with sequence_lengths="
            f"{sequence_lengths}, fixed_length={fixed_length}, "
            f"quantize={quantize!r}, representative_data "
            f"{'given' if representative_data is not None else 'None'}"
        )


def _check_graph(
    graph: str, fixed_length: int | None, quantize: str | None, layer: Any
) -> None:
    """The graph chosen for `layer` can serve the other arguments."""
    kind = type(layer).__name__
    if not layer.cell.tflite_fused_op and (graph == "fused" or quantize == "int8"):
        raise ValueError(
            "Expected graph='auto', 'unrolled' or 'loop' and quantize=None, "
            "'dynamic' or 'float16' for a tflstm."
            f"{kind}: TFLite has no fused op for it, and its only fused "
            "recurrent op with a 16-bit integer state is the LSTM's. Received: "
            f"graph={graph!r}, quantize={quantize!r}"
        )
    if quantize == "int8" and layer.cell.tflite_fused_op != internals.LSTM_OP:
        raise ValueError(
            "Expected quantize=None, 'dynamic' or 'float16' for a tflstm."
            f"{kind}: TFLite's only fused recurrent op with a 16-bit integer "
            f"state is the LSTM's. Received: quantize={quantize!r}"
        )
    if graph == "unrolled" and fixed_length is None:
        raise ValueError(
            "Expected `fixed_length` (the number of steps to unroll) for "
            "graph='unrolled'. Received: fixed_length=None"
        )
    if quantize == "int8" and graph not in ("fused", "auto"):
        raise ValueError(
            "Expected graph='fused' (or 'auto') for quantize='int8': only "
            "TFLite's fused LSTM op keeps a 16-bit cell state (the other "
            "graphs' int8 cell state loses 2-18% of the output's scale). "
            f"Received: graph={graph!r}"
        )
