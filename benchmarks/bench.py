"""Speed and memory of tflstm against torch and Keras: `nn.LSTM` and
`keras.layers.LSTM`, or with `--cell gru`, `nn.GRU` and
`keras.layers.GRU(reset_after=True)` (PyTorch's GRU), or with `--cell rnn`,
`nn.RNN` (tanh) and `keras.layers.SimpleRNN`.

    make bench                                  # every cell, ~45 minutes
    python benchmarks/bench.py [--out DIR]      # the LSTM's rows
    python benchmarks/bench.py --cell gru       # the GRU's rows (rnn: the RNN's)
    python benchmarks/bench.py --config small   # one configuration, here

The whole run happens twice, with TensorFlow's oneDNN optimisations on and
off (`TF_ENABLE_ONEDNN_OPTS=1` and `=0`, on the same machine): they change
TensorFlow's kernels and speed, and CPUs differ in which one is the default.
Each configuration runs in a process of its own (so that no library's thread
pools or caches leak between them), float32, with torch and TensorFlow on the
same number of threads. For every configuration it first checks that the
implementations compute the same numbers (max abs error against torch), then
times, as the median of REPEATS runs after WARMUP:

- forward (inference): torch `nn.LSTM` under `no_grad`; `keras.layers.LSTM`
  (stacked / `Bidirectional` to match, via `converters.to_keras`; the same
  for the GRU) in a
  `tf.function`; tflstm's kernels: `default` (`kernel="auto"`, what a user
  gets), `loop`, `block` (BlockLSTMV2, where it applies) and `xla`
  (`kernel="xla"`; a GRU has no `block`); the exported `.tflite` in LiteRT
  with the same threads;
- training step (forward + backward of a mean-square loss to every weight):
  torch, Keras, tflstm's default (the exact `bptt` kernel), and both Keras
  and tflstm with the whole step compiled by XLA (what
  `model.compile(jit_compile=True)` does).

It reports ratios tflstm/keras and tflstm/torch, achieved GFLOP/s against a
measured matmul peak, and the peak memory (RSS growth) of one forward pass at
L = 2,000 for Keras and tflstm, each in a fresh process. Results go to
`results.json`, `results.md` (a page of the docs' benchmarks) and `results.png`
(`results_gru.*` for the GRU, `results_rnn.*` for the RNN),
with the oneDNN state and the CPU's vector extensions of each run. Timings,
not tests: the machines are shared and noisy (10-20% between runs).
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
# Each implementation is timed in ROUNDS rounds, interleaved with the others
# (the first one timed in a process used to pay for warm-up effects), and its
# time is the median of its round medians.
ROUNDS = 3
THREADS = 2
CHECK_ATOL = 1e-4  # float32 over up to 200 steps: torch's own error is ~1e-6
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
CELL_NAMES = {
    "lstm": "nn.LSTM, keras.layers.LSTM, tflstm.LSTM",
    "gru": "nn.GRU, keras.layers.GRU(reset_after=True), tflstm.GRU",
    "rnn": "nn.RNN (tanh), keras.layers.SimpleRNN, tflstm.RNN",
}


def _median_ms(fn) -> float:
    return median_ms(fn, repeats=REPEATS, warmup=WARMUP)


def _interleaved_ms(fns: dict) -> dict[str, float]:
    """{name: ms}: the median of ROUNDS interleaved rounds of `_median_ms`."""
    import numpy as np

    rounds = [{k: _median_ms(f) for k, f in fns.items()} for _ in range(ROUNDS)]
    return {k: float(np.median([r[k] for r in rounds])) for k in fns}


def forward_flops(config, cell: str = "lstm") -> float:
    """Multiply-adds x 2 of the gate matmuls of one forward pass."""
    steps, batch, inputs, hidden, layers, bidirectional, proj = config
    gates = GATES[cell]
    d = 2 if bidirectional else 1
    out = proj or hidden
    flops = 0.0
    for k in range(layers):
        i = inputs if k == 0 else d * out
        per_step = 2 * batch * gates * hidden * (i + out) + 2 * batch * hidden * proj
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


def _setup(config, cell: str = "lstm"):
    import numpy as np
    import tensorflow as tf
    import torch

    import converters

    torch.set_num_threads(THREADS)
    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    steps, batch, inputs, hidden, layers, bidirectional, proj = config
    torch.manual_seed(0)
    extra = {"proj_size": proj} if proj else {}
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](
        inputs, hidden, layers, bidirectional=bidirectional, **extra
    )
    base = converters.from_torch(module)
    layers_by_kernel = {}
    kernels = {"default": "auto", "loop": "loop", "block": "block", "xla": "xla"}
    if proj or cell != "lstm":
        del kernels["block"]  # BlockLSTMV2: an LSTM without projection only
    for name, kernel in kernels.items():
        layer = type(base).from_config({**base.get_config(), "kernel": kernel})
        converters.load_weights(layer, module.state_dict())
        layers_by_kernel[name] = layer
    keras_model = None if proj else converters.to_keras(base)
    x = np.random.default_rng(0).standard_normal((steps, batch, inputs))
    return module, base, layers_by_kernel, keras_model, x.astype("float32")


def run_config(name: str, config, cell: str = "lstm") -> dict:
    import numpy as np
    import tensorflow as tf
    import torch

    from tflstm.tflite import export_tflite

    module, base, layers, keras_model, x = _setup(config, cell)
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
        "default_kernel": default_inference_kernel(config, cell),
        "max_abs_error_vs_torch": errors,
        "forward_ms": _interleaved_ms(forward),
    }

    def torch_train():
        module.zero_grad()
        (module(xt)[0] ** 2).mean().backward()

    train = {"torch": torch_train}
    train_layer = layers["default"]
    for impl, jit in (("tflstm", False), ("tflstm_xla", True)):

        @tf.function(jit_compile=jit)
        def tflstm_train(x, layer=train_layer):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(layer(x, training=True)[0] ** 2)
            return tape.gradient(loss, layer.trainable_weights)

        train[impl] = lambda fn=tflstm_train: fn(x_tf)
    if keras_model is not None:
        for impl, jit in (("keras", False), ("keras_xla", True)):

            @tf.function(jit_compile=jit)
            def keras_train(x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(keras_model(x, training=True) ** 2)
                return tape.gradient(loss, keras_model.trainable_weights)

            train[impl] = lambda fn=keras_train: fn(x_batch_major)
    result["train_ms"] = _interleaved_ms(train)

    flops = forward_flops(config, cell)
    result["forward_gflops"] = {
        impl: flops / (ms * 1e-3) / 1e9 for impl, ms in result["forward_ms"].items()
    }
    if name == "compute":
        result["matmul_peak_gflops"] = matmul_peak_gflops()
    return result


def run_memory(impl: str, cell: str = "lstm") -> dict:
    """RSS growth (MiB) of one forward pass at L = 2,000 over a warm-up at L = 10."""
    import numpy as np
    import tensorflow as tf

    _, _, layers, keras_model, x = _setup(MEMORY_CONFIG, cell)
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


def environment() -> dict:
    """What changes TensorFlow's speed here: oneDNN and the CPU's extensions."""
    from tflstm.kernels import probes as _probes

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
    return {
        "onednn": _probes.onednn_enabled(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "vector_extensions": [f for f in wanted if f in flags],
    }


def default_inference_kernel(config, cell: str = "lstm") -> str:
    """The kernel that `kernel="auto"` runs for a configuration's forward
    pass here (its static batch, hidden size, projection; this oneDNN state)."""
    from tflstm.kernels import policy as _policy

    _, batch, _, hidden, _, _, proj = config
    facts = _policy.gather_facts(
        cell=cell,
        training=False,
        dtype="float32",
        projection=bool(proj),
        lengths=False,
        hidden_size=hidden,
        batch=batch,
        kernel="auto",
        use_cudnn="auto",
    )
    return _policy.choose_kernel(facts)


def _child(args: list[str], onednn: str, script: str = __file__) -> dict:
    """The JSON that `script` prints last, run with `args` and this oneDNN
    setting in a process of its own."""
    out = subprocess.run(
        [sys.executable, script, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn},
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


IMPLS = ["tflstm_default", "tflstm_loop", "tflstm_block", "tflstm_xla"]


def _table(run: dict) -> str:
    head = (
        "| L, N, I, H, layers | torch | Keras | tflstm default | loop | block | "
        "XLA | TFLite | default/Keras | default/torch | default/fastest | "
        "train: torch | Keras | tflstm | tflstm/Keras | XLA: Keras | tflstm | "
        "tflstm XLA/Keras |\n" + "|---" * 18 + "|\n"
    )
    rows = []
    for name, r in run["configs"].items():
        c, f, t = r["config"], r["forward_ms"], r["train_ms"]
        shape = f"{c['L']}, {c['N']}, {c['I']}, {c['H']}, {c['num_layers']}"
        shape += " bidir" if c["bidirectional"] else ""
        shape += f" proj {c['proj_size']}" if c["proj_size"] else ""
        default = f["tflstm_default"]
        fastest = min(f[k] for k in IMPLS if k in f)

        def ms(d, k):
            return f"{d[k]:.1f}" if k in d else "-"

        def ratio(a, d, k):
            return f"{a / d[k]:.2f}" if k in d else "-"

        chosen = f" ({r['default_kernel']})" if "default_kernel" in r else ""
        rows.append(
            f"| {shape} ({name}) | {ms(f, 'torch')} | {ms(f, 'keras')} | "
            + " | ".join(
                ms(f, k) + (chosen if k == "tflstm_default" else "") for k in IMPLS
            )
            + f" | {ms(f, 'tflite')} | {ratio(default, f, 'keras')} | "
            f"{ratio(default, f, 'torch')} | {default / fastest:.2f} | "
            f"{ms(t, 'torch')} | {ms(t, 'keras')} | {ms(t, 'tflstm')} | "
            f"{ratio(t['tflstm'], t, 'keras')} | {ms(t, 'keras_xla')} | "
            f"{ms(t, 'tflstm_xla')} | {ratio(t['tflstm_xla'], t, 'keras')} |"
        )
    memory = run["memory"]
    mem = ", ".join(
        f"{k} {v['peak_rss_growth_mib']:.0f} MiB" for k, v in memory.items()
    )
    compute = run["configs"].get("compute", {})
    peak = compute.get("matmul_peak_gflops", float("nan"))
    gflops = compute.get("forward_gflops", {})
    achieved = ", ".join(f"{k} {v:.0f}" for k, v in gflops.items())
    env = run["environment"]
    return (
        f"oneDNN {'on' if env['onednn'] else 'off'} "
        f"(TF_ENABLE_ONEDNN_OPTS={env['TF_ENABLE_ONEDNN_OPTS']}; the default's "
        "kernel in brackets):\n\n"
        + head
        + "\n".join(rows)
        + f"\n\nCompute-bound row, GFLOP/s: {achieved}; matmul peak {peak:.0f}. "
        f"Peak memory of a forward pass at L=2,000 (RSS growth): {mem}.\n"
    )


def _report(results: dict) -> str:
    first = next(iter(results["runs"].values()))["environment"]
    parts = [
        f"{CELL_NAMES[results.get('cell', 'lstm')]}. "
        f"Machine: {results['machine']}, {THREADS} threads, vector extensions "
        f"{', '.join(first['vector_extensions'])}, {results['date']}. Forward "
        f"times in ms (medians of {ROUNDS} interleaved rounds of {REPEATS}); "
        'default = `kernel="auto"`, what '
        "a user gets; XLA training = the whole step under `jit_compile=True`.\n"
    ]
    parts += [_table(run) for run in results["runs"].values()]
    return "\n".join(parts)


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    fig, axes = plt.subplots(len(runs), 2, figsize=(13, 4 * len(runs)), squeeze=False)
    for row, (setting, run) in zip(axes, runs.items(), strict=True):
        names = list(run["configs"])
        panels = [
            (row[0], "forward_ms", ["torch", "keras", *IMPLS, "tflite"]),
            (
                row[1],
                "train_ms",
                ["torch", "keras", "tflstm", "keras_xla", "tflstm_xla"],
            ),
        ]
        for ax, timing, impls in panels:
            width = 0.8 / len(impls)
            for j, impl in enumerate(impls):
                ratios = [
                    run["configs"][n][timing].get(impl, float("nan"))
                    / run["configs"][n][timing]["torch"]
                    for n in names
                ]
                ax.bar(
                    [i + j * width for i in range(len(names))],
                    ratios,
                    width,
                    label=impl,
                )
        for ax, title in zip(row, ("forward", "training step"), strict=True):
            ax.set_xticks([i + 0.3 for i in range(len(names))], names)
            ax.axhline(1.0, color="k", lw=0.5)
            ax.set_ylabel("time / torch")
            ax.set_title(f"{title}, {setting} ({results['date']})")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=sorted(GATES), default="lstm")
    parser.add_argument("--config", choices=sorted(CONFIGS))
    parser.add_argument("--memory", help="internal: one memory measurement")
    parser.add_argument("--environment", action="store_true", help="internal")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument(
        "--only",
        nargs="*",
        help="configurations to run (default: all; a GRU has no projection)",
    )
    parser.add_argument(
        "--onednn",
        nargs="*",
        default=["1", "0"],
        help="TF_ENABLE_ONEDNN_OPTS values to run with (default: 1 then 0)",
    )
    args = parser.parse_args(argv)
    if args.config:
        print(json.dumps(run_config(args.config, CONFIGS[args.config], args.cell)))
        return
    if args.memory:
        print(json.dumps(run_memory(args.memory, args.cell)))
        return
    only = args.only or [n for n in CONFIGS if args.cell == "lstm" or n != "proj"]
    if args.environment:
        print(json.dumps(environment()))
        return
    import tflstm  # noqa: F401  (first: TensorFlow without its start-up lines)

    # isort: split
    import tensorflow as tf
    import torch

    results = {
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "cell": args.cell,
        "versions": {"tensorflow": tf.__version__, "torch": torch.__version__},
        "runs": {},
    }
    for setting in args.onednn:
        env = _child(["--environment"], setting)
        label = f"onednn_{'on' if env['onednn'] else 'off'}"
        print(f"{label}: {env}", file=sys.stderr, flush=True)
        run = {"environment": env, "configs": {}, "memory": {}}
        for name in CONFIGS:
            if name in only:
                print(f"  {name} ...", file=sys.stderr, flush=True)
                cell = ["--cell", args.cell]
                run["configs"][name] = _child([*cell, "--config", name], setting)
        for impl in ("keras", "tflstm_default"):
            run["memory"][impl] = _child(
                ["--cell", args.cell, "--memory", impl], setting
            )
        results["runs"][label] = run
    out = Path(args.out)
    stem = "results" if args.cell == "lstm" else f"results_{args.cell}"
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{stem}.md").write_text(_report(results))
    _plot(results, out / f"{stem}.png")
    print(_report(results))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
