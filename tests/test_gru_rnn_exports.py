"""tflstm.GRU, GRUCell, RNN and RNNCell exported: SavedModels served in a
separate process that cannot import tflstm (tests/serving_loader.py), and
`.tflite` files run in LiteRT (the RNN's fused UNIDIRECTIONAL_SEQUENCE_RNN
op among them), against torch in float32.

The exports are built once per test run (`build_once`, tests/conftest.py)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
import torch
from oracle import ATOL
from test_export_saved_model import ONEDNN, serve_elsewhere
from test_gru_rnn import KINDS

import tflstm
from converters import random_lengths
from converters.verify import torch_forward
from tflstm.export import export_saved_model
from tflstm.tflite import QUANTIZED_RTOL, export_tflite, run_tflite, tflite_ops

H_IN, H = 5, 7
# Builtin ops only: no custom op, no Flex (TensorFlow) op, no delegate.
NOT_BUILTIN = ("CUSTOM", "FLEX", "DELEGATE")


def gru_pair(seed: int, input_size=H_IN, hidden_size=H, scale=1.0, kind="gru", **cfg):
    """torch.nn.GRU(seed) (nn.RNN for an RNN `kind`) and the tflstm layer
    built from its state_dict."""
    k = KINDS[kind]
    torch.manual_seed(seed)
    module = k.torch_layer(input_size, hidden_size, **k.options, **cfg)
    with torch.no_grad():
        for param in module.parameters():
            param.mul_(scale)
    weights = {name: v.numpy() for name, v in module.state_dict().items()}
    layer = k.layer.from_weights(
        weights, input_size=input_size, hidden_size=hidden_size, **k.options, **cfg
    )
    return module, layer


def cell_pair(seed: int, input_size=H_IN, hidden_size=H, kind="gru"):
    k = KINDS[kind]
    torch.manual_seed(seed)
    module = k.torch_cell(input_size, hidden_size, **k.options)
    weights = {name: v.numpy() for name, v in module.state_dict().items()}
    cell = k.cell.from_weights(
        weights, input_size=input_size, hidden_size=hidden_size, **k.options
    )
    return module, cell


def torch_outputs(module, x, h0=None, lengths=None):
    """torch's (output, h_n) in float32 numpy (a packed run with `lengths`)."""
    with torch.no_grad():
        output, h_n = torch_forward(
            module,
            torch.from_numpy(x),
            None if h0 is None else torch.from_numpy(h0),
            lengths,
        )
    return output.numpy(), h_n.numpy()


def inputs(layer, steps, batch, rng, input_size=H_IN):
    shape = (
        (batch, steps, input_size) if layer.batch_first else (steps, batch, input_size)
    )
    n_states = layer.num_layers * layer.num_directions
    return (
        rng.standard_normal(shape).astype("float32"),
        rng.standard_normal((n_states, batch, layer.hidden_size)).astype("float32"),
    )


def padded(x, lengths, batch_first, value=np.nan):
    steps = x.shape[1 if batch_first else 0]
    valid = np.arange(steps)[:, None] < np.asarray(lengths)[None, :]  # (L, N)
    return np.where((valid.T if batch_first else valid)[..., None], x, value)


def max_error(got, want) -> float:
    return float(np.abs(np.asarray(got) - want).max())


def relative(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


# -- SavedModel --------------------------------------------------------------------

# name: (seed, config); each exported without and with `sequence_lengths`.
SAVED = {
    "stacked": (0, dict(num_layers=2, bidirectional=True)),
    "plain": (1, dict(bias=False, batch_first=True)),
    "rnn-stacked": (2, dict(num_layers=2, bidirectional=True, kind="rnn_relu")),
}
CELLS = {"cell": ("gru", 0), "rnn-cell": ("rnn_tanh", 1)}
SHAPES = [(6, 3), (11, 1)]  # (L, N): two lengths and batch sizes, one file
PACKED_STEPS, PACKED_BATCH = 7, 4


@pytest.fixture(scope="module")
def saved_models(build_once):
    def build(folder):
        for name, (seed, cfg) in SAVED.items():
            _, layer = gru_pair(seed, **cfg)
            export_saved_model(layer, folder / name)
            export_saved_model(layer, folder / f"{name}-packed", sequence_lengths=True)
        for name, (kind, seed) in CELLS.items():
            export_saved_model(cell_pair(seed, kind=kind)[1], folder / name)

    return build_once("gru-saved-models", build)


def test_saved_models_served_elsewhere_match_torch(saved_models, tmp_path):
    """Both signatures (`serving_default`: input -> output, h_n;
    `with_state`: input, h_0 -> output, h_n), with and without
    `sequence_lengths` (NaN padding), at two shapes from one file; a
    GRUCell's and an RNNCell's (input[, h_0] -> h_1); all served in one
    process that cannot import tflstm, with TensorFlow's oneDNN off and on
    (`serve_elsewhere`)."""
    rng = np.random.default_rng(0)
    jobs, expected = {}, {}
    for name, (seed, cfg) in SAVED.items():
        module, layer = gru_pair(seed, **cfg)
        cases = [(steps, batch, None) for steps, batch in SHAPES]
        lengths = random_lengths(PACKED_STEPS, PACKED_BATCH, seed=seed)
        cases.append((PACKED_STEPS, PACKED_BATCH, lengths))
        for steps, batch, lengths in cases:
            x, h0 = inputs(layer, steps, batch, rng)
            path, extra = saved_models / name, {}
            if lengths is not None:
                path, extra = (
                    saved_models / f"{name}-packed",
                    {"sequence_lengths": lengths},
                )
                x = padded(x, lengths, layer.batch_first).astype("float32")
            for signature, feed, hx in (
                ("serving_default", {"input": x, **extra}, None),
                ("with_state", {"input": x, "h_0": h0, **extra}, h0),
            ):
                job = f"{name}-{steps}-{batch}-{signature}"
                jobs[job] = (path, signature, feed)
                output, h_n = torch_outputs(module, x, hx, lengths)
                expected[job] = {"output": output, "h_n": h_n}

    for name, (kind, seed) in CELLS.items():
        module, _ = cell_pair(seed, kind=kind)
        x, h = (rng.standard_normal((4, n)).astype("float32") for n in (H_IN, H))
        with torch.no_grad():
            h_1 = module(torch.from_numpy(x), torch.from_numpy(h)).numpy()
            h_1_zeros = module(torch.from_numpy(x)).numpy()
        jobs[f"{name}-with_state"] = (
            saved_models / name,
            "with_state",
            {"input": x, "h_0": h},
        )
        expected[f"{name}-with_state"] = {"h_1": h_1}
        jobs[f"{name}-serving_default"] = (
            saved_models / name,
            "serving_default",
            {"input": x},
        )
        expected[f"{name}-serving_default"] = {"h_1": h_1_zeros}

    served_by = serve_elsewhere(jobs, tmp_path)
    assert list(served_by) == list(ONEDNN)
    bad = {}
    for setting, served in served_by.items():
        assert served.keys() == expected.keys()
        for job, want in expected.items():
            assert served[job].keys() == want.keys(), (job, sorted(served[job]))
            for key, value in want.items():
                assert served[job][key].shape == value.shape, (job, key)
                error = max_error(served[job][key], value)
                if not error <= ATOL["float32"]:
                    bad[setting, job, key] = error
    assert len(expected) == len(SAVED) * 3 * 2 + 2 * len(CELLS)
    assert not bad, bad


def test_saved_model_streams_in_chunks(saved_models):
    """`with_state` fed chunk by chunk, each call taking the previous h_n,
    equals the whole sequence (a unidirectional GRU)."""
    served = tf.saved_model.load(str(saved_models / "plain")).signatures["with_state"]
    specs = served.structured_input_signature[1]
    assert sorted(specs) == ["h_0", "input"]
    assert specs["h_0"].shape.as_list() == [1, None, H]
    seed, cfg = SAVED["plain"]
    _, layer = gru_pair(seed, **cfg)
    x = np.random.default_rng(0).standard_normal((2, 30, H_IN)).astype("float32")
    h = np.zeros((1, 2, H), "float32")
    chunks = []
    for start, stop in [(0, 7), (7, 8), (8, 30)]:
        out = served(input=tf.constant(x[:, start:stop]), h_0=tf.constant(h))
        assert sorted(out) == ["h_n", "output"]
        chunks.append(out["output"].numpy())
        h = out["h_n"].numpy()
    whole, h_n = layer(x)
    np.testing.assert_allclose(np.concatenate(chunks, 1), whole, atol=1e-6, rtol=0)
    np.testing.assert_allclose(h, h_n, atol=1e-6, rtol=0)


# -- TFLite --------------------------------------------------------------------------

BATCH, STEPS = 2, 6
STACKED = dict(num_layers=2, bidirectional=True)
PACKED = dict(num_layers=2, bidirectional=True, batch_first=True, bias=False)
# Dynamic range: each gate matrix needs 1,024 weights to be quantized; weights
# twice torch's initial ones, a trained model's magnitudes (as in
# tests/test_export_tflite.py).
Q_IN, Q_H, Q_SCALE, Q_STEPS = 16, 64, 2.0, 20
# name: (seed, layer config, export arguments)
TFLITE = {
    "unrolled": (0, STACKED, dict(fixed_length=STEPS, graph="unrolled")),
    "loop": (1, STACKED, dict(graph="loop")),
    "unrolled-packed": (
        2,
        PACKED,
        dict(fixed_length=STEPS, graph="unrolled", sequence_lengths=True),
    ),
    "loop-packed": (3, PACKED, dict(graph="loop", sequence_lengths=True)),
    # The RNN: its fused op (graph="auto" for a dynamic length), and the
    # unrolled graph of the one core.
    "rnn_relu-fused": (5, STACKED, dict()),
    "rnn_tanh-unrolled": (6, STACKED, dict(fixed_length=STEPS)),
    "rnn_tanh-fused-packed": (7, PACKED, dict(sequence_lengths=True)),
}


def kind_of(name: str) -> str:
    return name.split("-")[0] if name.startswith("rnn") else "gru"


def tflite_pair(name):
    seed, cfg, _ = TFLITE[name]
    return gru_pair(seed, kind=kind_of(name), **cfg)


def quantized_pair(kind="gru"):
    # An RNN keeps torch's initial weights: doubled, its recurrent matrix's
    # spectral radius passes 1 (about 1.15 at H = 64), a tanh RNN at the edge
    # of chaos, which amplifies any rounding: 4.1-4.7% of the scale in every
    # graph (fused, loop, unrolled) under "dynamic", against 1-2% here.
    scale = 1.0 if kind.startswith("rnn") else Q_SCALE
    return gru_pair(4, Q_IN, Q_H, scale=scale, kind=kind, **STACKED)


@pytest.fixture(scope="module")
def flatbuffers(build_once):
    """Every `.tflite` of this module, converted once per test run."""

    def build(folder):
        for name, (_, _, kwargs) in TFLITE.items():
            export_tflite(
                tflite_pair(name)[1],
                folder / f"{name}.tflite",
                batch_size=BATCH,
                **kwargs,
            )
        export_tflite(cell_pair(0)[1], folder / "cell.tflite", batch_size=3)
        export_tflite(
            quantized_pair()[1],
            folder / "dynamic.tflite",
            batch_size=BATCH,
            fixed_length=Q_STEPS,
            quantize="dynamic",
        )
        export_tflite(
            cell_pair(1, Q_IN, Q_H)[1],
            folder / "cell-dynamic.tflite",
            quantize="dynamic",
        )
        export_tflite(cell_pair(2, kind="rnn_relu")[1], folder / "rnn-cell.tflite")
        export_tflite(  # the fused RNN op, hybrid
            quantized_pair("rnn_tanh")[1],
            folder / "rnn-dynamic.tflite",
            batch_size=BATCH,
            quantize="dynamic",
        )

    folder = build_once("gru-rnn-tflite", build)
    names = [*TFLITE, "cell", "dynamic", "cell-dynamic", "rnn-cell", "rnn-dynamic"]
    return {name: (folder / f"{name}.tflite").read_bytes() for name in names}


def check_ops(name, flatbuffer):
    ops = tflite_ops(flatbuffer, subgraphs=True)
    assert not [op for op in ops if op.startswith(NOT_BUILTIN)], (name, ops)
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops
    pairs = 2 * 2  # layers * directions
    if "fused" in name:  # one RNN op per layer and direction, nothing else
        assert ops.count("UNIDIRECTIONAL_SEQUENCE_RNN") == pairs, ops
        assert "FULLY_CONNECTED" not in ops and "WHILE" not in ops, ops
        return
    assert "UNIDIRECTIONAL_SEQUENCE_RNN" not in ops
    if name.startswith("loop"):  # two WHILE loops per layer and direction
        assert tflite_ops(flatbuffer).count("WHILE") == 2 * pairs, ops
    else:  # every step unrolled
        assert "WHILE" not in ops, ops
        assert ops.count("FULLY_CONNECTED") >= pairs * (STEPS + 1), ops


def test_tflite_graphs_match_torch(flatbuffers):
    """A bidirectional 2-layer GRU: the unrolled graph at its fixed length,
    the loop at two lengths from one file; with and without h_0. The same
    RNN (relu) as the fused RNN op at two lengths and two batch sizes (the
    fused op resizes), and (tanh) unrolled."""
    rng = np.random.default_rng(0)
    bad, checked = {}, 0
    for name, lengths_of in (
        ("unrolled", [STEPS]),
        ("loop", [STEPS, 17]),
        ("rnn_relu-fused", [STEPS, 17]),
        ("rnn_tanh-unrolled", [STEPS]),
    ):
        flatbuffer = flatbuffers[name]
        check_ops(name, flatbuffer)
        module, layer = tflite_pair(name)
        batches = (BATCH, 3) if "fused" in name else (BATCH,)
        for steps, batch, with_hx in itertools.product(
            lengths_of, batches, (True, False)
        ):
            x, h0 = inputs(layer, steps, batch, rng)
            h0 = h0 if with_hx else None
            output, h_n = run_tflite(flatbuffer, layer.get_config(), x, h0)
            assert isinstance(h_n, np.ndarray)  # a GRU's h_n alone, as torch
            want = torch_outputs(module, x, h0)
            tag = (name, steps, batch, with_hx)
            bad.update(float32_misses(tag, (output, h_n), want))
            checked += 1
    assert checked == 2 + 4 + 8 + 2
    assert not bad, bad


def float32_misses(tag: tuple, got: tuple, want: tuple) -> dict:
    """`{(*tag, tensor): error}` for the tensors (output, h_n) off torch's by
    more than float32's tolerance, shapes checked."""
    misses = {}
    for key, value, expected in zip(("output", "h_n"), got, want, strict=True):
        assert value.shape == expected.shape, (*tag, key)
        error = max_error(value, expected)
        if not error <= ATOL["float32"]:
            misses[(*tag, key)] = error
    return misses


def test_tflite_packed_sequences_match_torch(flatbuffers):
    """`sequence_lengths` (unsorted, holding 1 and L) against torch's packed
    run; the padding is NaN and never read."""
    bad, checked = {}, 0
    for name, lengths_of in (
        ("unrolled-packed", [STEPS]),
        ("loop-packed", [STEPS, 11]),
        ("rnn_tanh-fused-packed", [STEPS, 11]),
    ):
        flatbuffer = flatbuffers[name]
        check_ops(name, flatbuffer)
        module, layer = tflite_pair(name)
        for steps, with_hx in itertools.product(lengths_of, (True, False)):
            rng = np.random.default_rng(steps)
            x, h0 = inputs(layer, steps, BATCH, rng)
            h0 = h0 if with_hx else None
            lengths = random_lengths(steps, BATCH, seed=steps)
            # The fused op's graph zeroes the padding by a multiplication, as
            # the LSTM's does (tests/test_export_tflite.py, PADDING): not NaN.
            value = 7.0 if "fused" in name else np.nan
            output, h_n = run_tflite(
                flatbuffer,
                layer.get_config(),
                padded(x, lengths, layer.batch_first, value).astype("float32"),
                h0,
                sequence_lengths=lengths,
            )
            want = torch_outputs(module, x, h0, lengths)
            bad.update(float32_misses((name, steps, with_hx), (output, h_n), want))
            checked += 1
    assert checked == 10
    assert not bad, bad


def test_tflite_static_shapes_are_checked(flatbuffers):
    """The unrolled graph refuses another length or batch, the loop another
    batch."""
    for name, wrong in (
        ("unrolled", [(STEPS + 1, BATCH), (STEPS, BATCH + 1)]),
        ("loop", [(STEPS, BATCH + 1)]),
    ):
        _, layer = tflite_pair(name)
        for steps, batch in wrong:
            x, _ = inputs(layer, steps, batch, np.random.default_rng(0))
            with pytest.raises(
                ValueError, match=r"Expected `\w+` of shape .* Received: shape"
            ):
                run_tflite(flatbuffers[name], layer.get_config(), x)


@pytest.mark.parametrize(
    ("name", "kind", "seed"), [("cell", "gru", 0), ("rnn-cell", "rnn_relu", 2)]
)
def test_cell_tflite_matches_torch(flatbuffers, name, kind, seed):
    """One step of builtin ops; `run_tflite` returns h_1 alone."""
    flatbuffer = flatbuffers[name]
    assert set(tflite_ops(flatbuffer)) <= {
        "FULLY_CONNECTED",
        "ADD",
        "SUB",
        "MUL",
        "LOGISTIC",
        "TANH",
        "SPLIT",
    }, tflite_ops(flatbuffer)
    module, cell = cell_pair(seed, kind=kind)
    rng = np.random.default_rng(0)
    x, h = (rng.standard_normal((3, n)).astype("float32") for n in (H_IN, H))
    for hx in (h, None):
        got = run_tflite(flatbuffer, cell.get_config(), x, hx)
        assert isinstance(got, np.ndarray) and got.shape == (3, H)
        with torch.no_grad():
            want = module(
                torch.from_numpy(x), None if hx is None else torch.from_numpy(hx)
            )
        np.testing.assert_allclose(got, want.numpy(), atol=ATOL["float32"], rtol=0)


def test_dynamic_range_within_tolerance(flatbuffers):
    """quantize="dynamic" (int8 weights, float activations): a bidirectional
    2-layer GRU and a GRUCell within QUANTIZED_RTOL["dynamic"] of each
    tensor's scale, and not float32's numbers (the weights were quantized)."""
    rtol = QUANTIZED_RTOL["dynamic"]
    flatbuffer = flatbuffers["dynamic"]
    ops = tflite_ops(flatbuffer, subgraphs=True)
    assert not [op for op in ops if op.startswith(NOT_BUILTIN)], ops
    module, layer = quantized_pair()
    rng = np.random.default_rng(0)
    x, h0 = inputs(layer, Q_STEPS, BATCH, rng, Q_IN)
    h0 = (h0 * 0.5).astype("float32")
    output, h_n = run_tflite(flatbuffer, layer.get_config(), x, h0)
    want = torch_outputs(module, x, h0)
    errors = [
        relative(got, value) for got, value in zip((output, h_n), want, strict=True)
    ]
    assert max(errors) <= rtol, errors
    assert relative(output, want[0]) > 1e-4, errors

    module, cell = cell_pair(1, Q_IN, Q_H)
    x, h = (rng.standard_normal((1, n)).astype("float32") for n in (Q_IN, Q_H))
    got = run_tflite(flatbuffers["cell-dynamic"], cell.get_config(), x, h)
    with torch.no_grad():
        want = module(torch.from_numpy(x), torch.from_numpy(h)).numpy()
    assert 1e-5 < relative(got, want) <= rtol, relative(got, want)


def test_fused_rnn_op_dynamic_range_within_tolerance(flatbuffers):
    """The RNN's fused op with int8 weights (a hybrid op, asymmetrically
    quantized inputs) within QUANTIZED_RTOL["dynamic"], and quantized."""
    flatbuffer = flatbuffers["rnn-dynamic"]
    ops = tflite_ops(flatbuffer)
    assert ops.count("UNIDIRECTIONAL_SEQUENCE_RNN") == 4, ops
    float_size = len(export_tflite(quantized_pair("rnn_tanh")[1], graph="fused"))
    assert len(flatbuffer) < 0.35 * float_size, (len(flatbuffer), float_size)
    module, layer = quantized_pair("rnn_tanh")
    x, h0 = inputs(layer, Q_STEPS, BATCH, np.random.default_rng(0), Q_IN)
    h0 = (h0 * 0.5).astype("float32")
    got = run_tflite(flatbuffer, layer.get_config(), x, h0)
    want = torch_outputs(module, x, h0)
    errors = [relative(g, w) for g, w in zip(got, want, strict=True)]
    assert 1e-4 < errors[0] and max(errors) <= QUANTIZED_RTOL["dynamic"], errors


def test_graph_auto_for_an_rnn():
    """By measurement (tflstm.tflite.graphs.FUSED_AT_BATCH_1): the unrolled
    graph for a fixed length (batch 1 too), the fused RNN op otherwise."""
    layer = tflstm.RNN(H_IN, H)
    fixed = tflite_ops(export_tflite(layer, fixed_length=STEPS))
    assert "UNIDIRECTIONAL_SEQUENCE_RNN" not in fixed and "FULLY_CONNECTED" in fixed
    dynamic = tflite_ops(export_tflite(layer))
    assert dynamic.count("UNIDIRECTIONAL_SEQUENCE_RNN") == 1, dynamic


GRU_REFUSED = (
    "Expected graph='auto', 'unrolled' or 'loop' and quantize=None, 'dynamic' "
    "or 'float16' for a tflstm.GRU: TFLite has no fused op for it, and its only "
    "fused recurrent op with a 16-bit integer state is the LSTM's. Received: "
)


def test_fused_graph_and_int8_are_refused_for_a_gru(tmp_path):
    layer = tflstm.GRU(H_IN, H, num_layers=2)
    data = [np.zeros((STEPS, 1, H_IN), "float32")]
    for kwargs, received in (
        (dict(graph="fused"), "graph='fused', quantize=None"),
        (dict(graph="fused", fixed_length=STEPS), "graph='fused', quantize=None"),
        (dict(graph="loop", quantize="int8", representative_data=data), "graph='loop', quantize='int8'"),
    ):  # fmt: skip
        with pytest.raises(ValueError) as info:
            export_tflite(layer, tmp_path / "refused.tflite", **kwargs)
        assert GRU_REFUSED + received in str(info.value), str(info.value)
    with pytest.raises(ValueError, match="quantize='int8'"):
        export_tflite(
            layer,
            tmp_path / "refused.tflite",
            quantize="int8",
            representative_data=data,
        )
    assert not (tmp_path / "refused.tflite").exists()  # refused before any work


def test_int8_is_refused_for_an_rnn():
    data = [np.zeros((STEPS, 1, H_IN), "float32")]
    with pytest.raises(ValueError) as info:
        export_tflite(tflstm.RNN(H_IN, H), quantize="int8", representative_data=data)
    assert str(info.value) == (
        "Expected quantize=None, 'dynamic' or 'float16' for a tflstm.RNN: "
        "TFLite's only fused recurrent op with a 16-bit integer state is the "
        "LSTM's. Received: quantize='int8'"
    )


def test_int8_refusal_reports_the_graph_that_was_passed():
    """The message's "Received:" part names the arguments as given: with the
    default graph='auto', 'auto' (the message itself offers 'auto')."""
    layer = tflstm.GRU(H_IN, H)
    data = [np.zeros((STEPS, 1, H_IN), "float32")]
    with pytest.raises(ValueError) as info:
        export_tflite(layer, quantize="int8", representative_data=data)
    assert GRU_REFUSED + "graph='auto', quantize='int8'" in str(info.value), str(
        info.value
    )
