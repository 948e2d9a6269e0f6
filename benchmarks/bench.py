"""Speed and memory of tflstm against torch.nn.LSTM and keras.layers.LSTM.

    make bench                                  # everything, ~10 minutes
    python benchmarks/bench.py [--out DIR]      # the same
    python benchmarks/bench.py --config small   # one configuration, here

Each configuration runs in a process of its own (so that no library's thread
pools or caches leak between them), float32, with torch and TensorFlow on the
same number of threads. For every configuration it first checks that the
implementations compute the same numbers (max abs error against torch), then
times, as the median of REPEATS runs after WARMUP:

- forward (inference): torch `nn.LSTM` under `no_grad`; `keras.layers.LSTM`
  (stacked / `Bidirectional` to match, via `converters.to_keras`) in a
  `tf.function`; tflstm's inference kernels: `fused` (the default,
  BlockLSTMV2 where it applies, else the loop), `loop` (`fused=False`),
  `xla` (`jit_compile=True`); the exported `.tflite` (fused LSTM op) in
  LiteRT with the same threads;
- training step (forward + backward of a mean-square loss to every weight):
  torch, Keras, tflstm (`training=True`: the exact path), and the same with
  `jit_compile=True` (its loops compiled by XLA).

It reports ratios tflstm/keras and tflstm/torch, achieved GFLOP/s against a
measured matmul peak, and the peak memory (RSS growth) of one forward pass at
L = 2,000 for Keras and tflstm, each in a fresh process. Results go to
`results.json`, `results.md` (the table in the README) and `results.png`.
Timings, not tests: the machines are shared and noisy (10-20% between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _timing import median_ms  # benchmarks/ is on sys.path when run as a script

# name: (L, N, I, H, num_layers, bidirectional, proj_size)
CONFIGS = {
    "small": (100, 32, 64, 128, 1, False, 0),
    "bidir2": (100, 32, 64, 128, 2, True, 0),
    "streaming": (50, 1, 40, 256, 1, False, 0),
    "compute": (200, 64, 128, 512, 1, False, 0),
    "proj": (100, 32, 64, 256, 1, False, 64),
}
MEMORY_CONFIG = (2000, 32, 64, 128, 1, False, 0)
REPEATS, WARMUP = 7, 2
THREADS = 2
CHECK_ATOL = 1e-4  # float32 over up to 200 steps: torch's own error is ~1e-6


def _median_ms(fn) -> float:
    return median_ms(fn, repeats=REPEATS, warmup=WARMUP)


def forward_flops(config) -> float:
    """Multiply-adds x 2 of the gate matmuls of one forward pass."""
    steps, batch, inputs, hidden, layers, bidirectional, proj = config
    d = 2 if bidirectional else 1
    out = proj or hidden
    flops = 0.0
    for k in range(layers):
        i = inputs if k == 0 else d * out
        per_step = 2 * batch * 4 * hidden * (i + out) + 2 * batch * hidden * proj
        flops += d * steps * per_step
    return flops


def matmul_peak_gflops() -> float:
    """The better of TensorFlow's and torch's float32 1024^3 matmul."""
    import numpy as np
    import tensorflow as tf
    import torch

    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    ta, tt = tf.constant(a), torch.from_numpy(a)
    tf_ms = _median_ms(lambda: tf.matmul(ta, ta).numpy())
    torch_ms = _median_ms(lambda: torch.mm(tt, tt))
    return 2 * 1024**3 / (min(tf_ms, torch_ms) * 1e-3) / 1e9


def _setup(config):
    import numpy as np
    import tensorflow as tf
    import torch

    import converters
    import tflstm

    torch.set_num_threads(THREADS)
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    steps, batch, inputs, hidden, layers, bidirectional, proj = config
    torch.manual_seed(0)
    module = torch.nn.LSTM(
        inputs, hidden, layers, bidirectional=bidirectional, proj_size=proj
    )
    base = converters.from_torch(module)
    layers_by_kernel = {}
    for kernel, options in (
        ("fused", {}),
        ("loop", {"fused": False}),
        ("xla", {"jit_compile": True}),
    ):
        layer = tflstm.LSTM.from_config({**base.get_config(), **options})
        converters.load_weights(layer, module.state_dict())
        layers_by_kernel[kernel] = layer
    keras_model = None if proj else converters.to_keras(base)
    x = np.random.default_rng(0).standard_normal((steps, batch, inputs))
    return module, base, layers_by_kernel, keras_model, x.astype("float32")


def run_config(name: str, config) -> dict:
    import numpy as np
    import tensorflow as tf
    import torch

    from tflstm.tflite import export_tflite

    module, base, layers, keras_model, x = _setup(config)
    batch = x.shape[1]
    xt, x_tf = torch.from_numpy(x), tf.constant(x)
    x_batch_major = tf.constant(np.ascontiguousarray(x.transpose(1, 0, 2)))
    with torch.no_grad():
        reference = module(xt)[0].numpy()

    def torch_forward():
        with torch.no_grad():
            return module(xt)[0]

    forward = {"torch": torch_forward}
    for kernel, layer in layers.items():
        fn = tf.function(lambda x, layer=layer: layer(x, training=False)[0])
        forward[f"tflstm_{kernel}"] = lambda fn=fn: fn(x_tf)
    if keras_model is not None:
        keras_fn = tf.function(lambda x: keras_model(x, training=False))
        forward["keras"] = lambda: tf.transpose(keras_fn(x_batch_major), [1, 0, 2])

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_content=export_tflite(base, batch_size=batch), num_threads=THREADS
    )
    runner = interpreter.get_signature_runner("serving_default")
    feed = {"input": x}
    for detail in runner.get_input_details():
        if detail != "input":
            shape = runner.get_input_details()[detail]["shape"]
            feed[detail] = np.zeros(shape, "float32")
    forward["tflite"] = lambda: runner(**feed)["output"]

    errors = {}
    for impl, fn in forward.items():
        out = fn()
        out = out["output"] if isinstance(out, dict) else out
        errors[impl] = float(np.abs(np.asarray(out) - reference).max())
    bad = {k: e for k, e in errors.items() if not e <= CHECK_ATOL}
    if bad:
        raise SystemExit(f"{name}: implementations disagree with torch: {bad}")

    result = {
        "config": dict(
            zip(
                ("L", "N", "I", "H", "num_layers", "bidirectional", "proj_size"),
                config,
                strict=True,
            )
        ),
        "max_abs_error_vs_torch": errors,
        "forward_ms": {impl: _median_ms(fn) for impl, fn in forward.items()},
    }

    def torch_train():
        module.zero_grad()
        (module(xt)[0] ** 2).mean().backward()

    train = {"torch": torch_train}
    for impl, kernel in (("tflstm", "fused"), ("tflstm_xla", "xla")):
        train_layer = layers[kernel]

        @tf.function
        def tflstm_train(x, layer=train_layer):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(layer(x, training=True)[0] ** 2)
            return tape.gradient(loss, layer.trainable_weights)

        train[impl] = lambda fn=tflstm_train: fn(x_tf)
    if keras_model is not None:

        @tf.function
        def keras_train(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(keras_model(x, training=True) ** 2)
            return tape.gradient(loss, keras_model.trainable_weights)

        train["keras"] = lambda: keras_train(x_batch_major)
    result["train_ms"] = {impl: _median_ms(fn) for impl, fn in train.items()}

    flops = forward_flops(config)
    result["forward_gflops"] = {
        impl: flops / (ms * 1e-3) / 1e9 for impl, ms in result["forward_ms"].items()
    }
    if name == "compute":
        result["matmul_peak_gflops"] = matmul_peak_gflops()
    return result


def run_memory(impl: str) -> dict:
    """RSS growth (MiB) of one forward pass at L = 2,000 over a warm-up at L = 10."""
    import numpy as np
    import tensorflow as tf

    _, _, layers, keras_model, x = _setup(MEMORY_CONFIG)
    if impl == "keras":
        fn = tf.function(lambda x: keras_model(x, training=False))
        x = np.ascontiguousarray(x.transpose(1, 0, 2))
        warm = x[:, :10]
    else:
        layer = layers[impl.removeprefix("tflstm_")]
        fn = tf.function(lambda x: layer(x, training=False)[0])
        warm = x[:10]
    fn(tf.constant(warm)).numpy()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn(tf.constant(x)).numpy()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_growth_mib": (after - before) / 1024}


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=1200,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _table(results: dict) -> str:
    head = (
        "| L, N, I, H, layers | torch | Keras | tflstm fused | loop | XLA | "
        "TFLite | tflstm/Keras | tflstm/torch | train: torch | Keras | tflstm | "
        "tflstm XLA | tflstm/Keras | XLA/Keras |\n" + "|---" * 15 + "|\n"
    )
    rows = []
    for name, r in results["configs"].items():
        c, f, t = r["config"], r["forward_ms"], r["train_ms"]
        shape = f"{c['L']}, {c['N']}, {c['I']}, {c['H']}, {c['num_layers']}"
        shape += " bidir" if c["bidirectional"] else ""
        shape += f" proj {c['proj_size']}" if c["proj_size"] else ""
        best = min(f["tflstm_fused"], f["tflstm_loop"])

        def ms(d, k):
            return f"{d[k]:.1f}" if k in d else "-"

        def ratio(a, d, k):
            return f"{a / d[k]:.2f}" if k in d else "-"

        rows.append(
            f"| {shape} ({name}) | {ms(f, 'torch')} | {ms(f, 'keras')} | "
            f"{ms(f, 'tflstm_fused')} | {ms(f, 'tflstm_loop')} | "
            f"{ms(f, 'tflstm_xla')} | {ms(f, 'tflite')} | "
            f"{ratio(best, f, 'keras')} | {ratio(best, f, 'torch')} | "
            f"{ms(t, 'torch')} | {ms(t, 'keras')} | {ms(t, 'tflstm')} | "
            f"{ms(t, 'tflstm_xla')} | {ratio(t['tflstm'], t, 'keras')} | "
            f"{ratio(t['tflstm_xla'], t, 'keras')} |"
        )
    memory = results["memory"]
    mem = ", ".join(
        f"{k} {v['peak_rss_growth_mib']:.0f} MiB" for k, v in memory.items()
    )
    compute = results["configs"].get("compute", {})
    peak = compute.get("matmul_peak_gflops")
    gflops = compute.get("forward_gflops", {})
    achieved = ", ".join(f"{k} {v:.0f}" for k, v in gflops.items())
    return (
        head + "\n".join(rows) + "\n\nForward times in ms (medians of "
        f"{REPEATS}); ratios use tflstm's better non-XLA kernel (fused or loop). "
        f"Compute-bound row, GFLOP/s: {achieved}; matmul peak {peak:.0f}. "
        f"Peak memory of a forward pass at L=2,000 (RSS growth): {mem}. "
        f"Machine: {results['machine']}, {THREADS} threads, {results['date']}.\n"
    )


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["configs"])
    impls = ["torch", "keras", "tflstm_fused", "tflstm_loop", "tflstm_xla", "tflite"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(impls)
    for j, impl in enumerate(impls):
        ratios = []
        for n in names:
            f = results["configs"][n]["forward_ms"]
            ratios.append(f.get(impl, float("nan")) / f["torch"])
        axes[0].bar(
            [i + j * width for i in range(len(names))], ratios, width, label=impl
        )
    train_impls = ["torch", "keras", "tflstm", "tflstm_xla"]
    for j, impl in enumerate(train_impls):
        ratios = []
        for n in names:
            t = results["configs"][n]["train_ms"]
            ratios.append(t.get(impl, float("nan")) / t["torch"])
        axes[1].bar([i + j * 0.2 for i in range(len(names))], ratios, 0.2, label=impl)
    for ax, title in zip(axes, ("forward", "training step"), strict=True):
        ax.set_xticks([i + 0.3 for i in range(len(names))], names)
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_ylabel("time / torch")
        ax.set_title(f"{title} ({results['machine']}, {results['date']})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS))
    parser.add_argument("--memory", help="internal: one memory measurement")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument(
        "--only", nargs="*", default=sorted(CONFIGS), help="configurations to run"
    )
    args = parser.parse_args(argv)
    if args.config:
        print(json.dumps(run_config(args.config, CONFIGS[args.config])))
        return
    if args.memory:
        print(json.dumps(run_memory(args.memory)))
        return
    import tensorflow as tf

    results = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "versions": {"tensorflow": tf.__version__},
        "configs": {},
        "memory": {},
    }
    import torch

    results["versions"]["torch"] = torch.__version__
    for name in CONFIGS:
        if name in args.only:
            print(f"{name} ...", file=sys.stderr, flush=True)
            results["configs"][name] = _child(["--config", name])
    for impl in ("keras", "tflstm_fused", "tflstm_loop"):
        results["memory"][impl] = _child(["--memory", impl])
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(_table(results))
    _plot(results, out / "results.png")
    print(_table(results))


if __name__ == "__main__":
    main()
