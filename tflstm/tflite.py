"""Export for phones: a `.tflite` file (LiteRT) with builtin ops only.

Each layer and direction becomes one fused `UNIDIRECTIONAL_SEQUENCE_LSTM`
op, TFLite's own LSTM kernel (linear in the sequence length). The converter
emits that op only for a function that follows Keras's "lstm_" composite
convention (`api_implements="lstm_<id>"`, six arguments: input, h_0, c_0,
kernel = weight_ih.T, recurrent_kernel = weight_hh.T, bias = bias_ih +
bias_hh), and only through its SavedModel import path. Three things are then
patched in the flatbuffer, as the converter cannot express them:

- `cell_clip` is hard-coded to 10.0 there; torch does not clip: set to 0.
- the projection (`weight_hr`) is the op's operand 16, which the composite
  leaves empty: it is added (with `proj_size > 0`, `H_out = proj_size`).
- the op writes its final states into its state inputs; those tensors are
  listed as model outputs `h_n_l{k}[_reverse]`, `c_n_l{k}[_reverse]`.

The model's inputs are `input` (`(L, N, H_in)`, or `(N, L, H_in)` with
`batch_first`) and one `h_0_l{k}[_reverse]` (N, H_out) and
`c_0_l{k}[_reverse]` (N, H_cell) per layer and direction, all set at every
call, so calls are independent; feeding a call the previous `h_n`/`c_n`
streams a sequence chunk by chunk. The sequence length can be resized at run
time; the batch size is fixed at export (the fused op requires it) and
defaults to 1. Weights are stored in float32. `run_tflite` calls such a model
with torch's conventions.

Which path each layer gets: `export_tflite` gives every `tflstm.LSTM`
configuration the fused op (linear in L), or with `fused=False` the builtin
fallback (below), and a `tflstm.LSTMCell` a few builtin ops. Keras's own
`model.export(path, format="litert")` also works
on models holding a `tflstm.LSTM`, with builtin ops only, as a WHILE loop
(the builtin fallback), with layers built with `fused=False` (the default
inference kernel without projection, BlockLSTMV2, is not a TFLite builtin);
it needs a static batch, e.g.
`input_signature=[tf.TensorSpec([1, None, H_in])]` (with Keras's default
dynamic batch the converted model fails in LiteRT, as the TensorList
lowering then allocates with an unknown size), and its time grows with the
square of L (TFLite's WHILE copies every loop-carried tensor each step).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import numpy as np
import tensorflow as tf

from tflstm import _errors
from tflstm._ops import _lstm_layer, _plain, _step
from tflstm._params import lstm_param_name
from tflstm.lstm import LSTM
from tflstm.lstm_cell import LSTMCell


def _state_name(kind: str, layer: int, direction: int) -> str:
    return f"{kind}_l{layer}{'_reverse' if direction else ''}"


def _fused_lstm():
    """A fresh composite function the TFLite converter replaces with the op.

    Its body is a reference implementation (without projection) that only has
    to give the results their shapes; the converter discards it.
    """
    attributes = {
        "api_implements": f"lstm_{uuid.uuid4()}",
        "api_preferred_device": "CPU",
        "time_major": True,
        "go_backwards": False,
    }

    @tf.function(experimental_attributes=attributes, autograph=False)
    def fused(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        def step(carry, x_t):
            h, c = carry
            z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent_kernel) + bias
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            m = tf.sigmoid(o) * tf.tanh(c)
            return m[:, : init_h.shape[-1]], c

        hs, cs = tf.scan(step, inputs, initializer=(init_h, init_c))
        return hs[-1], hs, hs[-1], cs[-1], tf.constant(0.0)

    return fused


def _weights(layer: LSTM, k: int, d: int) -> dict[str, np.ndarray]:
    def get(kind: str) -> np.ndarray:
        return getattr(layer, lstm_param_name(kind, k, d)).numpy().astype("float32")

    four_h = 4 * layer.hidden_size
    bias = (
        get("bias_ih") + get("bias_hh") if layer.bias else np.zeros(four_h, "float32")
    )
    weights = {
        "kernel": get("weight_ih").T.copy(),
        "recurrent_kernel": get("weight_hh").T.copy(),
        "bias": bias,
    }
    if layer.proj_size:
        weights["weight_hr"] = get("weight_hr")
    return weights


def _signature(layer: LSTM, batch_size: int, lengths: bool) -> tuple[list, list]:
    """The (layer, direction) pairs, and the specs of `input`, the states and
    (with `lengths`) `sequence_lengths`."""
    states = [
        (k, d) for k in range(layer.num_layers) for d in range(layer.num_directions)
    ]
    in_shape = [batch_size, None, layer.input_size]
    if not layer.batch_first:
        in_shape = [None, batch_size, layer.input_size]
    specs = [tf.TensorSpec(in_shape, tf.float32, name="input")]
    for k, d in states:
        for kind, size in (("h_0", layer.output_size), ("c_0", layer.hidden_size)):
            specs.append(
                tf.TensorSpec([batch_size, size], tf.float32, _state_name(kind, k, d))
            )
    if lengths:
        specs.append(tf.TensorSpec([batch_size], tf.int32, "sequence_lengths"))
    return states, specs


def _valid_steps(x: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """(L, N, 1) float32: 1 where t < lengths[n], else 0."""
    valid = tf.transpose(tf.sequence_mask(lengths, tf.shape(x)[0]))
    return tf.cast(valid, tf.float32)[..., None]


def _convert_fallback(layer: LSTM, batch_size: int, lengths: bool) -> bytes:
    """The layer's inference computation as a WHILE loop of builtin ops.

    Same inputs and outputs as the fused model, but the batch size cannot be
    resized at run time (LiteRT's XNNPACK delegate refuses); time grows with L squared
    (TFLite's WHILE copies every loop-carried tensor at each step). Weights
    are numpy constants, as the converter would keep variables as
    uninitialised resources.
    """
    _, specs = _signature(layer, batch_size, lengths)
    d_count = layer.num_directions

    def stacked(kind: str, k: int) -> np.ndarray:
        return np.stack(
            [
                getattr(layer, lstm_param_name(kind, k, d)).numpy().astype("float32")
                for d in range(d_count)
            ]
        )

    per_layer = []
    for k in range(layer.num_layers):
        bias = stacked("bias_ih", k) + stacked("bias_hh", k) if layer.bias else None
        w_hr = stacked("weight_hr", k) if layer.proj_size else None
        per_layer.append((stacked("weight_ih", k), stacked("weight_hh", k), bias, w_hr))

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, *hx):
        x = input if not layer.batch_first else tf.transpose(input, [1, 0, 2])
        seq_lengths = hx[-1] if lengths else None
        if lengths:
            x = x * _valid_steps(x, seq_lengths)
        outputs = {}
        for k, weights in enumerate(per_layer):
            pairs = range(k * d_count, (k + 1) * d_count)
            h_0 = tf.stack([hx[2 * s] for s in pairs])
            c_0 = tf.stack([hx[2 * s + 1] for s in pairs])
            constants = [None if w is None else tf.constant(w) for w in weights]
            x, h_n, c_n = _lstm_layer(
                x, h_0, c_0, *constants, layer.bidirectional, False, seq_lengths
            )
            for d in range(d_count):
                outputs[_state_name("h_n", k, d)] = h_n[d]
                outputs[_state_name("c_n", k, d)] = c_n[d]
        if layer.batch_first:
            x = tf.transpose(x, [1, 0, 2])
        outputs["output"] = x
        return outputs

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


# Packed sequences in the fused op (which has no lengths input): one more
# input feature, 1 on padded steps, whose kernel row drives the input gate's
# pre-activation to -_SATURATE and the forget gate's to +_SATURATE. There
# sigmoid is exactly 0 and 1 in float32, so c_t = 1 * c_{t-1} + 0 * g_t: the
# cell state passes the padding unchanged (c_n is exact), and on valid steps
# the extra term is 0 * kernel = 0 (the numbers do not change). h_n is read
# from the output at each sequence's last valid step, padded outputs are
# zeroed, and the backward direction runs on REVERSE_SEQUENCE.
_SATURATE = 1e30


def _padding_row(hidden_size: int) -> np.ndarray:
    row = np.zeros((1, 4 * hidden_size), "float32")
    row[0, :hidden_size] = -_SATURATE  # input gate: sigmoid -> 0
    row[0, hidden_size : 2 * hidden_size] = _SATURATE  # forget gate: -> 1
    return row


def _convert(layer: LSTM, batch_size: int, lengths: bool) -> bytes:
    d_count = layer.num_directions
    states, specs = _signature(layer, batch_size, lengths)
    weights = {s: _weights(layer, *s) for s in states}
    fused = {s: _fused_lstm() for s in states}

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, *hx):
        x = input if not layer.batch_first else tf.transpose(input, [1, 0, 2])
        result = {}
        if lengths:
            seq_lengths = hx[-1]
            valid = _valid_steps(x, seq_lengths)
            x = x * valid
            last = tf.stack([seq_lengths - 1, tf.range(batch_size)], axis=1)
        for k in range(layer.num_layers):
            outputs = []
            for d in range(d_count):
                i = 2 * (k * d_count + d)
                w = weights[k, d]
                kernel = w["kernel"]
                if lengths:
                    kernel = np.concatenate([kernel, _padding_row(layer.hidden_size)])
                    x_d = tf.reverse_sequence(x, seq_lengths, 0, 1) if d else x
                    x_d = tf.concat([x_d, 1.0 - valid], -1)
                else:
                    x_d = tf.reverse(x, [0]) if d else x
                _, y, _, _, _ = fused[k, d](
                    x_d,
                    hx[i],
                    hx[i + 1],
                    tf.constant(kernel),
                    tf.constant(w["recurrent_kernel"]),
                    tf.constant(w["bias"]),
                )
                if lengths:
                    result[_state_name("h_n", k, d)] = tf.gather_nd(y, last)
                    y = y * valid
                    y = tf.reverse_sequence(y, seq_lengths, 0, 1) if d else y
                else:
                    y = tf.reverse(y, [0]) if d else y
                outputs.append(y)
            x = tf.concat(outputs, -1) if d_count == 2 else outputs[0]
        if layer.batch_first:
            x = tf.transpose(x, [1, 0, 2])
        result["output"] = x
        return result

    module = tf.Module()
    module.serve = serve
    with tempfile.TemporaryDirectory() as tmp:
        # The fusion only happens on the converter's SavedModel import path.
        tf.saved_model.save(module, tmp, signatures={"serving_default": serve})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    return _patch(flatbuffer, layer, weights, ("c",) if lengths else ("h", "c"))


def _patch(flatbuffer: bytes, layer: LSTM, weights: dict, exposed: tuple) -> bytes:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    names = {graph.tensors[i].name.decode(): int(i) for i in graph.inputs}

    def input_index(name: str) -> int:
        return next(i for n, i in names.items() if n.endswith(f"_{name}:0"))

    by_state = {}
    for k, d in weights:
        h_index = input_index(_state_name("h_0", k, d))
        by_state[h_index] = (k, d)
    fused_ops = 0
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.builtinCode != schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
            continue
        fused_ops += 1
        op.builtinOptions.cellClip = 0.0  # torch never clips the cell state
        if layer.proj_size:
            w_hr = weights[by_state[int(op.inputs[18])]]["weight_hr"]
            buffer = schema.BufferT()
            buffer.data = np.ascontiguousarray(w_hr).tobytes()
            model.buffers.append(buffer)
            tensor = schema.TensorT()
            tensor.shape = list(w_hr.shape)
            tensor.type = schema.TensorType.FLOAT32
            tensor.buffer = len(model.buffers) - 1
            tensor.name = b"weight_hr"
            graph.tensors.append(tensor)
            op.inputs[16] = len(graph.tensors) - 1
    if fused_ops != len(weights):
        raise RuntimeError(
            "The TFLite converter did not fuse every LSTM: expected "
            f"{len(weights)} UNIDIRECTIONAL_SEQUENCE_LSTM ops. Received: {fused_ops}"
        )
    # The op leaves its final states in its state inputs: expose them (h_n is
    # computed in the graph instead with packed sequences).
    signature = model.signatureDefs[0]
    for k, d in weights:
        for state in exposed:
            index = input_index(_state_name(f"{state}_0", k, d))
            graph.outputs = [*graph.outputs, index]
            entry = schema.TensorMapT()
            entry.name = _state_name(f"{state}_n", k, d).encode()
            entry.tensorIndex = index
            signature.outputs.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _convert_cell(cell: LSTMCell, batch_size: int) -> bytes:
    """One step, no loop: a handful of builtin ops (FULLY_CONNECTED, LOGISTIC,
    TANH, MUL, ADD), TensorFlow's float32 activations as in inference."""
    weight_ih, weight_hh = (
        getattr(cell, n).numpy().astype("float32") for n in ("weight_ih", "weight_hh")
    )
    bias = np.zeros(4 * cell.hidden_size, "float32")
    if cell.bias:
        bias = (cell.bias_ih.numpy() + cell.bias_hh.numpy()).astype("float32")
    shape = [batch_size, cell.hidden_size]
    specs = [
        tf.TensorSpec([batch_size, cell.input_size], tf.float32, name="input"),
        tf.TensorSpec(shape, tf.float32, name="h_0"),
        tf.TensorSpec(shape, tf.float32, name="c_0"),
    ]

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, h_0, c_0):
        x_gates = tf.matmul(input, tf.constant(weight_ih), transpose_b=True) + bias
        h, c, _, _ = _step(x_gates, h_0, c_0, tf.constant(weight_hh), None, _plain)
        return {"h_1": h, "c_1": c}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def export_tflite(
    layer: LSTM | LSTMCell,
    path: str | os.PathLike | None = None,
    *,
    batch_size: int = 1,
    fused: bool = True,
    sequence_lengths: bool = False,
) -> bytes:
    """Converts a `tflstm.LSTM` (or `LSTMCell`) to a `.tflite` model (see the
    module docstring).

    An `LSTMCell` becomes one step with inputs `input`, `h_0`, `c_0` and
    outputs `h_1`, `c_1`.

    Args:
        layer: The layer to export; every configuration is supported.
        path: Where to write the model; `None` only returns it.
        batch_size: The batch size N the model is built for. Defaults to 1.
        fused: `True` (default): the fused LSTM op, linear in L. `False`: the
            builtin-op fallback, the layer's inference graph as a WHILE loop,
            with the same inputs and outputs (for runtimes without the fused
            op; quadratic in L). Ignored for an `LSTMCell`.
        sequence_lengths: Whether the model takes an int32 input
            `sequence_lengths` of shape (N,): PyTorch's packed-sequence
            semantics for right-padded batches, as in `tflstm.LSTM`. The
            lengths must lie in [1, L]; the model does not check them.

    Returns:
        The `.tflite` flatbuffer.
    """
    if not isinstance(layer, (LSTM, LSTMCell)):
        raise TypeError(
            "Expected a tflstm.LSTM or tflstm.LSTMCell. Received: an object of "
            f"type {type(layer).__name__}"
        )
    _errors.check_int("batch_size", batch_size, minimum=1)
    _errors.check_bool("fused", fused)
    _errors.check_bool("sequence_lengths", sequence_lengths)
    if isinstance(layer, LSTMCell):
        if sequence_lengths:
            raise ValueError(
                "Expected a tflstm.LSTM for `sequence_lengths=True` (a cell runs "
                "one step). Received: a tflstm.LSTMCell"
            )
        flatbuffer = _convert_cell(layer, batch_size)
    elif fused:
        flatbuffer = _convert(layer, batch_size, sequence_lengths)
    else:
        flatbuffer = _convert_fallback(layer, batch_size, sequence_lengths)
    if path is not None:
        with open(path, "wb") as f:
            f.write(flatbuffer)
    return flatbuffer


def tflite_ops(flatbuffer: bytes) -> list[str]:
    """The builtin (or custom) op names of the model's main graph, in order."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    graph = model.Subgraphs(0)
    ops = []
    for i in range(graph.OperatorsLength()):
        code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, str(builtin))
        ops.append(f"CUSTOM:{code.CustomCode().decode()}" if name == "CUSTOM" else name)
    return ops


def run_tflite(
    flatbuffer: bytes,
    layer_config: dict[str, Any],
    input: np.ndarray,
    hx: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    sequence_lengths: np.ndarray | None = None,
    num_threads: int = 2,
):
    """Runs an exported model in LiteRT with torch's conventions.

    Args:
        flatbuffer: What `export_tflite` returned.
        layer_config: The layer's `get_config()` (for the state layout).
        input: A batched input, laid out as the layer's.
        hx: `(h_0, c_0)` in torch's layout `(D*num_layers, N, H)`, or None.
        sequence_lengths: (N,) lengths, for a model exported with
            `sequence_lengths=True`.

    Returns:
        `(output, (h_n, c_n))` as numpy arrays, in torch's layout; `(h_1, c_1)`
        for an exported `LSTMCell` (its `input` is `(N, H_in)`).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=num_threads)
    runner = interpreter.get_signature_runner("serving_default")
    if "num_layers" not in layer_config:  # an LSTMCell: one step
        zeros = np.zeros((len(input), layer_config["hidden_size"]), "float32")
        h_0, c_0 = hx if hx is not None else (zeros, zeros)
        out = runner(input=np.asarray(input, "float32"), h_0=h_0, c_0=c_0)
        return out["h_1"], out["c_1"]
    d_count = 2 if layer_config["bidirectional"] else 1
    n_states = d_count * layer_config["num_layers"]
    batch = input.shape[0 if layer_config["batch_first"] else 1]
    out_size = layer_config["proj_size"] or layer_config["hidden_size"]
    if hx is None:
        hx = (
            np.zeros((n_states, batch, out_size), "float32"),
            np.zeros((n_states, batch, layer_config["hidden_size"]), "float32"),
        )
    feed = {"input": np.asarray(input, "float32")}
    if sequence_lengths is not None:
        feed["sequence_lengths"] = np.asarray(sequence_lengths, "int32")
    for s in range(n_states):
        k, d = divmod(s, d_count)
        feed[_state_name("h_0", k, d)] = np.asarray(hx[0][s], "float32")
        feed[_state_name("c_0", k, d)] = np.asarray(hx[1][s], "float32")
    result = runner(**feed)
    names = [divmod(s, d_count) for s in range(n_states)]
    h_n = np.stack([result[_state_name("h_n", k, d)] for k, d in names])
    c_n = np.stack([result[_state_name("c_n", k, d)] for k, d in names])
    return result["output"], (h_n, c_n)
