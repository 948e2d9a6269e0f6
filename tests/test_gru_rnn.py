"""The cells with one state, `h`: tflstm.GRU, GRUCell, RNN and RNNCell (tanh
and relu) against torch.nn.GRU, nn.GRUCell, nn.RNN and nn.RNNCell.

torch is the oracle, as for the LSTM (tests/oracle.py): float64 outputs, h_n
and every gradient over the option grid on both execution paths, float32 on
small configurations, packed sequences and masks, a long sequence judged by
the float32 rule, dropout and initialisation, errors, the cell, Keras
(config, `.keras` file, `fit`, XLA). The exports are in
tests/test_gru_exports.py.

Every test that exercises a cell's math runs for each kind in `KINDS`; the
GRU takes the full option grid, the RNN's two nonlinearities its pairwise
array (the options reach the same core, tested on the full grid by the GRU
and the LSTM). Tests of the core alone (masks, graph mode, dropout's
statistics, the call's errors) run on the GRU.
"""

import itertools
import math
import re
from typing import NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf
import torch
from grids import pairwise
from oracle import (
    ATOL,
    TORCH_DTYPES,
    assert_matches,
    copy_torch_weights,
    float32_error_bound,
    max_errors,
    run_tflstm,
    run_torch,
    weight_errors,
)
from test_training import OPTIMIZERS, WEIGHT_ATOL

import converters
import tflstm
from converters import random_lengths

L, N, H_IN, H = 5, 3, 4, 6


class Kind(NamedTuple):
    """One cell with one state: torch's and tflstm's classes, and the options
    that pick it (an RNN's nonlinearity)."""

    torch_layer: type
    torch_cell: type
    layer: type
    cell: type
    options: dict
    gates: int


KINDS = {
    "gru": Kind(torch.nn.GRU, torch.nn.GRUCell, tflstm.GRU, tflstm.GRUCell, {}, 3),
    "rnn_tanh": Kind(
        torch.nn.RNN, torch.nn.RNNCell, tflstm.RNN, tflstm.RNNCell,
        {"nonlinearity": "tanh"}, 1,
    ),
    "rnn_relu": Kind(
        torch.nn.RNN, torch.nn.RNNCell, tflstm.RNN, tflstm.RNNCell,
        {"nonlinearity": "relu"}, 1,
    ),
}  # fmt: skip
RNN_KINDS = ["rnn_tanh", "rnn_relu"]

# torch.nn.GRU's options (no projection: an LSTM's only).
OPTIONS = {
    "bias": [True, False],
    "batch_first": [False, True],
    "bidirectional": [False, True],
    "num_layers": [1, 2],
}
GRID = [
    dict(zip(OPTIONS, values, strict=True))
    for values in itertools.product(*OPTIONS.values())
]
PAIRWISE = pairwise(GRID)


def ids(config: dict) -> str:
    return "-".join(f"{k}={int(v)}" for k, v in config.items())


def make_pair(
    dtype="float64", input_size=H_IN, hidden_size=H, seed=0, kind="gru", **cfg
):
    k = KINDS[kind]
    torch.manual_seed(seed)
    module = k.torch_layer(input_size, hidden_size, **k.options, **cfg)
    layer = k.layer(input_size, hidden_size, dtype=dtype, **k.options, **cfg)
    copy_torch_weights(module, layer)
    return module, layer


def make_inputs(cfg, *, batched, with_hx, steps=L, batch=N, seed=0):
    """x laid out as the layer reads it, and h_0 (or None)."""
    rng = np.random.default_rng(seed)
    if batched:
        shape = (batch, steps, H_IN) if cfg["batch_first"] else (steps, batch, H_IN)
    else:
        shape = (steps, H_IN)
    x = rng.standard_normal(shape)
    if not with_hx:
        return x, None
    n_states = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
    lead = (n_states, batch) if batched else (n_states,)
    return x, rng.standard_normal((*lead, H))


def padded(x, lengths, batch_first, value=np.nan):
    """`x` with every step past its sequence's length set to `value`."""
    steps = x.shape[1 if batch_first else 0]
    valid = np.arange(steps)[:, None] < np.asarray(lengths)[None, :]  # (L, N)
    if batch_first:
        valid = valid.T
    return np.where(valid[..., None], x, value)


# -- 1. parity over the option grid ------------------------------------------------

PARITY_CASES = (
    [pytest.param("gru", c, "float64", id=f"gru-{ids(c)}-float64") for c in GRID]
    + [
        pytest.param(
            kind,
            c,
            "float32",
            id=f"{kind}-{ids(c)}-float32",
            marks=pytest.mark.numerics,
        )
        for kind in ("gru", "rnn_relu")
        for c in PAIRWISE
    ]
    + [
        pytest.param(kind, c, "float64", id=f"{kind}-{ids(c)}-float64")
        for kind in RNN_KINDS
        for c in PAIRWISE
    ]
)


@pytest.mark.parametrize(("kind", "cfg", "dtype"), PARITY_CASES)
def test_matches_torch(kind, cfg, dtype):
    """Output, h_n and the gradients of the input, h_0 and every weight;
    batched and unbatched, with and without h_0, on the training path (the
    hand-written BPTT) and the inference path (the loop, its gradient
    recomputed): float64 on the full grid of the GRU's options, on the
    pairwise array for each RNN; float32 on the pairwise array."""
    module, layer = make_pair(dtype, kind=kind, **cfg)
    for batched, with_hx in itertools.product([True, False], [True, False]):
        x, h0 = make_inputs(cfg, batched=batched, with_hx=with_hx)
        want = run_torch(module, x, h0, dtype=dtype)
        for training in (True, False):
            got = run_tflstm(layer, x, h0, dtype=dtype, training=training)
            assert_matches(want, got, ATOL[dtype])


@pytest.mark.parametrize("kind", KINDS)
def test_weights_have_torch_names_shapes_and_order(kind):
    k = KINDS[kind]
    for cfg in GRID:
        module = k.torch_layer(H_IN, H, **k.options, **cfg)
        layer = k.layer(H_IN, H, **k.options, **cfg)
        want = {n: tuple(p.shape) for n, p in module.named_parameters()}
        ours = {v.name: tuple(v.shape) for v in layer.trainable_weights}
        assert ours == want
        assert list(ours) == list(want), "same order as torch"
        for name in want:
            assert getattr(layer, name).name == name


@pytest.mark.parametrize("kind", KINDS)
def test_h_n_layout_is_layer_times_d_plus_direction(kind):
    """h_n[layer*D + d]: the forward final state is output[-1], first half;
    the backward one output[0], second half."""
    cfg = dict(bias=True, batch_first=False, bidirectional=True, num_layers=2)
    module, layer = make_pair(kind=kind, **cfg)
    x, _ = make_inputs(cfg, batched=True, with_hx=False)
    output, h_n = (t.numpy() for t in layer(x))
    np.testing.assert_array_equal(h_n[2], output[-1, :, :H])
    np.testing.assert_array_equal(h_n[3], output[0, :, H:])
    want = module.double()(torch.from_numpy(x))[1].detach().numpy()
    np.testing.assert_allclose(h_n, want, atol=ATOL["float64"], rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_scan_equals_python_loop_over_cell(kind):
    k = KINDS[kind]
    layer = k.layer(H_IN, H, dtype="float64", seed=3, **k.options)
    cell = k.cell(H_IN, H, dtype="float64", **k.options)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(cell, name).assign(getattr(layer, f"{name}_l0"))
    rng = np.random.default_rng(0)
    x, h0 = rng.standard_normal((7, N, H_IN)), rng.standard_normal((1, N, H))
    output, h_n = layer(x, h0)
    h = h0[0]
    for t in range(len(x)):
        h = cell(x[t], h)
        np.testing.assert_allclose(output[t], h, atol=ATOL["float64"], rtol=0)
    np.testing.assert_allclose(h_n[0], h, atol=ATOL["float64"], rtol=0)


XLA_CFG = dict(bias=True, batch_first=True, bidirectional=True, num_layers=1)
# kernel="loop" is what "auto" runs on a CPU for a GRU (no BlockLSTMV2);
# "xla" compiles both paths (seconds per shape): one configuration.
KERNEL_CASES = [
    pytest.param(
        "gru", cfg, "loop", id=f"gru-{ids(cfg)}-loop", marks=pytest.mark.numerics
    )
    for cfg in PAIRWISE[:2]
] + [
    pytest.param(kind, XLA_CFG, "xla", id=f"{kind}-{ids(XLA_CFG)}-xla")
    for kind in ("gru", "rnn_relu")
]


@pytest.mark.parametrize(("kind", "cfg", "kernel"), KERNEL_CASES)
def test_each_kernel_matches_torch(kind, cfg, kernel):
    """float32, outputs and gradients, both paths, with and without h_0."""
    k = KINDS[kind]
    torch.manual_seed(0)
    module = k.torch_layer(H_IN, H, **k.options, **cfg)
    layer = k.layer(H_IN, H, **k.options, **cfg, kernel=kernel)
    copy_torch_weights(module, layer)
    for with_hx in (True, False) if kernel == "loop" else (True,):
        x, h0 = make_inputs(cfg, batched=True, with_hx=with_hx)
        want = run_torch(module, x, h0, dtype="float32")
        for training in (False, True):
            got = run_tflstm(layer, x, h0, dtype="float32", training=training)
            assert_matches(want, got, ATOL["float32"])


def test_from_weights_with_torch_state_dict_matches_torch():
    """`GRU.from_weights` takes torch's state_dict (numpy arrays, or
    functions read when the weight is created)."""
    torch.manual_seed(0)
    module = torch.nn.GRU(H_IN, H, num_layers=2, bidirectional=True)
    arrays = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    read = []

    def lazily(name):
        def value(shape, dtype=None):
            read.append(name)
            return arrays[name].astype(dtype)

        return value

    given = {k: (lazily(k) if "hh" in k else v) for k, v in arrays.items()}
    layer = tflstm.GRU.from_weights(
        given,
        input_size=H_IN,
        hidden_size=H,
        num_layers=2,
        bidirectional=True,
        dtype="float64",
    )
    assert sorted(read) == sorted(k for k in arrays if "hh" in k)
    x, h0 = make_inputs(
        dict(num_layers=2, bidirectional=True, batch_first=False),
        batched=True,
        with_hx=True,
    )
    assert_matches(run_torch(module, x, h0), run_tflstm(layer, x, h0), ATOL["float64"])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected weights named as the layer's: weight_ih_l0, weight_hh_l0, "
            "bias_ih_l0, bias_hh_l0. Received: weight_hr_l0"
        ),
    ):
        tflstm.GRU.from_weights(
            {"weight_hr_l0": np.zeros((2, 3))}, input_size=3, hidden_size=2
        )


# -- 2. packed sequences and masks ---------------------------------------------

PACKED_STEPS, PACKED_BATCH = 6, 5
PACKED_GRID = pairwise(
    [
        dict(zip([*OPTIONS, "with_hx"], values, strict=True))
        for values in itertools.product(*OPTIONS.values(), [False, True])
    ]
)
# The RNN's: two rows each, between them every option on and off.
PACKED_CASES = [pytest.param("gru", c, id=f"gru-{ids(c)}") for c in PACKED_GRID] + [
    pytest.param(kind, c, id=f"{kind}-{ids(c)}")
    for kind in RNN_KINDS
    for c in (
        dict(bias=True, batch_first=False, bidirectional=True, num_layers=2, with_hx=True),
        dict(bias=False, batch_first=True, bidirectional=False, num_layers=1, with_hx=False),
    )
]  # fmt: skip


@pytest.mark.parametrize(("kind", "case"), PACKED_CASES)
def test_matches_torch_packed(kind, case):
    """Unsorted lengths holding 1 and L against torch's packed sequence:
    output (0 past each length), h_n and every gradient, both paths, float64;
    the padding is NaN and must never be read (nor reach a gradient)."""
    cfg = {k: case[k] for k in OPTIONS}
    module, layer = make_pair(kind=kind, **cfg)
    lengths = random_lengths(PACKED_STEPS, PACKED_BATCH, seed=len(ids(case)))
    assert {1, PACKED_STEPS} <= set(lengths.tolist())
    x, h0 = make_inputs(
        cfg,
        batched=True,
        with_hx=case["with_hx"],
        steps=PACKED_STEPS,
        batch=PACKED_BATCH,
    )
    want = run_torch(module, x, h0, lengths=lengths)
    x = padded(x, lengths, cfg["batch_first"])
    for training in (True, False):
        got = run_tflstm(layer, x, h0, training=training, sequence_lengths=lengths)
        assert_matches(want, got, ATOL["float64"])


def test_unbatched_takes_a_scalar_length():
    module, layer = make_pair(num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((PACKED_STEPS, H_IN))
    for n in (1, 3, PACKED_STEPS):
        want = run_torch(module, x, lengths=n)
        for lengths in (n, np.array([n])):
            got = run_tflstm(layer, x, sequence_lengths=lengths)
            assert_matches(want, got, ATOL["float64"])


def test_full_lengths_equal_no_lengths():
    _, layer = make_pair(num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((PACKED_STEPS, PACKED_BATCH, H_IN))
    plain = layer(x)
    full = layer(x, sequence_lengths=np.full(PACKED_BATCH, PACKED_STEPS))
    for a, b in zip(plain, full, strict=True):
        np.testing.assert_array_equal(a, b)


def test_mask_argument_and_masking_layer_equal_lengths():
    """`mask=` (time-major (L, N), like the input) and `keras.layers.Masking`
    give what `sequence_lengths` gives."""
    _, layer = make_pair(num_layers=2, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((PACKED_STEPS, 3, H_IN))
    lengths = np.array([6, 2, 4], "int32")
    mask = np.arange(PACKED_STEPS)[:, None] < lengths[None, :]
    want = layer(x, sequence_lengths=lengths)
    got = layer(padded(x, lengths, False), mask=mask)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)

    inputs = keras.Input((None, H_IN))
    gru = tflstm.GRU(H_IN, H, batch_first=True, return_state=False, seed=1)
    model = keras.Model(inputs, gru(keras.layers.Masking(0.0)(inputs)))
    x_bf = padded(np.swapaxes(x, 0, 1), lengths, True, value=0.0)
    np.testing.assert_array_equal(model(x_bf), gru(x_bf, sequence_lengths=lengths))


@pytest.mark.numerics
def test_embedding_mask_equals_lengths_and_torch():
    """Keras's `mask_zero` mask into a GRU returning (output, h_n), and the
    mask kept on `output` for a next GRU; torch's packed run in float32
    (outputs and gradients, both paths, NaN padding)."""
    ids_in = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(20, H_IN, mask_zero=True)(ids_in)
    first = tflstm.GRU(
        H_IN, H, num_layers=2, bidirectional=True, batch_first=True, seed=0
    )
    second = tflstm.GRU(2 * H, H, batch_first=True, seed=1)
    hidden, h_first = first(embedded)
    assert getattr(hidden, "_keras_mask", None) is not None
    output, h_n = second(hidden)
    model = keras.Model(ids_in, [hidden, h_first, output, h_n])
    lengths = np.array([3, 7, 1, 5], "int32")
    tokens = np.random.default_rng(0).integers(1, 20, size=(4, 7))
    tokens[np.arange(7)[None, :] >= lengths[:, None]] = 0
    masked = model(tokens)
    vectors = model.layers[1](tokens).numpy()
    explicit = first(vectors, sequence_lengths=lengths)
    explicit = [*explicit, *second(explicit[0], sequence_lengths=lengths)]
    for a, b in zip(masked, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    module = converters.to_torch_module(first)
    want = run_torch(module, vectors, dtype="float32", lengths=lengths)
    for training in (True, False):
        got = run_tflstm(
            first,
            padded(vectors, lengths, True),
            dtype="float32",
            training=training,
            sequence_lengths=lengths,
        )
        assert_matches(want, got, ATOL["float32"])


def test_graph_mode_unknown_batch_and_length():
    _, layer = make_pair(num_layers=2, bidirectional=True, batch_first=True)
    fn = tf.function(
        lambda x, n: layer(x, sequence_lengths=n),
        input_signature=[
            tf.TensorSpec([None, None, H_IN], tf.float64),
            tf.TensorSpec([None], tf.int32),
        ],
    )
    for steps, lengths in ((6, [6, 1, 3]), (3, [2, 3])):
        x = np.random.default_rng(steps).standard_normal((len(lengths), steps, H_IN))
        want = layer(x, sequence_lengths=np.array(lengths))
        got = fn(x, tf.constant(lengths))
        for a, b in zip(want, got, strict=True):
            np.testing.assert_allclose(a, b, atol=ATOL["float64"], rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"in \[1, L\]"):
        fn(np.zeros((2, 3, H_IN)), tf.constant([4, 1]))


# -- 3. a long sequence, float32 against torch float64 ----------------------------

LONG = dict(steps=2000, batch=2, input_size=4, hidden_size=8, num_layers=2)


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.parametrize("kind", KINDS)
def test_long_sequence_float32_error_within_torchs_own(kind):
    """L = 2,000, bidirectional, 2 layers, float32 weights and inputs: each
    tensor's error against torch in float64 within the float32 rule
    (`oracle.float32_error_bound`): the training path's outputs and every
    gradient ("training"), the inference path's outputs ("inference") and
    its gradient, the training path's recomputed ("training"). A relu RNN
    with torch's initialisation stays bounded here (its recurrent matrices'
    spectral radius is about 0.6), as a trained one does: checked."""
    k = KINDS[kind]
    case = dict(LONG)
    steps, batch = case.pop("steps"), case.pop("batch")
    torch.manual_seed(0)
    module = k.torch_layer(**case, **k.options, bidirectional=True).float()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, case["input_size"])).astype("float32")
    h0 = rng.standard_normal((2 * case["num_layers"], batch, case["hidden_size"]))
    h0 = h0.astype("float32")
    reference = run_torch(module.double(), x, h0, dtype="float64")
    torch_errors = max_errors(
        reference, run_torch(module.float(), x, h0, dtype="float32")
    )
    assert 0.1 < np.abs(reference["out0"]).max() < 20, "bounded, and not dead"
    layer = k.layer(**case, **k.options, bidirectional=True)
    copy_torch_weights(module, layer)
    bad = {}
    for training in (True, False):
        got = run_tflstm(layer, x, h0, dtype="float32", training=training)
        errors = max_errors(reference, got)
        for key, error in errors.items():
            assert torch_errors[key] > 0, "the reference must be float64"
            path = "training" if training or key.startswith("grad") else "inference"
            bound = float32_error_bound(torch_errors[key], reference[key], path)
            if not error <= bound:
                bad[training, key] = (error, torch_errors[key], bound)
    assert not bad, f"(training, tensor): (tflstm error, torch error, bound): {bad}"


# -- 4. dropout and initialisation ---------------------------------------------


def _dropout_pair(dropout, num_layers=3, kind="gru"):
    module, layer = make_pair(
        "float64", hidden_size=5, kind=kind, num_layers=num_layers, dropout=dropout
    )
    return module.double(), layer


def test_dropout_only_in_training():
    module, layer = _dropout_pair(0.5)
    x = np.random.default_rng(0).standard_normal((L, N, H_IN))
    want = [t.detach().numpy() for t in module.eval()(torch.from_numpy(x))]
    for training in (None, False):
        for w, g in zip(want, layer(x, training=training), strict=True):
            np.testing.assert_allclose(g, w, atol=ATOL["float64"], rtol=0)
    a, b = layer(x, training=True)[0], layer(x, training=True)[0]
    assert not np.allclose(a, want[0]) and not np.allclose(a, b)


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_dropout_one_drops_everything_between_layers_like_torch(kind):
    """p = 1: torch's training output is deterministic (layers after the
    first see zeros); the last layer's output is not dropped."""
    module, layer = _dropout_pair(1.0, kind=kind)
    x = np.random.default_rng(0).standard_normal((L, N, H_IN))
    want = [t.detach().numpy() for t in module.train()(torch.from_numpy(x))]
    got = [t.numpy() for t in layer(x, training=True)]
    assert np.abs(want[0]).min() > 0
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, atol=ATOL["float64"], rtol=0)


def test_dropout_between_layers_statistics_and_last_layer():
    """In training each inter-layer activation is zeroed with probability p
    (5 sigma), survivors scaled by 1/(1-p); not after the last layer, whose
    output is that of the last layer alone on the dropped input."""
    p = 0.4
    layer = tflstm.GRU(H_IN, 32, num_layers=3, dropout=p, seed=1)
    recorded = []
    dropout = layer._dropout

    def spy(x):
        y = dropout(x)
        recorded.append((x.numpy(), y.numpy()))
        return y

    layer._dropout = spy
    x = np.random.default_rng(0).standard_normal((30, 40, H_IN)).astype("float32")
    output, _ = layer(x, training=True)
    assert len(recorded) == 2  # after layers 0 and 1
    for before, after in recorded:
        kept = after != 0
        assert abs(1 - kept.mean() - p) < 5 * math.sqrt(p * (1 - p) / before.size)
        np.testing.assert_allclose(after[kept], before[kept] / (1 - p), rtol=1e-6)
    last = tflstm.GRU(32, 32)
    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(last, f"{kind}_l0").assign(getattr(layer, f"{kind}_l2"))
    np.testing.assert_allclose(last(recorded[1][1])[0], output, atol=1e-6, rtol=0)
    recorded.clear()
    np.testing.assert_array_equal(layer(x, training=False)[0], layer(x)[0])
    assert not recorded


@pytest.mark.parametrize("kind", ["gru", "rnn_relu"])
def test_init_is_pytorch_uniform_and_seedable(kind):
    k = KINDS[kind]
    hidden = 64
    layer = k.layer(H_IN, hidden, num_layers=2, bidirectional=True, seed=7)
    bound = 1 / math.sqrt(hidden)
    values = np.concatenate([w.numpy().ravel() for w in layer.trainable_weights])
    assert values.min() >= -bound and values.max() <= bound
    std = bound / math.sqrt(3)  # of U(-b, b)
    assert abs(values.mean()) < 5 * std / math.sqrt(values.size)
    assert abs(values.std() - std) < 0.02 * std
    assert np.abs(layer.bias_ih_l0.numpy()).max() > 0.5 * bound  # not zeroed
    assert not np.array_equal(layer.bias_ih_l0.numpy(), layer.bias_hh_l0.numpy())
    again = k.layer(H_IN, hidden, num_layers=2, bidirectional=True, seed=7)
    other = k.layer(H_IN, hidden, num_layers=2, bidirectional=True, seed=8)
    for a, b, c in zip(
        layer.get_weights(), again.get_weights(), other.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    cell = k.cell(H_IN, hidden, seed=1)
    values = np.concatenate([w.numpy().ravel() for w in cell.trainable_weights])
    assert values.min() >= -bound and values.max() <= bound
    assert values.max() > 0.9 * bound


# -- 5. errors -----------------------------------------------------------------


def zeros(*shape, dtype="float32"):
    return np.zeros(shape, dtype)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(input_size=0), ValueError, "Received an invalid value for argument `input_size`, expected a positive integer, got 0."),
        (dict(input_size=-3), ValueError, "Received an invalid value for argument `input_size`, expected a positive integer, got -3."),
        (dict(hidden_size=0), ValueError, "Received an invalid value for argument `hidden_size`, expected a positive integer, got 0."),
        (dict(hidden_size=-1), ValueError, "Received an invalid value for argument `hidden_size`, expected a positive integer, got -1."),
        (dict(num_layers=0), ValueError, "Received an invalid value for argument `num_layers`, expected a positive integer, got 0."),
        (dict(input_size=5.0), TypeError, "Received an invalid value for argument `input_size`, expected an integer, got 5.0 of type float."),
        (dict(num_layers=True), TypeError, "Received an invalid value for argument `num_layers`, expected an integer, got True of type bool."),
        (dict(dropout=1.5), ValueError, "Received an invalid value for argument `dropout`, expected a number in [0, 1] (the probability of an element being zeroed), got 1.5."),
        (dict(bias=1), TypeError, "Received an invalid value for argument `bias`, expected a bool, got 1 of type int."),
        (dict(kernel="block"), ValueError, "Received an invalid value for argument `kernel`, expected one of 'auto', 'loop', 'xla', got 'block'."),
        (dict(kernel="cudnn"), ValueError, "Received an invalid value for argument `kernel`, expected one of 'auto', 'loop', 'xla', got 'cudnn'."),
        (dict(use_cudnn="yes"), ValueError, "Received an invalid value for argument `use_cudnn`, expected one of 'auto', True, False, got 'yes'."),
        (dict(seed=-1), ValueError, "Received an invalid value for argument `seed`, expected an integer >= 0, got -1."),
    ],
)  # fmt: skip
def test_constructor_errors(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        tflstm.GRU(**(dict(input_size=H_IN, hidden_size=H, num_layers=2) | kwargs))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(input_size=0), ValueError),
        (dict(hidden_size=0), ValueError),
        (dict(num_layers=0), ValueError),
        (dict(dropout=1.5), ValueError),
        (dict(input_size=5.0), TypeError),
        (dict(bias=1), TypeError),
        # torch.nn.GRU has no projection: "proj_size argument is only
        # supported for LSTM, not RNN or GRU" (any value, 0 included).
        (dict(proj_size=2), ValueError),
        (dict(proj_size=0), ValueError),
    ],
)
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_constructor_errors_agree_with_torch(kind, kwargs, error):
    """torch refuses the same arguments, with the same exception type."""
    k = KINDS[kind]
    args = dict(input_size=H_IN, hidden_size=H, num_layers=2) | kwargs
    with pytest.raises(error):
        k.torch_layer(**args)
    with pytest.raises(error) as info:
        k.layer(**args)
    for name in kwargs:
        assert name in str(info.value), str(info.value)


@pytest.mark.parametrize("make", [tflstm.RNN, tflstm.RNNCell])
def test_unknown_nonlinearity_refused_like_torch(make):
    """torch.nn.RNN's message (nn.RNNCell only fails at its first call), with
    what was received."""
    with pytest.raises(
        ValueError,
        match=re.escape("Unknown nonlinearity 'gelu'. Select from 'tanh' or 'relu'."),
    ):
        torch.nn.RNN(H_IN, H, nonlinearity="gelu")
    message = (
        "Unknown nonlinearity 'gelu'. Select from 'tanh' or 'relu'. "
        "Received: nonlinearity='gelu'"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        make(H_IN, H, nonlinearity="gelu")
    with pytest.raises(ValueError, match=re.escape("Received: nonlinearity=None")):
        make(H_IN, H, nonlinearity=None)


def test_relu_gradient_at_zero_is_torchs():
    """relu's slope at exactly 0 is 0 in torch (threshold_backward): the
    pre-activation 0 (zero weights and input) gives zero weight gradients
    on both paths."""
    module, layer = make_pair(kind="rnn_relu", num_layers=2)
    for p in module.parameters():
        torch.nn.init.zeros_(p)
    copy_torch_weights(module, layer)
    x = np.zeros((L, N, H_IN))
    want = run_torch(module, x)
    assert max(float(np.abs(v).max()) for v in want.values()) == 0
    for training in (True, False):
        assert_matches(want, run_tflstm(layer, x, training=training), 0.0)


def test_dropout_with_one_layer_warns_like_torch():
    message = (
        "dropout option adds dropout after all but last recurrent layer, so "
        "non-zero dropout expects num_layers greater than 1, but got "
        "dropout=0.5 and num_layers=1"
    )
    with pytest.warns(UserWarning, match=re.escape(message)):
        torch.nn.GRU(H_IN, H, dropout=0.5)
    with pytest.warns(UserWarning, match=re.escape(message)):
        tflstm.GRU(H_IN, H, dropout=0.5)


# Sizes: H_IN = 4, H = 6; the layer has 2 layers, bidirectional: 4 states.
@pytest.mark.parametrize(
    "layer_kwargs, x, hx, message",
    [
        ({}, zeros(L, N, 13), None, f"Expected the last dimension of `input` to be input_size={H_IN}. Received: input.shape=({L}, {N}, 13)"),
        ({}, zeros(L, 13), None, f"Expected the last dimension of `input` to be input_size={H_IN}. Received: input.shape=({L}, 13)"),
        ({}, zeros(L, N, H_IN, 1), None, f"Expected `input` of rank 3 (batched) or 2 (unbatched). Received: input.shape=({L}, {N}, {H_IN}, 1) of rank 4"),
        ({}, zeros(H_IN), None, f"Expected `input` of rank 3 (batched) or 2 (unbatched). Received: input.shape=({H_IN},) of rank 1"),
        ({}, zeros(0, N, H_IN), None, f"Expected `input` with a sequence length of at least 1 (axis 0). Received: input.shape=(0, {N}, {H_IN})"),
        ({}, zeros(L, N, H_IN, dtype="int32"), None, "Expected `input` of a floating-point dtype. Received: input.dtype=int32"),
        ({}, zeros(L, N, H_IN), (zeros(4, N, H), zeros(4, N, H)), "Expected `hx` to be a tensor h_0, or None. Received: a tuple of length 2"),
        ({}, zeros(L, N, H_IN), (zeros(4, N, H),), "Expected `hx` to be a tensor h_0, or None. Received: a tuple of length 1"),
        ({}, zeros(L, N, H_IN), [zeros(4, N, H), zeros(4, N, H)], "Expected `hx` to be a tensor h_0, or None. Received: a list of length 2"),
        ({}, zeros(L, N, H_IN), zeros(13, N, H), f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(13, {N}, {H})"),
        ({}, zeros(L, N, H_IN), zeros(4, 13, H), f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, 13, {H})"),
        ({}, zeros(L, N, H_IN), zeros(4, N, 13), f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, {N}, 13)"),
        ({}, zeros(L, N, H_IN), zeros(4, H), f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, {H})"),
        ({}, zeros(L, H_IN), zeros(4, 1, H), f"Expected `h_0` of shape (D*num_layers, H_out) = (4, {H}). Received: h_0.shape=(4, 1, {H})"),
        ({"batch_first": True}, zeros(N, L, H_IN), zeros(4, L, H), f"Expected `h_0` of shape (D*num_layers, N, H_out) = (4, {N}, {H}). Received: h_0.shape=(4, {L}, {H})"),
    ],
)  # fmt: skip
def test_call_errors(layer_kwargs, x, hx, message):
    layer = tflstm.GRU(H_IN, H, num_layers=2, bidirectional=True, **layer_kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        layer(x, hx)


def test_length_errors():
    layer = tflstm.GRU(H_IN, H, batch_first=True)
    x = zeros(2, 4, H_IN)
    with pytest.raises(
        ValueError, match=r"in \[1, L\].*Received: L=4 and the lengths \{1: 0\}"
    ):
        layer(x, sequence_lengths=np.array([3, 0]))
    with pytest.raises(
        ValueError, match=r"right-padded `mask`.*batch element\(s\) \[1\]"
    ):
        layer(x, mask=np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool))


@pytest.mark.parametrize(
    "x, hx, message",
    [
        (zeros(N, 13), None, f"Expected the last dimension of `input` to be input_size={H_IN}. Received: input.shape=({N}, 13)"),
        (zeros(L, N, H_IN), None, f"Expected `input` of rank 2 (batched) or 1 (unbatched). Received: input.shape=({L}, {N}, {H_IN}) of rank 3"),
        (zeros(N, H_IN), zeros(13, H), f"Expected `h_0` of shape (N, H) = ({N}, {H}). Received: h_0.shape=(13, {H})"),
        (zeros(H_IN), zeros(N, H), f"Expected `h_0` of shape (H,) = ({H},). Received: h_0.shape=({N}, {H})"),
        (zeros(N, H_IN), (zeros(N, H), zeros(N, H)), "Expected `hx` to be a tensor h_0, or None. Received: a tuple of length 2"),
        (zeros(N, H_IN, dtype="int64"), None, "Expected `input` of a floating-point dtype. Received: input.dtype=int64"),
    ],
)  # fmt: skip
def test_cell_call_errors(x, hx, message):
    cell = tflstm.GRUCell(H_IN, H)
    with pytest.raises(ValueError, match=re.escape(message)):
        cell(x, hx)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(input_size=0), ValueError, "argument `input_size`, expected a positive integer, got 0."),
        (dict(hidden_size=-2), ValueError, "argument `hidden_size`, expected a positive integer, got -2."),
        (dict(hidden_size=2.5), TypeError, "argument `hidden_size`, expected an integer, got 2.5 of type float."),
        (dict(bias="no"), TypeError, "argument `bias`, expected a bool, got 'no' of type str."),
    ],
)  # fmt: skip
def test_cell_constructor_errors(kwargs, error, message):
    args = dict(input_size=H_IN, hidden_size=H) | kwargs
    with pytest.raises(
        error, match=re.escape("Received an invalid value for " + message)
    ):
        tflstm.GRUCell(**args)


# -- 6. GRUCell ----------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["float64", pytest.param("float32", marks=pytest.mark.numerics)]
)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_matches_torch(kind, bias, dtype):
    """h' and the gradients of the input, h and every weight; batched and
    unbatched, with and without h."""
    k = KINDS[kind]
    torch.manual_seed(0)
    module = k.torch_cell(H_IN, H, bias=bias, **k.options)
    cell = k.cell(H_IN, H, bias=bias, dtype=dtype, **k.options)
    copy_torch_weights(module, cell)
    rng = np.random.default_rng(0)
    for batched, with_hx in itertools.product([True, False], [True, False]):
        lead = (N,) if batched else ()
        x = rng.standard_normal((*lead, H_IN))
        h = rng.standard_normal((*lead, H)) if with_hx else None
        want = run_torch(module, x, h, dtype=dtype)
        got = run_tflstm(cell, x, h, dtype=dtype)
        assert_matches(want, got, ATOL[dtype])


@pytest.mark.parametrize("kind", KINDS)
def test_cell_weights_from_weights_and_config(kind):
    k = KINDS[kind]
    for bias in (True, False):
        module = k.torch_cell(H_IN, H, bias=bias, **k.options)
        cell = k.cell(H_IN, H, bias=bias, **k.options)
        want = {n: tuple(p.shape) for n, p in module.named_parameters()}
        assert {v.name: tuple(v.shape) for v in cell.trainable_weights} == want
        assert all(getattr(cell, n).name == n for n in want)
    torch.manual_seed(0)
    module = k.torch_cell(H_IN, H, **k.options)
    cell = k.cell.from_weights(
        {name: v.numpy() for name, v in module.state_dict().items()},
        input_size=H_IN,
        hidden_size=H,
        dtype="float64",
        seed=4,
        name="dec",
        **k.options,
    )
    x = np.random.default_rng(0).standard_normal((N, H_IN))
    assert_matches(run_torch(module, x), run_tflstm(cell, x), ATOL["float64"])
    config = cell.get_config()
    for key, value in dict(
        input_size=H_IN, hidden_size=H, bias=True, seed=4, name="dec", **k.options
    ).items():
        assert config[key] == value, key
    clone = k.cell.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(cell.get_weights())
    np.testing.assert_array_equal(clone(x), cell(x))


# -- 7. Keras ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind):
    k = KINDS[kind]
    layer = k.layer(
        H_IN, H, 3, bias=False, batch_first=True, dropout=0.25, bidirectional=True,
        seed=5, kernel="loop", name="enc", dtype="float64", **k.options,
    )  # fmt: skip
    config = layer.get_config()
    for key, value in dict(
        input_size=H_IN,
        hidden_size=H,
        num_layers=3,
        bias=False,
        batch_first=True,
        dropout=0.25,
        bidirectional=True,
        return_state=True,
        seed=5,
        kernel="loop",
        use_cudnn="auto",
        name="enc",
        **k.options,
    ).items():
        assert config[key] == value, key
    assert "proj_size" not in config  # torch.nn.GRU and nn.RNN have none
    clone = k.layer.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(layer.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 5, H_IN))
    for a, b in zip(layer(x), clone(x), strict=True):
        np.testing.assert_array_equal(a, b)


def test_symbolic_shapes_and_time_major_model_input_refused():
    output, h_n = tflstm.GRU(
        H_IN, H, num_layers=2, bidirectional=True, batch_first=True
    )(keras.Input((None, H_IN)))
    assert tuple(output.shape) == (None, None, 2 * H)
    assert tuple(h_n.shape) == (4, None, H)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected `input` laid out (L, N, H_in), as a time-major tflstm.GRU "
            "(batch_first=False) reads it, not a Keras model input"
        ),
    ):
        tflstm.GRU(H_IN, H)(keras.Input((None, H_IN)))


@pytest.mark.parametrize("kind", ["gru", "rnn_relu"])
def test_keras_file_round_trip_predicts_torchs_numbers(kind, tmp_path):
    """A batch_first GRU (RNN; return_state=False) in keras.Sequential, saved
    to a `.keras` file and loaded back, predicts the same numbers, which are
    torch's (float32)."""
    k = KINDS[kind]
    torch.manual_seed(0)
    cfg = dict(num_layers=2, bidirectional=True, batch_first=True, **k.options)
    module = k.torch_layer(H_IN, H, **cfg)
    layer = k.layer(H_IN, H, return_state=False, **cfg)
    copy_torch_weights(module, layer)
    model = keras.Sequential([keras.Input((None, H_IN)), layer, keras.layers.Dense(2)])
    path = tmp_path / "gru.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).standard_normal((3, 7, H_IN)).astype("float32")
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    )
    gru = loaded.layers[0]
    assert isinstance(gru, k.layer) and gru.get_config() == layer.get_config()
    assert gru.weight_hh_l1_reverse.shape == (k.gates * H, H)
    with torch.no_grad():
        want = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(gru(x), want, atol=ATOL["float32"], rtol=0)


FIT_STEPS = 5
FIT_CASES = [  # every pair of configuration, optimiser and dtype
    pytest.param("gru", dict(num_layers=2, bidirectional=True), "sgd", "float64", id="gru-stacked-bidirectional-sgd-float64"),
    pytest.param("gru", dict(num_layers=2, bidirectional=True), "adam", "float32", id="gru-stacked-bidirectional-adam-float32", marks=pytest.mark.numerics),
    pytest.param("gru", dict(bias=False), "sgd", "float32", id="gru-no_bias-sgd-float32", marks=pytest.mark.numerics),
    pytest.param("gru", dict(bias=False), "adam", "float64", id="gru-no_bias-adam-float64"),
    pytest.param("rnn_relu", dict(num_layers=2, bidirectional=True), "adam", "float64", id="rnn_relu-stacked-bidirectional-adam-float64"),
    pytest.param("rnn_tanh", dict(bias=False), "sgd", "float32", id="rnn_tanh-no_bias-sgd-float32", marks=pytest.mark.numerics),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "cfg", "optimizer", "dtype"), FIT_CASES)
def test_fit_matches_torch_optimiser_steps(kind, cfg, optimizer, dtype):
    """A few full-batch SGD (momentum) or Adam steps of torch and of Keras's
    `model.fit`, from the same weights and data, give the same weights
    (tests/test_training.py's optimisers and tolerances, float32-representable
    data and hyper-parameters)."""
    k = KINDS[kind]
    cfg = cfg | k.options
    torch.manual_seed(0)
    module = k.torch_layer(H_IN, H, batch_first=True, **cfg).to(TORCH_DTYPES[dtype])
    initial = {n: p.detach().numpy().copy() for n, p in module.named_parameters()}
    layer = k.layer(H_IN, H, batch_first=True, return_state=False, dtype=dtype, **cfg)
    copy_torch_weights(module, layer)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 7, H_IN)).astype("float32").astype(dtype)
    d = 2 if cfg.get("bidirectional") else 1
    y = rng.standard_normal((N, 7, d * H)).astype("float32").astype(dtype)

    torch_optimizer, keras_optimizer = OPTIMIZERS[optimizer]
    opt = torch_optimizer(module.parameters(), dtype)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(FIT_STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(module(xt)[0], yt).backward()
        opt.step()

    model = keras.Sequential([keras.Input((7, H_IN), dtype=dtype), layer])
    model.compile(
        keras_optimizer(dtype), loss=keras.losses.MeanSquaredError(dtype=dtype)
    )
    model.fit(
        np.tile(x, (FIT_STEPS, 1, 1)),
        np.tile(y, (FIT_STEPS, 1, 1)),
        batch_size=N,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    moved = max(
        float(np.abs(getattr(layer, n).numpy() - p0).max()) for n, p0 in initial.items()
    )
    assert moved > 10 * WEIGHT_ATOL[dtype], "the weights must actually change"
    errors = weight_errors(module, layer)
    bad = {k: e for k, e in errors.items() if not e <= WEIGHT_ATOL[dtype]}
    assert not bad, bad


@pytest.mark.parametrize("kind", ["gru", "rnn_relu"])
def test_jit_compiled_predict_evaluate_fit_match_torch(kind):
    """`model.compile(jit_compile=True)`: predict, evaluate and a fit step
    run inside XLA (the training kernel traced for XLA) and match torch."""
    k = KINDS[kind]
    cfg = dict(num_layers=2, bidirectional=True, batch_first=True, **k.options)
    torch.manual_seed(0)
    module = k.torch_layer(H_IN, H, **cfg)
    layer = k.layer(H_IN, H, return_state=False, **cfg)
    copy_torch_weights(module, layer)
    x = np.random.default_rng(0).standard_normal((4, 7, H_IN)).astype("float32")
    y = np.random.default_rng(1).standard_normal((4, 7, 2 * H)).astype("float32")
    model = keras.Sequential([keras.Input((7, H_IN)), layer])
    model.compile(keras.optimizers.SGD(2**-3), loss="mse", jit_compile=True)
    assert model.jit_compile
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        want = module(xt)[0].numpy()
        want_loss = float(torch.nn.functional.mse_loss(module(xt)[0], yt))
    got = model.predict(x, batch_size=4, verbose=0)
    np.testing.assert_allclose(got, want, atol=ATOL["float32"], rtol=0)
    assert abs(model.evaluate(x, y, batch_size=4, verbose=0) - want_loss) <= 1e-6
    opt = torch.optim.SGD(module.parameters(), lr=2**-3)
    torch.nn.functional.mse_loss(module(xt)[0], yt).backward()
    opt.step()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    errors = weight_errors(module, layer)
    assert max(errors.values()) <= WEIGHT_ATOL["float32"], errors
