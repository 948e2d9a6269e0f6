"""The kernel policy: the choice as a table, `supports_jit`, XLA models
against torch, a GPU made visible by patching the probe (kernels chosen,
exports portable), the device scope, and no retracing warnings."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from oracle import ATOL, copy_torch_weights, weight_errors
from tensorflow.core.protobuf import saved_model_pb2

import tflstm
from tflstm import cells
from tflstm._ops import Weights
from tflstm.export import export_saved_model
from tflstm.kernels import policy as _policy
from tflstm.kernels import probes as _probes
from tflstm.kernels.cudnn import cudnn_params
from tflstm.tflite import tflite_ops

H_IN, H = 4, 6
NOT_PORTABLE = {"CudnnRNNV3", "BlockLSTMV2"}
LOOPS = {"While", "StatelessWhile"}
# What a CPU kernel shows: a loop, or BlockLSTMV2 (chosen for inference with
# small static batches).
CPU_KERNEL = LOOPS | {"BlockLSTMV2"}

BASE = _policy.KernelFacts(
    cell="lstm",
    training=False,
    dtype="float32",
    projection=False,
    lengths=False,
    hidden_size=128,
    batch=1,
    gpu=False,
    in_xla=False,
    exporting="",
)

# (changes to BASE, expected kernel)
TABLE = [
    ({}, "block"),  # a static batch of 1
    ({"batch": 32}, "loop"),
    ({"hidden_size": 512}, "loop"),
    ({"batch": 8}, "block"),
    ({"batch": 9}, "loop"),
    ({"batch": None}, "loop"),
    ({"lengths": True}, "loop"),
    ({"dtype": "float16"}, "block"),
    ({"training": True}, "bptt"),
    ({"in_xla": True}, "loop"),
    ({"in_xla": True, "training": True}, "bptt"),
    ({"exporting": "saved_model"}, "portable"),
    ({"exporting": "litert"}, "litert"),
    ({"exporting": "litert", "gpu": True}, "litert"),
    ({"exporting": "saved_model", "kernel": "xla"}, "portable"),
    ({"kernel": "loop"}, "loop"),
    ({"kernel": "loop", "training": True}, "bptt"),
    ({"kernel": "block"}, "block"),
    ({"kernel": "block", "training": True}, "bptt"),
    ({"kernel": "block", "exporting": "saved_model"}, "block"),  # asked for by name
    ({"kernel": "xla"}, "loop_xla"),
    ({"kernel": "xla", "training": True}, "bptt_xla"),
    ({"kernel": "xla", "in_xla": True}, "loop"),  # already inside XLA
    ({"kernel": "xla", "in_xla": True, "training": True}, "bptt"),
    ({"gpu": True}, "cudnn"),
    ({"gpu": True, "training": True}, "cudnn"),
    ({"gpu": True, "lengths": True}, "cudnn"),
    ({"gpu": True, "dtype": "float64"}, "cudnn"),
    ({"gpu": True, "projection": True}, "loop"),  # cuDNN has no projection
    ({"gpu": True, "projection": True, "training": True}, "bptt"),
    ({"gpu": True, "in_xla": True}, "loop"),
    ({"gpu": True, "exporting": "saved_model"}, "portable"),
    ({"gpu": True, "exporting": "saved_model", "training": True}, "portable"),
    ({"gpu": True, "use_cudnn": False}, "loop"),
    ({"gpu": True, "use_cudnn": False, "training": True}, "bptt"),
    ({"gpu": True, "kernel": "xla"}, "loop_xla"),  # another kernel asked for
    ({"gpu": True, "use_cudnn": True}, "cudnn"),
    ({"gpu": True, "use_cudnn": True, "exporting": "saved_model"}, "cudnn"),
    # A GRU: no BlockLSTMV2 (an LSTM op), cuDNN's GRU on a GPU, the rest alike.
    ({"cell": "gru"}, "loop"),
    ({"cell": "gru", "dtype": "float16"}, "loop"),
    ({"cell": "gru", "training": True}, "bptt"),
    ({"cell": "gru", "exporting": "litert"}, "litert"),
    ({"cell": "gru", "kernel": "xla"}, "loop_xla"),
    ({"cell": "gru", "gpu": True}, "cudnn"),
    ({"cell": "gru", "gpu": True, "lengths": True, "training": True}, "cudnn"),
    ({"cell": "gru", "gpu": True, "exporting": "saved_model"}, "portable"),
    # An RNN (tanh or relu: one kind): as a GRU; cuDNN's rnn_tanh/rnn_relu.
    ({"cell": "rnn"}, "loop"),
    ({"cell": "rnn", "training": True}, "bptt"),
    ({"cell": "rnn", "gpu": True, "lengths": True}, "cudnn"),
    ({"cell": "rnn", "exporting": "litert"}, "litert"),
]


@pytest.mark.parametrize(("changes", "expected"), TABLE)
def test_policy_table(changes, expected):
    assert _policy.choose_kernel(BASE._replace(**changes)) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"use_cudnn": True},
            "use_cudnn=True was specified, but cuDNN cannot serve this layer: no "
            "GPU is visible (or the device scope is a CPU). Pass use_cudnn='auto' "
            "to fall back to a non-cuDNN kernel. Received: cell='lstm', dtype='float32', "
            "projection=False, lengths=False, gpu=False, kernel='auto', "
            "use_cudnn=True",
        ),
        (
            {"use_cudnn": True, "gpu": True, "projection": True},
            "cuDNN cannot serve this layer: cuDNN has no projection (proj_size > 0)",
        ),
        (
            {"use_cudnn": True, "gpu": True, "in_xla": True},
            "cuDNN cannot serve this layer: the layer runs inside XLA (jit_compile)",
        ),
        (
            {"kernel": "block", "projection": True},
            "kernel='block' (TensorFlow's BlockLSTMV2) cannot serve this layer: it "
            "is an LSTM with no projection, no sequence lengths, no float64, and "
            "cannot be compiled by XLA. Pass kernel='auto'. Received: "
            "cell='lstm', dtype='float32', "
            "projection=True, lengths=False, gpu=False, kernel='block', "
            "use_cudnn='auto'",
        ),
        ({"kernel": "block", "lengths": True}, "lengths=True"),
        ({"kernel": "block", "dtype": "float64"}, "dtype='float64'"),
        ({"kernel": "block", "in_xla": True}, "in_xla=True"),
        ({"kernel": "block", "cell": "gru"}, "cell='gru'"),
    ],
)
def test_explicit_choices_that_cannot_serve_raise(changes, message):
    with pytest.raises(ValueError) as info:
        _policy.choose_kernel(BASE._replace(**changes))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"kernel": "fused"},
            "Received an invalid value for argument `kernel`, expected one of "
            "'auto', 'loop', 'block', 'xla', got 'fused'.",
        ),
        (
            {"use_cudnn": 1},
            "Received an invalid value for argument `use_cudnn`, expected one of "
            "'auto', True, False, got 1.",
        ),
    ],
)
def test_option_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        tflstm.LSTM(H_IN, H, **kwargs)
    assert str(info.value) == message


def _graph_ops(fn, *specs):
    graph = fn.get_concrete_function(*specs).graph
    ops = {op.type for op in graph.get_operations()}
    for f in graph.as_graph_def().library.function:
        ops |= {node.op for node in f.node_def}
    return ops


def _layer_ops(layer, training, steps=5, jit_compile=False, **call_kwargs):
    fn = tf.function(
        lambda x: layer(x, training=training, **call_kwargs), jit_compile=jit_compile
    )
    return _graph_ops(fn, tf.TensorSpec([steps, 2, layer.input_size]))


def test_cpu_kernels_in_graphs():
    """The kernels in traced graphs (TensorFlow's oneDNN setting does not
    enter the choice: the suite runs with it on and off)."""
    default = tflstm.LSTM(H_IN, H, bidirectional=True)
    assert default.supports_jit
    assert not _layer_ops(default, training=True) & NOT_PORTABLE
    inference = _layer_ops(default, training=False)  # a batch of 2
    assert "BlockLSTMV2" in inference  # a static batch of 2, either setting
    batch_of_9 = _graph_ops(
        tf.function(lambda x: default(x, training=False)),
        tf.TensorSpec([5, 9, H_IN]),
    )
    assert "BlockLSTMV2" not in batch_of_9
    assert "BlockLSTMV2" not in _layer_ops(tflstm.LSTM(H_IN, 512), training=False)
    block = tflstm.LSTM(H_IN, H, kernel="block")
    assert not block.supports_jit
    assert "BlockLSTMV2" in _layer_ops(block, training=False)
    assert "BlockLSTMV2" not in _layer_ops(block, training=True)
    # Inside XLA, an XLA kernel whatever the option (but "block").
    for kernel in ("auto", "loop", "xla"):
        layer = tflstm.LSTM(H_IN, H, kernel=kernel)
        assert not _layer_ops(layer, False, jit_compile=True) & NOT_PORTABLE


@pytest.fixture
def gpu_visible(monkeypatch):
    """A GPU as far as tflstm's probe knows (graphs are traced, not run)."""
    monkeypatch.setattr(_probes, "gpu_visible", lambda: True)


def test_gpu_visible_chooses_cudnn_and_turns_keras_auto_xla_off(gpu_visible):
    from keras.src.trainers.trainer import model_supports_jit

    layer = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True)
    assert not layer.supports_jit  # as keras.layers.LSTM on a GPU
    model = keras.Sequential([keras.Input((None, H_IN)), keras.layers.Identity()])
    model.add(tflstm.LSTM(H_IN, H, batch_first=True, return_state=False))
    assert not model_supports_jit(model)
    for training in (True, False):
        assert "CudnnRNNV3" in _layer_ops(layer, training)
    lengths = tf.constant([5, 3])
    assert "CudnnRNNV3" in _layer_ops(layer, False, sequence_lengths=lengths)
    # Where cuDNN cannot serve, or the user says no: the CPU kernels.
    for other in (
        tflstm.LSTM(H_IN, H, proj_size=2),
        tflstm.LSTM(H_IN, H, use_cudnn=False),
    ):
        assert other.supports_jit
        for training in (True, False):
            ops = _layer_ops(other, training)
            assert "CudnnRNNV3" not in ops and ops & CPU_KERNEL
        assert not _layer_ops(other, False, jit_compile=True) & NOT_PORTABLE


def _cudnn_modes(fn, *specs) -> set:
    """The `rnn_mode` of every CudnnRNNV3 op in a traced function."""
    graph = fn.get_concrete_function(*specs).graph
    nodes = list(graph.as_graph_def().node)
    for f in graph.as_graph_def().library.function:
        nodes += list(f.node_def)
    return {n.attr["rnn_mode"].s.decode() for n in nodes if n.op == "CudnnRNNV3"}


def test_gpu_visible_gru_runs_cudnns_gru(gpu_visible):
    """A GRU on a GPU is cuDNN's GRU (PyTorch's: the reset gate after the
    recurrent matmul), training and inference, with lengths; a GRU never runs
    BlockLSTMV2; exports stay portable."""
    gru = tflstm.GRU(H_IN, H, num_layers=2, bidirectional=True)
    assert not gru.supports_jit
    spec = tf.TensorSpec([5, 2, H_IN])
    lengths = tf.constant([5, 3])
    for training in (True, False):
        fn = tf.function(lambda x, t=training: gru(x, training=t))
        assert _cudnn_modes(fn, spec) == {"gru"}
        fn = tf.function(
            lambda x, t=training: gru(x, training=t, sequence_lengths=lengths)
        )
        assert _cudnn_modes(fn, spec) == {"gru"}
    cpu = tflstm.GRU(H_IN, H, use_cudnn=False)
    for training in (True, False):
        ops = _layer_ops(cpu, training)
        assert "CudnnRNNV3" not in ops and "BlockLSTMV2" not in ops and ops & LOOPS
    lstm = tflstm.LSTM(H_IN, H)
    assert _cudnn_modes(tf.function(lambda x: lstm(x)), spec) == {"lstm"}


def test_gpu_visible_rnn_runs_cudnns_rnn_in_its_mode(gpu_visible):
    """An RNN on a GPU is cuDNN's RNN in its nonlinearity's mode (torch's
    `rnn_tanh` / `rnn_relu`), training and inference, with lengths; its
    summed bias is cuDNN's input bias, the recurrent one zeros."""
    spec = tf.TensorSpec([5, 2, H_IN])
    lengths = tf.constant([5, 3])
    for nonlinearity in ("tanh", "relu"):
        rnn = tflstm.RNN(H_IN, H, num_layers=2, nonlinearity=nonlinearity)
        assert not rnn.supports_jit
        for training in (True, False):
            fn = tf.function(
                lambda x, t=training, r=rnn: r(x, training=t, sequence_lengths=lengths)
            )
            assert _cudnn_modes(fn, spec) == {f"rnn_{nonlinearity}"}
    weights = Weights(
        tf.ones((H, 3)), tf.ones((H, H)), tf.fill([H], 2.0), None, None
    ).with_bias(cells.RNN_RELU)
    sizes = [H * 3, H * H, H, H]
    _, _, bias, recurrent_bias = tf.split(
        cudnn_params(cells.RNN_RELU, weights, rocm=False), sizes
    )
    assert np.all(bias.numpy() == 2.0) and not np.any(recurrent_bias)


def test_cudnn_params_of_a_gru_keep_both_biases():
    """cuDNN's GRU buffer: the 3 input matrices, the 3 recurrent ones, then
    the input biases and the recurrent biases, each in torch's (r, z, n)
    order: torch's bias_hh is cuDNN's recurrent bias, not summed."""
    hidden, rng = 2, np.random.default_rng(0)
    weights = Weights(
        tf.constant(rng.standard_normal((3 * hidden, 3))),
        tf.constant(rng.standard_normal((3 * hidden, hidden))),
        tf.constant(rng.standard_normal(3 * hidden)),
        None,
        tf.constant(rng.standard_normal(3 * hidden)),
    )
    sizes = [hidden * 3] * 3 + [hidden * hidden] * 3 + [hidden] * 6
    pieces = tf.split(cudnn_params(cells.GRU, weights, rocm=False), sizes)
    for i, (name, block) in enumerate(
        (("weight_ih", 0), ("weight_hh", 3), ("bias", 6), ("recurrent_bias", 9))
    ):
        del i
        expected = np.split(getattr(weights, name).numpy(), 3)
        for g in range(3):
            np.testing.assert_array_equal(pieces[block + g], expected[g].ravel())
    # without biases: zeros on both sides
    bare = cudnn_params(
        cells.GRU, weights._replace(bias=None, recurrent_bias=None), False
    )
    assert not np.any(tf.split(bare, sizes)[6:])


def test_gpu_visible_device_scope_cpu_runs_a_cpu_kernel(gpu_visible):
    layer = tflstm.LSTM(H_IN, H)

    @tf.function
    def on_cpu(x):
        with tf.device("/CPU:0"):
            return layer(x, training=False)

    ops = _graph_ops(on_cpu, tf.TensorSpec([5, 2, H_IN]))
    assert "CudnnRNNV3" not in ops and ops & CPU_KERNEL
    x = np.random.default_rng(0).standard_normal((5, 2, H_IN)).astype("float32")
    with tf.device("/CPU:0"):  # eager too; it runs, since it is not cuDNN
        eager_output, _ = layer(x)
    np.testing.assert_allclose(eager_output, on_cpu(x)[0], atol=1e-6, rtol=0)


def _saved_model_ops(path):
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    ops = set()
    for graph in saved.meta_graphs:
        ops |= {n.op for n in graph.graph_def.node}
        for f in graph.graph_def.library.function:
            ops |= {n.op for n in f.node_def}
    return ops


def test_exports_are_portable_when_a_gpu_is_visible(gpu_visible, tmp_path):
    """No cuDNN and no BlockLSTMV2 op in any export of default layers."""
    layer = tflstm.LSTM(H_IN, H, num_layers=2, bidirectional=True, batch_first=True)
    export_saved_model(layer, tmp_path / "ours")
    ops = _saved_model_ops(tmp_path / "ours")
    assert ops & LOOPS and not ops & NOT_PORTABLE
    export_saved_model(layer, tmp_path / "lengths", sequence_lengths=True)
    assert not _saved_model_ops(tmp_path / "lengths") & NOT_PORTABLE

    inputs = keras.Input((None, H_IN))
    output, _ = layer(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(output))
    model.export(tmp_path / "keras", format="tf_saved_model", verbose=False)
    ops = _saved_model_ops(tmp_path / "keras")
    assert ops & LOOPS and not ops & NOT_PORTABLE
    model.export(
        tmp_path / "model.tflite",
        format="litert",
        input_signature=[tf.TensorSpec([1, None, H_IN])],
        verbose=False,
    )
    ops = tflite_ops((tmp_path / "model.tflite").read_bytes())
    assert "WHILE" in ops and not any(o.startswith(("CUSTOM", "DELEGATE")) for o in ops)
    # Asked for by name, cuDNN is exported (it then needs a GPU to serve).
    cudnn = tflstm.LSTM(H_IN, H, use_cudnn=True)
    export_saved_model(cudnn, tmp_path / "cudnn")
    assert "CudnnRNNV3" in _saved_model_ops(tmp_path / "cudnn")


def test_cudnn_params_gate_order():
    hidden = 2
    rng = np.random.default_rng(0)
    weights = Weights(
        tf.constant(rng.standard_normal((4 * hidden, 3))),
        tf.constant(rng.standard_normal((4 * hidden, hidden))),
        tf.constant(rng.standard_normal(4 * hidden)),
    )

    def blocks(params):
        """The 16 pieces: 4 input matrices, 4 recurrent, 4+4 biases."""
        sizes = [hidden * 3] * 4 + [hidden * hidden] * 4 + [hidden] * 8
        return tf.split(params, sizes)

    cudnn = blocks(cudnn_params(cells.LSTM, weights, rocm=False))
    miopen = blocks(cudnn_params(cells.LSTM, weights, rocm=True))
    w_ih = np.split(weights.weight_ih.numpy(), 4)
    np.testing.assert_array_equal(cudnn[2], w_ih[2].ravel())  # g third
    for i, j in enumerate((0, 1, 3, 2)):  # MIOpen: (i, f, o, g)
        np.testing.assert_array_equal(miopen[i], w_ih[j].ravel())
        np.testing.assert_array_equal(miopen[4 + i], cudnn[4 + j])
        np.testing.assert_array_equal(miopen[8 + i], cudnn[8 + j])
    assert not np.any(miopen[12:])  # the recurrent biases are zeros


def test_jit_compiled_model_fit_predict_evaluate_match_torch():
    """`model.compile(jit_compile=True)` with default layers: every step runs
    inside XLA, and fit, predict and evaluate agree with torch."""
    cfg = dict(num_layers=2, bidirectional=True, proj_size=2)
    steps, batch = 7, 6
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, batch_first=True, **cfg)
    layer = tflstm.LSTM(H_IN, H, batch_first=True, return_state=False, **cfg)
    copy_torch_weights(module, layer)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, steps, H_IN)).astype("float32")
    y = rng.standard_normal((batch, steps, 4)).astype("float32")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    model = keras.Sequential([keras.Input((steps, H_IN)), layer])
    model.compile(keras.optimizers.SGD(2**-3), "mse", jit_compile=True)
    assert model.jit_compile
    with torch.no_grad():
        want = module(xt)[0].numpy()
        want_loss = float(torch.nn.functional.mse_loss(module(xt)[0], yt))
    got = model.predict(x, batch_size=batch, verbose=0)
    np.testing.assert_allclose(got, want, atol=ATOL["float32"], rtol=0)
    loss = model.evaluate(x, y, batch_size=batch, verbose=0)
    assert abs(loss - want_loss) <= ATOL["float32"]

    opt = torch.optim.SGD(module.parameters(), lr=2**-3)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(module(xt)[0], yt).backward()
        opt.step()
    model.fit(x, y, batch_size=batch, epochs=3, shuffle=False, verbose=0)
    errors = weight_errors(module, layer)
    assert max(errors.values()) <= ATOL["float32"], errors


def test_eager_calls_of_many_configurations_do_not_retrace(caplog):
    """One cached tf.function per kernel and structure: TensorFlow never
    warns that a function is retraced too often."""
    rng = np.random.default_rng(0)
    configs = [
        dict(),
        dict(bidirectional=True),
        dict(proj_size=2),
        dict(bias=False),
        dict(num_layers=3, bidirectional=True, proj_size=3),
    ]
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for repeat in range(3):
            for i, cfg in enumerate(configs):
                layer = tflstm.LSTM(H_IN + i, H + i, **cfg)
                for steps, batch in ((3 + repeat, 2), (9, 1 + repeat)):
                    x = rng.standard_normal((steps, batch, H_IN + i))
                    for training in (False, True):
                        layer(x.astype("float32"), training=training)
                    layer(x, sequence_lengths=np.full(batch, steps))
    assert "retracing" not in caplog.text
