"""Canaries: each TFLite converter or LiteRT internal that tflstm relies on
(tflstm/tflite/_internals.py), checked on a tiny LSTM so that an upgrade of
TensorFlow or LiteRT that changes one fails here, by name, before the export
tests fail in less obvious ways."""

import numpy as np
import pytest
import tensorflow as tf
import torch
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import converters
from tflstm.tflite import _internals as internals
from tflstm.tflite import export_tflite, quantize, run_tflite

H_IN, H, BATCH, STEPS = 3, 4, 2, 5
RUNTIME_ATOL = 1e-5
QUANTIZED_RTOL = 5e-2  # a broken quantization is off by the output's scale


def _rng_weights():
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((4 * H, H_IN)).astype("float32"),
        rng.standard_normal((4 * H, H)).astype("float32"),
        rng.standard_normal(4 * H).astype("float32"),
    )


W_IH, W_HH, BIAS = _rng_weights()


def _composite_model() -> tf.types.experimental.ConcreteFunction:
    """The composite convention alone, as tflstm uses it."""
    fused = internals.fused_lstm()
    specs = [
        tf.TensorSpec([None, BATCH, H_IN], tf.float32, "input"),
        tf.TensorSpec([BATCH, H], tf.float32, "h_0_l0"),
        tf.TensorSpec([BATCH, H], tf.float32, "c_0_l0"),
    ]

    @tf.function(input_signature=specs, autograph=False)
    def serve(input, h_0_l0, c_0_l0):
        _, y, _, _, _ = fused(
            input,
            h_0_l0,
            c_0_l0,
            tf.constant(W_IH.T.copy()),
            tf.constant(W_HH.T.copy()),
            tf.constant(BIAS),
        )
        return {"output": y}

    return serve.get_concrete_function()


@pytest.fixture(scope="module")
def converted():
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [_composite_model()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def test_schema_and_flatbuffer_utils_still_exist():
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    assert hasattr(schema.BuiltinOperator, internals.LSTM_OP)
    for name in ("TensorT", "BufferT", "TensorMapT", "OperatorT", "OperatorCodeT"):
        assert hasattr(schema, name), f"schema_py_generated lost {name}"
    fields = vars(schema.UnidirectionalSequenceLSTMOptionsT())
    for field in ("cellClip", "projClip", "timeMajor", "asymmetricQuantizeInputs"):
        assert field in fields, f"the LSTM options lost {field}"
    assert "scale" in vars(schema.QuantizationParametersT())
    for name in ("convert_bytearray_to_object", "convert_object_to_bytearray"):
        assert hasattr(flatbuffer_utils, name), f"flatbuffer_utils lost {name}"


def test_composite_fuses_through_from_concrete_functions(converted):
    assert internals.op_names(converted) == [internals.LSTM_OP]


def test_operand_layout_and_converter_options(converted):
    model = internals.load(converted)
    graph = model.subgraphs[0]
    (op,) = internals.lstm_ops(model)
    internals.check_converted_op(graph, op)  # count, empty operands, clip 10

    def constant(index):
        tensor = graph.tensors[op.inputs[index]]
        data = bytes(model.buffers[tensor.buffer].data)
        return np.frombuffer(data, np.float32).reshape(tensor.shape)

    for gate in range(4):  # torch's gate order (i, f, g, o), torch's layout
        rows = slice(gate * H, (gate + 1) * H)
        assert np.array_equal(constant(internals.INPUT_WEIGHTS[gate]), W_IH[rows])
        assert np.array_equal(constant(internals.RECURRENT_WEIGHTS[gate]), W_HH[rows])
        assert np.array_equal(constant(internals.GATE_BIASES[gate]), BIAS[rows])
    assert op.inputs[internals.H_STATE] == internals.state_input(graph, "h_0_l0")
    assert op.inputs[internals.C_STATE] == internals.state_input(graph, "c_0_l0")
    options = op.builtinOptions
    assert options.cellClip == internals.CONVERTER_CELL_CLIP
    assert (options.projClip, options.timeMajor) == (0.0, True)
    assert options.fusedActivationFunction == internals.TANH


def test_patched_op_has_torch_semantics():
    """Clip off, projection added, the final c state written into the state
    variable (exposed as c_n): a cell state far beyond the converter's clip."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, proj_size=2)
    with torch.no_grad():
        module.bias_ih_l0[: 3 * H] = 10.0  # i, f, g open: |c| grows by ~1 a step
    layer = converters.from_torch(module)
    x = np.random.default_rng(1).standard_normal((30, BATCH, H_IN)).astype("float32")
    output, (_, c_n) = run_tflite(
        export_tflite(layer, batch_size=BATCH), layer.get_config(), x
    )
    with torch.no_grad():
        want, (_, want_c) = module(torch.from_numpy(x))
    assert np.abs(want_c.numpy()).max() > 2 * internals.CONVERTER_CELL_CLIP
    np.testing.assert_allclose(c_n, want_c.numpy(), rtol=1e-6, atol=RUNTIME_ATOL)
    np.testing.assert_allclose(output, want.numpy(), rtol=0, atol=RUNTIME_ATOL)


def test_dynamic_range_threshold_and_hybrid_projection():
    """The converter makes the op hybrid from MIN_QUANTIZED_ELEMENTS weights
    per gate matrix on, with per-tensor int8 weights and asymmetric inputs;
    the added projection is then int8 too, and read as such."""
    small = 32 * 31  # H * H_in below the threshold: the op stays float32
    assert small < internals.MIN_QUANTIZED_ELEMENTS <= 32 * 32
    torch.manual_seed(0)
    below = converters.from_torch(torch.nn.LSTM(31, 32))
    assert not internals.is_hybrid(export_tflite(below, quantize="dynamic"))
    module = torch.nn.LSTM(32, 64, proj_size=16)
    layer = converters.from_torch(module)
    flatbuffer = export_tflite(layer, batch_size=BATCH, quantize="dynamic")
    from tensorflow.lite.python import schema_py_generated as schema

    model = internals.load(flatbuffer)
    graph = model.subgraphs[0]
    (op,) = internals.lstm_ops(model)
    assert op.builtinOptions.asymmetricQuantizeInputs
    for k in (*internals.WEIGHT_OPERANDS, internals.PROJECTION_WEIGHTS):
        tensor = graph.tensors[op.inputs[k]]
        assert tensor.type == schema.TensorType.INT8, k
        assert len(tensor.quantization.scale) == 1, k  # per tensor
    x = np.random.default_rng(1).standard_normal((STEPS, BATCH, 32)).astype("float32")
    output, _ = run_tflite(flatbuffer, layer.get_config(), x)
    with torch.no_grad():
        want = module(torch.from_numpy(x))[0].numpy()
    error = np.abs(output - want).max() / np.abs(want).max()
    assert error < QUANTIZED_RTOL, f"hybrid op with projection: rel error {error}"


def test_full_integer_internals():
    """The calibrator's intermediates, a 16-bit cell state with a power-of-two
    scale no finer than 2^-15, the h state on the output's scale."""
    from tensorflow.lite.python import convert as lite_convert
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python.optimize import calibrator

    assert hasattr(calibrator, "add_intermediate_tensors")
    assert hasattr(calibrator.Calibrator, "calibrate")
    assert hasattr(lite_convert, "mlir_quantize")
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H)
    layer = converters.from_torch(module)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((STEPS, BATCH, H_IN)).astype("float32") for _ in "ab"]
    flatbuffer = export_tflite(
        layer, batch_size=BATCH, quantize="int8", representative_data=data
    )
    model = internals.load(flatbuffer)
    graph = model.subgraphs[0]
    (op,) = internals.lstm_ops(model)
    assert len(op.intermediates) == internals.N_INTERMEDIATES
    cell = graph.tensors[op.inputs[internals.C_STATE]]
    assert cell.type == schema.TensorType.INT16
    scale = float(cell.quantization.scale[0])
    assert scale >= 2.0**-15 and np.log2(scale) == round(np.log2(scale)), scale
    hidden = graph.tensors[op.inputs[internals.H_STATE]]
    assert hidden.type == schema.TensorType.INT8
    assert list(hidden.quantization.scale) == list(
        graph.tensors[op.outputs[0]].quantization.scale
    )
    output, (_, c_n) = run_tflite(flatbuffer, layer.get_config(), data[0])
    with torch.no_grad():
        want, (_, want_c) = module(torch.from_numpy(data[0]))
    for got, expected in ((output, want), (c_n, want_c)):
        expected = expected.numpy()
        error = np.abs(got - expected).max() / np.abs(expected).max()
        assert error < QUANTIZED_RTOL, error


def test_xnnpack_still_does_not_take_the_fused_op(converted):
    """Why the unrolled graph wins from N=2 on: if XNNPACK starts to delegate
    the fused op, measure again (benchmarks/tflite_latency.py) and revisit
    `tflstm.tflite.choose_graph`."""
    interpreter = Interpreter(
        model_content=converted, experimental_op_resolver_type=OpResolverType.AUTO
    )
    interpreter.allocate_tensors()
    ops = [node["op_name"] for node in interpreter._get_ops_details()]
    assert internals.LSTM_OP in ops and "DELEGATE" not in ops, ops


def test_dense_layers_quantized_per_channel():
    """Dynamic range: FULLY_CONNECTED weights get one scale per output row
    (the converter's default, `PER_CHANNEL_DENSE_ATTRIBUTE` False), and a
    FULLY_CONNECTED given float32 weights back runs the float kernel."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [_composite_model()], tf.Module()
    )
    assert getattr(converter, internals.PER_CHANNEL_DENSE_ATTRIBUTE) is False
    rows, cols = 64, 32  # >= MIN_QUANTIZED_ELEMENTS weights: quantized
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((rows, cols)).astype("float32")
    weights[0, 0] = 100.0  # a heavy tail in row 0 only

    @tf.function(input_signature=[tf.TensorSpec([2, cols], tf.float32, "x")])
    def dense(x):
        return {"y": tf.matmul(x, tf.constant(weights), transpose_b=True)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [dense.get_concrete_function()], tf.Module()
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    hybrid = converter.convert()
    model = internals.load(hybrid)
    graph = model.subgraphs[0]
    (op,) = graph.operators
    tensor = graph.tensors[op.inputs[1]]
    assert tensor.type == internals._schema().TensorType.INT8
    assert len(tensor.quantization.scale) == rows
    x = rng.uniform(0, 1, (2, cols)).astype("float32")
    want = x @ weights.T

    def run(flatbuffer):
        runner = Interpreter(model_content=flatbuffer).get_signature_runner()
        return runner(x=x)["y"]

    restored = internals.keep_float_matrices(hybrid, [weights])
    assert np.abs(run(restored) - want).max() <= RUNTIME_ATOL * np.abs(want).max()
    assert np.abs(run(hybrid) - want).max() > RUNTIME_ATOL * np.abs(want).max()


def test_fused_op_runs_float_weights_after_hybrid_conversion(monkeypatch):
    """`keep_fused_float`: a fused op converted as hybrid, given float32
    weights in all eight gate operands, runs the float kernel (every matrix
    counts as heavy-tailed here)."""
    layer = converters.from_torch(torch.nn.LSTM(40, 32))  # 32x40 >= 1,024
    x = np.random.default_rng(2).uniform(0, 1, (STEPS, 1, 40)).astype("float32")
    want, _ = run_tflite(export_tflite(layer), layer.get_config(), x)
    hybrid = export_tflite(layer, quantize="dynamic")
    assert internals.is_hybrid(hybrid)
    monkeypatch.setattr(quantize, "HEAVY_TAIL_RATIO", 0.0)
    kept = export_tflite(layer, quantize="dynamic")
    assert not internals.is_hybrid(kept)
    got, _ = run_tflite(kept, layer.get_config(), x)
    np.testing.assert_allclose(got, want, atol=RUNTIME_ATOL)


def test_rnn_op_written_from_the_lstm_op_runs_in_litert():
    """Section 7: the schema's RNN op and options, the LSTM operands that
    `as_rnn_ops` keeps (gate i's weights, its bias, the h state), and LiteRT's
    kernel reading them in that order with the activation fused."""
    schema = internals._schema()
    assert hasattr(schema.BuiltinOperator, internals.RNN_OP)
    assert hasattr(schema.BuiltinOptions, "SequenceRNNOptions")
    options = schema.SequenceRNNOptionsT()
    for field in ("timeMajor", "fusedActivationFunction", "asymmetricQuantizeInputs"):
        assert hasattr(options, field), field
    assert schema.ActivationFunctionType.RELU == internals.RNN_ACTIVATIONS["relu"]
    assert schema.ActivationFunctionType.TANH == internals.RNN_ACTIVATIONS["tanh"]
    torch.manual_seed(0)
    module = torch.nn.RNN(H_IN, H, nonlinearity="relu")
    layer = converters.from_torch(module)
    flatbuffer = export_tflite(layer, batch_size=BATCH, graph="fused")
    model = internals.load(flatbuffer)
    ops = internals.op_names(flatbuffer)
    assert ops.count(internals.RNN_OP) == 1 and internals.LSTM_OP not in ops, ops
    rnn = next(
        o for o in model.subgraphs[0].operators
        if internals._code(model, o) == getattr(schema.BuiltinOperator, internals.RNN_OP)
    )  # fmt: skip
    shapes = [list(model.subgraphs[0].tensors[i].shape) for i in rnn.inputs]
    assert shapes[1:] == [[H, H_IN], [H, H], [H], [BATCH, H]], shapes
    assert model.subgraphs[0].tensors[rnn.inputs[4]].isVariable
    x = np.random.default_rng(0).standard_normal((STEPS, BATCH, H_IN))
    x = x.astype("float32")
    output, h_n = run_tflite(flatbuffer, layer.get_config(), x)
    with torch.no_grad():
        want, want_h = module(torch.from_numpy(x))
    np.testing.assert_allclose(output, want.numpy(), atol=RUNTIME_ATOL, rtol=0)
    np.testing.assert_allclose(h_n, want_h.numpy(), atol=RUNTIME_ATOL, rtol=0)
