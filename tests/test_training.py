"""Training parity with torch (optimiser steps through `model.fit`), dropout
between layers, `tf.distribute.MirroredStrategy`, mixed precision."""

import math
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import torch
from grids import pairwise
from oracle import TORCH_DTYPES, copy_torch_weights, weight_errors

import tflstm

H_IN, H, L, N = 4, 6, 7, 5
STEPS = 20
# After 20 optimiser steps, weights against torch's (max abs error).
WEIGHT_ATOL = {"float64": 1e-9, "float32": 1e-4}
CONFIGS = {
    "stacked": dict(num_layers=2),
    "bidirectional": dict(bidirectional=True),
    "projected": dict(proj_size=3),
    "all": dict(num_layers=2, bidirectional=True, proj_size=3),
}
# Hyper-parameters exactly representable in float32: Keras keeps the rate in
# a float32 variable and casts momentum and betas through float32 tensors,
# torch uses Python floats (0.9 would differ by 2e-8, visible in float64).
# Adam's epsilon: Keras adds it to sqrt(v), torch to sqrt(v)/sqrt(1-beta_2^t)
# (32x smaller here), so they agree only where epsilon << |gradient|; some
# gradient components are ~1e-9 (layer 1's weight_hh on the first step), so
# epsilon is 1e-20 in float64 and 1e-12 in float32.
MOMENTUM, BETAS = 0.875, (0.875, 1 - 2**-10)
EPSILON = {"float64": 1e-20, "float32": 1e-12}
OPTIMIZERS = {
    "sgd": (
        lambda params, dtype: torch.optim.SGD(params, lr=2**-5, momentum=MOMENTUM),
        lambda dtype: keras.optimizers.SGD(2**-5, momentum=MOMENTUM),
    ),
    "adam": (
        lambda params, dtype: torch.optim.Adam(
            params, lr=2**-10, betas=BETAS, eps=EPSILON[dtype]
        ),
        lambda dtype: keras.optimizers.Adam(
            2**-10, beta_1=BETAS[0], beta_2=BETAS[1], epsilon=EPSILON[dtype]
        ),
    ),
}


# Every pair of (configuration, optimiser, dtype) values, in 8 of the 16
# combinations: the optimiser's update and the layer's gradient are independent
# code paths. float32's numbers are what TensorFlow's oneDNN setting can change.
FIT_CASES = [
    pytest.param(
        c["config"],
        c["optimizer"],
        c["dtype"],
        id=f"{c['config']}-{c['optimizer']}-{c['dtype']}",
        marks=[pytest.mark.numerics] if c["dtype"] == "float32" else [],
    )
    for c in pairwise(
        [
            dict(config=c, optimizer=o, dtype=d)
            for c in sorted(CONFIGS)
            for o in sorted(OPTIMIZERS)
            for d in ("float64", "float32")
        ]
    )
]


@pytest.mark.parametrize(("config", "optimizer", "dtype"), FIT_CASES)
def test_fit_matches_torch_optimiser_steps(config, optimizer, dtype):
    """20 full-batch steps of torch's optimiser and of Keras's `model.fit`
    from the same weights and data give the same weights."""
    cfg = CONFIGS[config]
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, batch_first=True, **cfg).to(TORCH_DTYPES[dtype])
    layer = tflstm.LSTM(
        H_IN, H, batch_first=True, return_state=False, dtype=dtype, **cfg
    )
    copy_torch_weights(module, layer)
    rng = np.random.default_rng(0)
    # float32-representable data: Keras's data adapter casts float inputs to
    # floatx (float32), which must not be what the comparison measures.
    x = rng.standard_normal((N, L, H_IN)).astype("float32").astype(dtype)
    d = 2 if cfg.get("bidirectional") else 1
    y = rng.standard_normal((N, L, d * (cfg.get("proj_size") or H)))
    y = y.astype("float32").astype(dtype)

    make_torch, make_keras = OPTIMIZERS[optimizer]
    opt = make_torch(module.parameters(), dtype)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(STEPS):
        opt.zero_grad()
        torch.nn.functional.mse_loss(module(xt)[0], yt).backward()
        opt.step()

    model = keras.Sequential([keras.Input((L, H_IN), dtype=dtype), layer])
    # Keras losses compute in floatx (float32) unless told otherwise.
    model.compile(make_keras(dtype), loss=keras.losses.MeanSquaredError(dtype=dtype))
    # STEPS full-batch steps, as one epoch over the data repeated (an epoch
    # each would spend most of the test in Keras's per-epoch overhead).
    batch_losses = []  # Keras's running mean of the epoch's losses
    model.fit(
        np.tile(x, (STEPS, 1, 1)),
        np.tile(y, (STEPS, 1, 1)),
        batch_size=N,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[
            keras.callbacks.LambdaCallback(
                on_train_batch_end=lambda _, logs: batch_losses.append(logs["loss"])
            )
        ],
    )
    assert len(batch_losses) == STEPS
    assert batch_losses[-1] < batch_losses[0]

    errors = weight_errors(module, layer)
    moved = max(
        float(np.abs(getattr(layer, n).numpy() - p0).max())
        for n, p0 in _initial(config, dtype).items()
    )
    assert moved > 100 * WEIGHT_ATOL[dtype], "the weights must actually change"
    bad = {k: e for k, e in errors.items() if not e <= WEIGHT_ATOL[dtype]}
    assert not bad, bad


def _initial(config, dtype):
    torch.manual_seed(0)
    module = torch.nn.LSTM(H_IN, H, batch_first=True, **CONFIGS[config])
    return {n: p.detach().numpy().astype(dtype) for n, p in module.named_parameters()}


@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout_between_layers(p):
    """In training, each inter-layer activation is zeroed with probability p
    (5 sigma), survivors are scaled by 1/(1-p), the last layer's output is
    not dropped; inference is deterministic."""
    layer = tflstm.LSTM(H_IN, 32, num_layers=3, dropout=p, seed=1)
    recorded = []
    dropout = layer._dropout

    def spy(x):
        y = dropout(x)
        recorded.append((x.numpy(), y.numpy()))
        return y

    layer._dropout = spy
    x = np.random.default_rng(0).standard_normal((60, 40, H_IN)).astype("float32")
    output, _ = layer(x, training=True)
    assert len(recorded) == 2  # after layers 0 and 1, not after the last
    for before, after in recorded:
        kept = after != 0
        n = before.size
        assert abs(1 - kept.mean() - p) < 5 * math.sqrt(p * (1 - p) / n)
        np.testing.assert_allclose(after[kept], before[kept] / (1 - p), rtol=1e-6)
    # The last layer alone, on the dropped input it received, gives the output.
    last = tflstm.LSTM(32, 32)
    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(last, f"{kind}_l0").assign(getattr(layer, f"{kind}_l2"))
    np.testing.assert_allclose(last(recorded[1][1])[0], output, atol=1e-6, rtol=0)

    recorded.clear()
    a, b = layer(x, training=False)[0], layer(x)[0]
    assert not recorded
    np.testing.assert_array_equal(a, b)


def test_dropout_reproducible_under_keras_seed():
    x = np.random.default_rng(0).standard_normal((L, N, H_IN)).astype("float32")

    def run():
        keras.utils.set_random_seed(42)
        layer = tflstm.LSTM(H_IN, H, num_layers=2, dropout=0.5)
        return layer(x, training=True)[0].numpy()

    np.testing.assert_array_equal(run(), run())


DISTRIBUTED = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    import tflstm

    L, H_IN = 6, 4
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, L, H_IN)).astype("float32")
    y = rng.standard_normal((16, 1)).astype("float32")

    def build():
        model = keras.Sequential([
            keras.Input((L, H_IN)),
            tflstm.LSTM(H_IN, 5, num_layers=2, bidirectional=True, proj_size=3,
                        batch_first=True, return_state=False, seed=0),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ])
        model.compile(keras.optimizers.SGD(0.125), "mse")
        return model

    single = build()
    initial = single.get_weights()
    single.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        mirrored = build()
        mirrored.set_weights(initial)
    mirrored.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    diff = max(
        float(np.abs(a - b).max())
        for a, b in zip(single.get_weights(), mirrored.get_weights())
    )
    moved = max(
        float(np.abs(a - b).max()) for a, b in zip(initial, mirrored.get_weights())
    )

    path = sys.argv[1]
    mirrored.save(path)  # saved from the strategy's variables
    restored = keras.models.load_model(path)  # outside the strategy
    restore_diff = float(np.abs(restored.predict(x, verbose=0)
                                - mirrored.predict(x, verbose=0)).max())
    print("RESULT", diff, moved, restore_diff)
    """
)


def test_mirrored_strategy_matches_one_device(tmp_path):
    """`model.fit` under MirroredStrategy on 2 logical CPUs gives the weights
    of one device (float32 tolerance); its checkpoint restores outside it."""
    result = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED, str(tmp_path / "mirrored.keras")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(s for s in result.stdout.splitlines() if s.startswith("RESULT"))
    diff, moved, restore_diff = map(float, line.split()[1:])
    assert moved > 1e-3
    assert diff <= 1e-5
    assert restore_diff <= 1e-6


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit_trains_and_stays_close_to_float32(policy):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, L, H_IN)).astype("float32")
    y = rng.standard_normal((32, L, 2 * H)).astype("float32")

    def fit(dtype):
        keras.utils.set_random_seed(0)
        layer = tflstm.LSTM(
            H_IN,
            H,
            num_layers=2,
            bidirectional=True,
            batch_first=True,
            return_state=False,
            dtype=dtype,
            seed=0,
        )
        model = keras.Sequential([keras.Input((L, H_IN)), layer])
        model.compile(keras.optimizers.SGD(0.125), "mse")
        history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False)
        return model, history.history["loss"]

    mixed, loss = fit(policy)
    reference, _ = fit("float32")
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    assert mixed.layers[0].variable_dtype == "float32"
    out = keras.ops.convert_to_numpy(mixed(x)).astype("float32")
    np.testing.assert_allclose(out, reference(x), atol=1e-2, rtol=0)
