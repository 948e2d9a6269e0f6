"""What `tflstm.tflite` relies on that is not TFLite's public API.

TFLite has no public way to ask for its fused LSTM op with torch's semantics,
nor to quantize it with a 16-bit cell state from Python. tflstm gets both
through the converter's internals, all of them in this module, each behind a
named constant or one function, and each checked by a canary test
(tests/test_tflite_canaries.py) that fails loudly when a TensorFlow or LiteRT
upgrade changes it. Verified with TensorFlow 2.21 and ai-edge-litert 2.3.

1. The composite convention. The converter replaces a `tf.function` whose
   attribute `api_implements` starts with "lstm_" (Keras's convention; six
   arguments: input, h_0, c_0, kernel = weight_ih^T, recurrent_kernel =
   weight_hh^T, bias = bias_ih + bias_hh; five results) by one
   `UNIDIRECTIONAL_SEQUENCE_LSTM` op, whichever import path is used
   (`from_concrete_functions` fuses in TF 2.21 as `from_saved_model` does).
2. The op's operands (TFLite's `lstm_shared.h`): 24 inputs, the four gates'
   weights in torch's order (i, f, g, o) at 1-4 (input) and 5-8
   (recurrent), biases at 12-15, the projection at 16 (left empty by the
   composite: tflstm adds it), the h and c states at 18 and 19 (variable
   tensors, which the op overwrites with its final states: tflstm lists c's
   as a model output).
3. The converter hard-codes `cell_clip = 10.0` (Keras's composite); torch
   never clips: tflstm sets 0 (no clip).
4. Dynamic-range quantization (int8 weights, float activations): the
   converter makes the op "hybrid" (per-tensor symmetric int8 weights,
   asymmetrically quantized inputs) when each gate matrix has at least
   `MIN_QUANTIZED_ELEMENTS` weights. The projection that tflstm adds must
   then be int8 with a scale too: a float32 projection in a hybrid op is
   silently read as int8 (an error of the output's whole scale).
5. Full integer quantization with the 16-bit cell state: the calibrator's
   `add_intermediate_tensors` (the op's 5 gate intermediates),
   `Calibrator.calibrate`, then `mlir_quantize`. The calibrator records the
   cell state only where it is fed (c_0), so its range is set from the
   float model's measured max|c_t| (`INT8_MIN_CELL_RANGE` at least: the
   kernel is silently wrong below a scale of 2^-15). After quantization: the
   h state's scale is tied to the output's (the op writes output-scaled
   values into it), ops that copy bytes (REVERSE_V2, GATHER_ND, ...) get
   their input's scale back with a requantize after them, and the int16 cell
   state variable is exposed as is (a DEQUANTIZE op reading it after the LSTM
   gets scheduled before it by XNNPACK's partitioning: the in-place write is
   not a graph edge).
6. Dynamic range and heavy-tailed weights: in TF 2.21 the converter
   quantizes a FULLY_CONNECTED's weights per output channel (one scale per
   row; `_experimental_disable_per_channel_quantization_for_dense_layers` is
   False by default) and the fused op's per gate matrix (one scale each).
   A matrix whose largest weights dwarf the others keeps few levels for
   most weights; `keep_float_matrices` and `keep_fused_float` give such
   matrices (and such fused ops) their float32 weights back after the
   conversion: a FULLY_CONNECTED, or a fused op whose weights are all
   float32, runs TFLite's float kernel.
"""

from __future__ import annotations

import contextlib
import copy
import re
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import tensorflow as tf

from tflstm._quiet import TFLITE_NOISE, filtered_stderr
from tflstm.cells import LSTM, Recurrent

# -- 1. the composite convention -------------------------------------------------

COMPOSITE_ATTRIBUTE = "api_implements"
COMPOSITE_PREFIX = "lstm_"

# -- 2. the fused op -------------------------------------------------------------

LSTM_OP = "UNIDIRECTIONAL_SEQUENCE_LSTM"
N_OPERANDS = 24
INPUT_WEIGHTS = (1, 2, 3, 4)  # gates i, f, g, o: (H, H_in) each
RECURRENT_WEIGHTS = (5, 6, 7, 8)  # (H, H_out) each
PEEPHOLE_WEIGHTS = (9, 10, 11)  # unused (torch has no peepholes)
GATE_BIASES = (12, 13, 14, 15)  # (H,) each: bias_ih + bias_hh
PROJECTION_WEIGHTS = 16  # (H_out, H): weight_hr
PROJECTION_BIAS = 17  # unused
H_STATE = 18  # variable (N, H_out)
C_STATE = 19  # variable (N, H)
LAYER_NORM_WEIGHTS = (20, 21, 22, 23)  # unused
EMPTY = -1  # an absent optional operand
WEIGHT_OPERANDS = (*INPUT_WEIGHTS, *RECURRENT_WEIGHTS)
UNUSED_OPERANDS = (
    *PEEPHOLE_WEIGHTS,
    PROJECTION_WEIGHTS,
    PROJECTION_BIAS,
    *LAYER_NORM_WEIGHTS,
)
TANH = 4  # ActivationFunctionType.TANH: the op's cell/output activation

# -- 7. the RNN's fused op, written from the LSTM's ----------------------------
# The converter has no composite for UNIDIRECTIONAL_SEQUENCE_RNN. tflstm
# converts an LSTM whose gate i holds the RNN's weights (the other gates 0)
# and rewrites each op: RNN_OPERANDS are the LSTM operands it keeps, in the
# RNN op's order (TFLite's unidirectional_sequence_rnn.cc: input, input
# weights (H, H_in), recurrent weights (H, H), bias (H,), the hidden state, a
# variable tensor); the tensors no op reads any more are dropped.
RNN_OP = "UNIDIRECTIONAL_SEQUENCE_RNN"
RNN_OPERANDS = (0, INPUT_WEIGHTS[0], RECURRENT_WEIGHTS[0], GATE_BIASES[0], H_STATE)
RNN_ACTIVATIONS = {"tanh": TANH, "relu": 1}  # ActivationFunctionType

# -- 3. the converter's clip -----------------------------------------------------

CONVERTER_CELL_CLIP = 10.0
NO_CLIP = 0.0

# -- 4. dynamic range ------------------------------------------------------------

MIN_QUANTIZED_ELEMENTS = 1024
# The converter's default for dense layers under Optimize.DEFAULT (False:
# per-channel scales); tflstm relies on that default and never sets it.
PER_CHANNEL_DENSE_ATTRIBUTE = (
    "_experimental_disable_per_channel_quantization_for_dense_layers"
)

# -- 5. full integer -------------------------------------------------------------

N_INTERMEDIATES = 5
INT8_MIN_CELL_RANGE = 1.0
INT8_CELL_RANGE_MARGIN = 1.05  # on the measured max|c_t|
# What the calibrator and `mlir_quantize` write to stderr on every call.
QUANTIZER_NOISE = (
    *TFLITE_NOISE,
    re.compile(r"fully_quantize: \d+, inference_type: "),
    re.compile(r"W\d{4} [\d:. ]+ \d+ flatbuffer_export\.cc:\d+\] Skipping runtime "),
)
# The calibrator runs TensorFlow's own (deprecated) TFLite interpreter.
CALIBRATOR_WARNING = r"(?s)\s*Warning: tf\.lite\.Interpreter is deprecated"
# Ops that copy bytes: their output must keep their input's quantization.
SAME_SCALE_OPS = (
    "REVERSE_V2",
    "GATHER_ND",
    "GATHER",
    "RESHAPE",
    "TRANSPOSE",
    "STRIDED_SLICE",
    "SLICE",
)


def _schema():
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _flatbuffer_utils():
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils


def fused_lstm() -> Callable:
    """A fresh composite function that the converter replaces by the op.

    Its body is a reference implementation (without projection) that only
    gives the results their shapes; the converter discards it. Each call
    returns a function with its own name, one per layer and direction.
    """
    attributes = {
        COMPOSITE_ATTRIBUTE: f"{COMPOSITE_PREFIX}{uuid.uuid4()}",
        "api_preferred_device": "CPU",
        "time_major": True,
        "go_backwards": False,
    }

    @tf.function(experimental_attributes=attributes, autograph=False)
    def fused(inputs, init_h, init_c, kernel, recurrent_kernel, bias):
        def one_step(carry, x_t):
            h, c = carry
            x_gates = tf.matmul(x_t, kernel) + bias
            (m, c), _ = LSTM.step(x_gates, (h, c), Recurrent(recurrent_kernel))
            return m[:, : init_h.shape[-1]], c

        hs, cs = tf.scan(one_step, inputs, initializer=(init_h, init_c))
        return hs[-1], hs, hs[-1], cs[-1], tf.constant(0.0)

    return fused


# -- reading and writing flatbuffers ---------------------------------------------


def load(flatbuffer: bytes):
    """The model as the schema's mutable object tree (`ModelT`)."""
    return _flatbuffer_utils().convert_bytearray_to_object(bytearray(flatbuffer))


def dump(model) -> bytes:
    return bytes(_flatbuffer_utils().convert_object_to_bytearray(model))


def builtin_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}


def op_names(flatbuffer: bytes, subgraph: int | None = 0) -> list[str]:
    """The op names of one subgraph (None: of every subgraph), in order;
    custom ops (Flex) as "CUSTOM:<name>"."""
    schema = _schema()
    names = builtin_names()
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    graphs = range(model.SubgraphsLength()) if subgraph is None else [subgraph]
    ops = []
    for s in graphs:
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = names.get(builtin, str(builtin))
            if name == "CUSTOM":
                name = f"CUSTOM:{code.CustomCode().decode()}"
            ops.append(name)
    return ops


def delegated_partitions(flatbuffer: bytes, threads: int = 1) -> int:
    """How many parts of the model's graph LiteRT's default delegate (XNNPACK)
    takes, each run as one node (`Interpreter._get_ops_details` lists them as
    "DELEGATE"). Every op it does not take between two of its ops splits the
    graph: a tensor crossing the boundary is materialised and the ops on
    either side run apart."""
    from ai_edge_litert.interpreter import Interpreter

    with filtered_stderr(TFLITE_NOISE):
        interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
        interpreter.allocate_tensors()
    return [node["op_name"] for node in interpreter._get_ops_details()].count(
        "DELEGATE"
    )


def _code(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def lstm_ops(model) -> list:
    """The fused LSTM ops of the main graph, in order."""
    wanted = getattr(_schema().BuiltinOperator, LSTM_OP)
    return [op for op in model.subgraphs[0].operators if _code(model, op) == wanted]


def _changed(what: str) -> RuntimeError:
    return RuntimeError(
        f"The TFLite converter's {LSTM_OP} op no longer looks as tflstm expects "
        f"(tflstm/tflite/_internals.py; TensorFlow {tf.__version__}): {what}"
    )


def check_converted_op(graph, op) -> None:
    """Raises if the converter's op differs from what `patch` relies on."""
    if len(op.inputs) != N_OPERANDS:
        raise _changed(f"expected {N_OPERANDS} operands. Received: {len(op.inputs)}")
    filled = [k for k in UNUSED_OPERANDS if op.inputs[k] != EMPTY]
    if filled:
        raise _changed(f"expected operands {UNUSED_OPERANDS} empty. Received: {filled}")
    for k in (H_STATE, C_STATE):
        if not graph.tensors[op.inputs[k]].isVariable:
            raise _changed(f"expected operand {k} (a state) to be a variable tensor")
    clip = op.builtinOptions.cellClip
    if abs(clip - CONVERTER_CELL_CLIP) > 1e-6:
        raise _changed(f"expected cell_clip={CONVERTER_CELL_CLIP}. Received: {clip}")


def _int8_constant(schema, model, graph, values: np.ndarray, name: bytes) -> int:
    """A new per-tensor symmetric int8 constant tensor (scale max|w|/127)."""
    scale = float(np.abs(values).max()) / 127.0 or 1.0
    quantized = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
    parameters = schema.QuantizationParametersT()
    parameters.scale = [scale]
    parameters.zeroPoint = [0]
    return _constant(schema, model, graph, quantized, name, quantization=parameters)


def _constant(
    schema, model, graph, values, name: bytes, *, quantization=None, buffer=None
) -> int:
    """A new constant tensor; in a new buffer, or in `buffer` (an index)
    that already holds `values`."""
    if buffer is None:
        data = schema.BufferT()
        data.data = np.ascontiguousarray(values).tobytes()
        model.buffers.append(data)
        buffer = len(model.buffers) - 1
    tensor = schema.TensorT()
    tensor.shape = list(values.shape)
    tensor.type = (
        schema.TensorType.INT8 if values.dtype == np.int8 else schema.TensorType.FLOAT32
    )
    tensor.buffer = buffer
    tensor.name = name
    tensor.quantization = quantization
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def state_input(graph, name: str) -> int:
    """The index of the graph input whose name ends with `_{name}:0` (the
    converter prefixes the signature's names)."""
    for i in graph.inputs:
        if graph.tensors[i].name.decode().endswith(f"_{name}:0"):
            return int(i)
    raise _changed(f"no graph input named like {name!r}")


def patch(
    flatbuffer: bytes,
    projections: Mapping[str, np.ndarray | None],
    exposed: Mapping[str, str],
) -> bytes:
    """Gives the converter's fused ops torch's semantics.

    Args:
        flatbuffer: The converter's output, one fused op per layer and
            direction.
        projections: For each op, by the name of its h_0 input
            (`h_0_l{k}[_reverse]`): its `weight_hr` (H_out, H), or None.
        exposed: Model outputs to add: output name -> the name of the state
            input whose tensor the op overwrites with its final state
            (`{"c_n_l0": "c_0_l0"}`).
    """
    schema = _schema()
    model = load(flatbuffer)
    graph = model.subgraphs[0]
    by_h_state = {state_input(graph, name): w for name, w in projections.items()}
    ops = lstm_ops(model)
    if len(ops) != len(projections):
        raise RuntimeError(
            "The TFLite converter did not fuse every LSTM: expected "
            f"{len(projections)} {LSTM_OP} ops. Received: {len(ops)}"
        )
    for op in ops:
        check_converted_op(graph, op)
        op.builtinOptions.cellClip = NO_CLIP
        weight_hr = by_h_state[int(op.inputs[H_STATE])]
        if weight_hr is None:
            continue
        weight_hr = np.asarray(weight_hr, np.float32)
        recurrent = graph.tensors[op.inputs[RECURRENT_WEIGHTS[0]]]
        if recurrent.type == schema.TensorType.INT8:  # a hybrid op
            op.inputs[PROJECTION_WEIGHTS] = _int8_constant(
                schema, model, graph, weight_hr, b"weight_hr"
            )
        else:
            op.inputs[PROJECTION_WEIGHTS] = _constant(
                schema, model, graph, weight_hr, b"weight_hr"
            )
    for output, state in exposed.items():
        _add_output(schema, model, state_input(graph, state), output)
    return dump(model)


def as_rnn_ops(flatbuffer: bytes, nonlinearity: str) -> bytes:
    """The patched fused LSTM ops of an RNN's graph (`fused_graph`) as
    `UNIDIRECTIONAL_SEQUENCE_RNN` ops with `nonlinearity` fused (section 7
    of the module docstring); a hybrid op stays hybrid."""
    schema = _schema()
    model = load(flatbuffer)
    opcode = _opcode(schema, model, getattr(schema.BuiltinOperator, RNN_OP))
    for op in lstm_ops(model):
        lstm_options = op.builtinOptions
        options = schema.SequenceRNNOptionsT()
        options.timeMajor = lstm_options.timeMajor
        options.fusedActivationFunction = RNN_ACTIVATIONS[nonlinearity]
        options.asymmetricQuantizeInputs = lstm_options.asymmetricQuantizeInputs
        op.opcodeIndex = opcode
        op.inputs = [op.inputs[k] for k in RNN_OPERANDS]
        op.builtinOptionsType = schema.BuiltinOptions.SequenceRNNOptions
        op.builtinOptions = options
        op.intermediates = []
    _drop_unused(model)
    return dump(model)


def _drop_unused(model) -> None:
    """Removes the main graph's tensors that no op, graph input or output
    and signature reads, and the buffers no tensor or metadata holds."""
    graph = model.subgraphs[0]
    signatures = [m for sd in model.signatureDefs or [] for m in sd.inputs + sd.outputs]
    used = {*graph.inputs, *graph.outputs, *(m.tensorIndex for m in signatures)}
    for op in graph.operators:
        used.update(int(i) for i in (*op.inputs, *op.outputs) if i != EMPTY)
        used.update(int(i) for i in op.intermediates or [])
    kept = sorted(used)
    new = {old: i for i, old in enumerate(kept)}
    graph.tensors = [graph.tensors[i] for i in kept]
    for op in graph.operators:
        op.inputs = [EMPTY if i == EMPTY else new[int(i)] for i in op.inputs]
        op.outputs = [new[int(i)] for i in op.outputs]
        op.intermediates = [new[int(i)] for i in op.intermediates or []]
    graph.inputs = [new[int(i)] for i in graph.inputs]
    graph.outputs = [new[int(i)] for i in graph.outputs]
    for m in signatures:
        m.tensorIndex = new[m.tensorIndex]
    held = {0}  # buffer 0: the empty buffer every schema keeps first
    held.update(t.buffer for g in model.subgraphs for t in g.tensors)
    held.update(m.buffer for m in model.metadata or [])
    held.update(model.metadataBuffer or [])
    kept_buffers = sorted(held)
    moved = {old: i for i, old in enumerate(kept_buffers)}
    model.buffers = [model.buffers[i] for i in kept_buffers]
    for g in model.subgraphs:
        for t in g.tensors:
            t.buffer = moved[t.buffer]
    for m in model.metadata or []:
        m.buffer = moved[m.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [moved[int(b)] for b in model.metadataBuffer]


def _add_output(schema, model, tensor: int, name: str) -> None:
    graph = model.subgraphs[0]
    graph.outputs = [*graph.outputs, tensor]
    entry = schema.TensorMapT()
    entry.name = name.encode()
    entry.tensorIndex = tensor
    model.signatureDefs[0].outputs.append(entry)


def is_hybrid(flatbuffer: bytes) -> bool:
    """Whether the fused ops hold int8 weights (dynamic-range quantized)."""
    schema = _schema()
    model = load(flatbuffer)
    graph = model.subgraphs[0]
    return any(
        graph.tensors[op.inputs[k]].type == schema.TensorType.INT8
        for op in lstm_ops(model)
        for k in WEIGHT_OPERANDS
    )


def _dequantized_weights(model, tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """An int8 constant's values as float (per-tensor or per-row scales)."""
    schema = _schema()
    q = tensor.quantization
    data = model.buffers[tensor.buffer].data
    if tensor.type != schema.TensorType.INT8 or q is None or data is None:
        return None
    values = np.frombuffer(bytes(np.asarray(data, np.uint8)), np.int8)
    values = values.reshape(list(tensor.shape)).astype(np.float64)
    scale = np.asarray(q.scale, np.float64)
    if scale.size > 1:
        scale = scale.reshape([-1] + [1] * (values.ndim - 1))
    return values * scale, scale


def keep_float_matrices(flatbuffer: bytes, matrices: Iterable[np.ndarray]) -> bytes:
    """Gives every FULLY_CONNECTED (in any subgraph) whose int8 weights
    quantize one of `matrices` (float32, (out, in) or its transpose) the
    float32 matrix back: that op then runs TFLite's float kernel."""
    schema = _schema()
    model = load(flatbuffer)
    wanted = [np.asarray(m, np.float32) for m in matrices]
    fully_connected = schema.BuiltinOperator.FULLY_CONNECTED
    buffers: dict[int, int] = {}  # int8 buffer -> float32 buffer (subgraphs share)
    for graph in model.subgraphs:
        replaced: dict[int, int] = {}
        for op in graph.operators:
            if _code(model, op) != fully_connected or len(op.inputs) < 2:
                continue
            index = int(op.inputs[1])
            if index in replaced:
                op.inputs[1] = replaced[index]
                continue
            found = _dequantized_weights(model, graph.tensors[index])
            if found is None:
                continue
            values, scale = found
            for matrix in wanted:
                for candidate in (matrix, matrix.T):
                    if candidate.shape == values.shape and np.all(
                        np.abs(values - candidate) <= 0.51 * scale + 1e-7
                    ):
                        original = graph.tensors[index]
                        replaced[index] = _constant(
                            schema,
                            model,
                            graph,
                            np.ascontiguousarray(candidate),
                            original.name + b"_float",
                            buffer=buffers.get(original.buffer),
                        )
                        buffers[original.buffer] = graph.tensors[replaced[index]].buffer
                        op.inputs[1] = replaced[index]
                        break
                if index in replaced:
                    break
    return dump(model)


def keep_fused_float(
    flatbuffer: bytes, weights: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> bytes:
    """Gives the fused ops named in `weights` (by their h_0 input's name:
    `(weight_ih, weight_hh)` in torch's layout) float32 weights in all eight
    gate operands: such an op runs TFLite's float kernel. Call before
    `patch` (which adds an int8 projection to a hybrid op only)."""
    schema = _schema()
    model = load(flatbuffer)
    graph = model.subgraphs[0]
    by_h_state = {state_input(graph, name): w for name, w in weights.items()}
    for op in lstm_ops(model):
        check_converted_op(graph, op)
        found = by_h_state.get(int(op.inputs[H_STATE]))
        if found is None:
            continue
        weight_ih, weight_hh = (np.asarray(w, np.float32) for w in found)
        for operands, matrix in (
            (INPUT_WEIGHTS, weight_ih),
            (RECURRENT_WEIGHTS, weight_hh),
        ):
            for k, gate in zip(operands, np.split(matrix, 4), strict=True):
                tensor = graph.tensors[op.inputs[k]]
                if list(tensor.shape) != list(gate.shape):
                    raise _changed(
                        f"expected operand {k} of shape {list(gate.shape)}. "
                        f"Received: {list(tensor.shape)}"
                    )
                op.inputs[k] = _constant(
                    schema,
                    model,
                    graph,
                    np.ascontiguousarray(gate),
                    tensor.name + b"_float",
                )
    return dump(model)


# -- full integer ----------------------------------------------------------------


def quantize_int8(
    flatbuffer: bytes,
    dataset: Iterable[dict[str, np.ndarray]],
    cell_ranges: Mapping[str, float],
    exposed_cells: Mapping[str, str],
) -> bytes:
    """Full integer quantization of a patched float model (int8 activations,
    16-bit cell state); float32 model inputs and outputs.

    The model must not list its states as outputs yet (`mlir_quantize`
    refuses a state tensor with a second use).

    Args:
        flatbuffer: `patch`'s output with `exposed={}`.
        dataset: Feeds for the calibrator: dicts of signature input names.
        cell_ranges: For each op, by the name of its c_0 input, the largest
            |c_t| the float model reaches on the dataset.
        exposed_cells: Outputs to add: output name -> the c_0 input's name.
            Each exposes the op's int16 cell-state variable itself, with its
            scale (`dequantize` reads it).
    """
    from tensorflow.lite.python.convert import mlir_quantize
    from tensorflow.lite.python.optimize import calibrator

    dataset = list(dataset)
    with _quiet_quantizer():
        with_intermediates = calibrator.add_intermediate_tensors(flatbuffer)
        calibrated = calibrator.Calibrator(with_intermediates).calibrate(
            lambda: iter(dataset)
        )
    model = load(calibrated)
    graph = model.subgraphs[0]
    for op in lstm_ops(model):
        if op.intermediates is None or len(op.intermediates) != N_INTERMEDIATES:
            raise _changed(
                f"expected {N_INTERMEDIATES} intermediates after calibration. "
                f"Received: {op.intermediates}"
            )
        cell = graph.tensors[op.inputs[C_STATE]]
        name = _state_name_of(cell.name.decode())
        bound = max(INT8_MIN_CELL_RANGE, INT8_CELL_RANGE_MARGIN * cell_ranges[name])
        cell.quantization.min, cell.quantization.max = [-bound], [bound]
    with _quiet_quantizer():
        quantized = mlir_quantize(
            dump(model),
            False,  # per-channel where the kernels allow it
            input_data_type=tf.float32,
            output_data_type=tf.float32,
        )
    return _after_int8(quantized, exposed_cells)


@contextlib.contextmanager
def _quiet_quantizer():
    with warnings.catch_warnings(), filtered_stderr(QUANTIZER_NOISE):
        warnings.filterwarnings("ignore", CALIBRATOR_WARNING, UserWarning)
        yield


def _state_name_of(tensor_name: str) -> str:
    """`c_0_l0_reverse` from the converter's `serving_default_c_0_l0_reverse:0`."""
    name = tensor_name.rsplit(":", 1)[0]
    start = name.find("c_0_l")
    if start < 0:
        raise _changed(f"cannot tell the cell state of tensor {tensor_name!r}")
    return name[start:]


def _after_int8(flatbuffer: bytes, exposed_cells: Mapping[str, str]) -> bytes:
    schema = _schema()
    model = load(flatbuffer)
    graph = model.subgraphs[0]
    producer = {int(o): op for op in graph.operators for o in op.outputs}
    cells = {}
    for op in lstm_ops(model):
        output = graph.tensors[op.outputs[0]].quantization
        graph.tensors[op.inputs[H_STATE]].quantization = copy.deepcopy(output)
        if op.inputs[PROJECTION_WEIGHTS] == EMPTY:  # the hidden state is the output
            graph.tensors[op.intermediates[-1]].quantization = copy.deepcopy(output)
        cell = int(op.inputs[C_STATE])
        fed_by = graph.tensors[int(producer[cell].inputs[0])].name.decode()
        cells[_state_name_of(fed_by)] = cell
        if graph.tensors[cell].type != schema.TensorType.INT16:
            raise _changed("expected an int16 cell state after quantization")
    _requantize_same_scale_ops(schema, model)
    for output, state in exposed_cells.items():
        _add_output(schema, model, cells[state], output)
    return dump(model)


def _requantize_same_scale_ops(schema, model) -> None:
    """Gives each byte-copying op's output its input's quantization, and
    requantizes (int8 -> int8 QUANTIZE) to what `mlir_quantize` had chosen
    for the consumers (e.g. a CONCATENATION's scale)."""
    graph = model.subgraphs[0]
    wanted = {getattr(schema.BuiltinOperator, name) for name in SAME_SCALE_OPS}
    quantize = _opcode(schema, model, schema.BuiltinOperator.QUANTIZE)
    integer = (schema.TensorType.INT8, schema.TensorType.INT16)
    ops = list(graph.operators)
    result = []
    for op in ops:
        result.append(op)
        if _code(model, op) not in wanted:
            continue
        source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if source.type not in integer or source.quantization is None:
            continue
        a, b = source.quantization, target.quantization
        if list(a.scale) == list(b.scale) and list(a.zeroPoint) == list(b.zeroPoint):
            continue
        old = int(op.outputs[0])
        fixed = copy.deepcopy(target)
        fixed.name = target.name + b"_requantized"
        target.quantization = copy.deepcopy(a)
        graph.tensors.append(fixed)
        new = len(graph.tensors) - 1
        for other in ops:
            if other is not op:
                other.inputs = [new if int(t) == old else t for t in other.inputs]
        graph.outputs = [new if int(t) == old else t for t in graph.outputs]
        for signature in model.signatureDefs:
            for entry in signature.outputs:
                if entry.tensorIndex == old:
                    entry.tensorIndex = new
        requantize = schema.OperatorT()
        requantize.opcodeIndex = quantize
        requantize.inputs, requantize.outputs = [old], [new]
        result.append(requantize)
    graph.operators = result


def _opcode(schema, model, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
