"""How fast can TensorFlow run an LSTM at all? The floors under `make bench`.

    make bench-floors                          # both oneDNN settings, ~5 minutes
    python benchmarks/floors.py --only small   # some configurations

For each configuration of `bench.py`, in a process of its own and with the
same threads, it times (interleaved rounds, medians, as `bench.py` does):

- `torch`, `keras`, `tflstm_default`: as in `bench.py`;
- `tf_matmuls`: the recurrent matmuls alone, one per step (and direction
  and layer; two with a projection), each on the previous step's result,
  plus each layer's input projection as one matmul. Every LSTM has to run
  these one after another: a step's matmul cannot start before the previous
  step's gates are done.
- `tf_gates`: the gates' elementwise ops alone (sigmoid, tanh, the cell
  update; no recurrent matmul), about ten ops per step, each paying
  TensorFlow's cost per op.
- `tf_graph`: the whole LSTM in the fewest TensorFlow ops, every step
  written out (no while loop, no TensorArray, static shapes, the input
  projection as one matmul): the fastest way to express the recurrence as a
  TensorFlow graph; it only exists for one fixed length.
- `tf_block`: TensorFlow's own fused op for a whole sequence (BlockLSTMV2; no
  projection), and `tf_xla`: tflstm's loop compiled by XLA for this shape.

`tf_best` is the fastest of `tf_graph`, `tf_block` and `tf_xla`: the best any
formulation that TensorFlow offers reached, without a compiled custom op. The
report compares it with the speed targets of the project (0.8x Keras, 1.5x
torch on batched rows, 2x torch when streaming): a target below `tf_best` is
out of reach for a kernel made of TensorFlow's ops on this machine.

Results go to `floors.json` and `floors.md`. Timings, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import bench  # benchmarks/ is on sys.path when run as a script

# The project's inference targets (issue #14): the default kernel's time over
# Keras's and over torch's.
TARGET_VS_KERAS = 0.8
TARGET_VS_TORCH = {"streaming": 2.0}  # the batched rows: 1.5
TARGET_VS_TORCH_BATCHED = 1.5


def _layer_weights(module, layer: int, direction: int) -> dict:
    """One direction of one layer of a torch LSTM as float32 variables (as a
    layer holds them: constants would let Grappler fold the matmuls-only
    chain away), the gate biases summed."""
    import tensorflow as tf

    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    params = {k: v.detach().numpy() for k, v in module.named_parameters()}
    arrays = {
        "w_ih_t": params["weight_ih" + suffix].T,
        "w_hh_t": params["weight_hh" + suffix].T,
        "bias": params["bias_ih" + suffix] + params["bias_hh" + suffix],
        "w_hr_t": params.get("weight_hr" + suffix, None),
    }
    if arrays["w_hr_t"] is not None:
        arrays["w_hr_t"] = arrays["w_hr_t"].T
    return {k: None if a is None else tf.Variable(a) for k, a in arrays.items()}


def graph_forward(module, steps: int, part: str = "all"):
    """The torch LSTM `module` as a straight-line TensorFlow graph for inputs
    of `steps` steps: a tf.function of a time-major x. `part`: "all"
    (`tf_graph`), "matmuls" (`tf_matmuls`: the matmuls alone) or "gates"
    (the gates' elementwise ops alone)."""
    import tensorflow as tf

    num_directions = 2 if module.bidirectional else 1
    weights = [
        [_layer_weights(module, k, d) for d in range(num_directions)]
        for k in range(module.num_layers)
    ]
    hidden = module.hidden_size

    def direction(x, w):
        batch = x.shape[1]
        z = tf.reshape(
            tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), w["w_ih_t"]) + w["bias"],
            [steps, batch, -1],
        )
        # For "matmuls", h_0 is (a slice of) the first step's gates, not
        # zeros: every layer's chain of matmuls then depends on the input, so
        # that Grappler prunes none of them.
        h_out = w["w_hh_t"].shape[0]
        h = z[0][:, :h_out] if part == "matmuls" else tf.zeros([batch, h_out])
        c = tf.zeros([batch, hidden])
        outputs = []
        for t in range(steps):
            if part == "gates":
                gates = z[t]
            else:
                gates = tf.matmul(h, w["w_hh_t"])
            if part == "matmuls":
                h = m = gates[:, :hidden]
            else:
                if part == "all":
                    gates += z[t]
                i, f, g, o = tf.split(gates, 4, axis=-1)
                c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
                h = m = tf.sigmoid(o) * tf.tanh(c)
            if w["w_hr_t"] is not None and part != "gates":
                h = tf.matmul(m, w["w_hr_t"])
            outputs.append(h)
        return tf.stack(outputs)

    @tf.function
    def forward(x):
        for layer in weights:
            y = [direction(x, layer[0])]
            if num_directions == 2:
                y.append(tf.reverse(direction(tf.reverse(x, [0]), layer[1]), [0]))
            x = tf.concat(y, -1) if num_directions == 2 else y[0]
        return x

    return forward


def run_config(name: str, config) -> dict:
    import tensorflow as tf
    import torch

    module, _, layers, keras_model, x = bench._setup(config)
    steps = x.shape[0]
    xt, x_tf = torch.from_numpy(x), tf.constant(x)
    x_batch_major = tf.constant(x.transpose(1, 0, 2).copy())

    def torch_forward():
        with torch.no_grad():
            return module(xt)[0]

    def tf_call(fn):
        return lambda: fn(x_tf).numpy()

    def layer_fn(layer):
        return tf.function(lambda x: layer(x, training=False)[0])

    forward = {"torch": torch_forward}
    if keras_model is not None:
        keras_fn = tf.function(lambda x: keras_model(x, training=False))
        forward["keras"] = lambda: keras_fn(x_batch_major).numpy()
    forward["tflstm_default"] = tf_call(layer_fn(layers["default"]))
    for part in ("matmuls", "gates"):
        forward[f"tf_{part}"] = tf_call(graph_forward(module, steps, part))
    forward["tf_graph"] = tf_call(graph_forward(module, steps))
    if "block" in layers:
        forward["tf_block"] = tf_call(layer_fn(layers["block"]))
    forward["tf_xla"] = tf_call(layer_fn(layers["xla"]))

    with torch.no_grad():
        reference = module(xt)[0].numpy()
    for impl in ("tf_graph", "tflstm_default"):
        error = float(abs(forward[impl]() - reference).max())
        if not error <= bench.CHECK_ATOL:
            raise SystemExit(f"{name}: {impl} disagrees with torch by {error}")

    ms = bench._interleaved_ms(forward)
    best = min(("tf_graph", "tf_block", "tf_xla"), key=lambda k: ms.get(k, 1e30))
    return {"config": config, "forward_ms": ms, "tf_best": best}


def _table(run: dict) -> str:
    lines = [
        "| row | torch | Keras | tflstm default | TF matmuls alone | "
        "TF gates alone | TF graph | BlockLSTMV2 | XLA | best TF / torch "
        f"(target) | best TF / Keras (target {TARGET_VS_KERAS}) | default / best TF |",
        "|---|" + "---|" * 11,
    ]
    for name, result in run["configs"].items():
        ms = result["forward_ms"]
        best = ms[result["tf_best"]]
        target = TARGET_VS_TORCH.get(name, TARGET_VS_TORCH_BATCHED)

        def cell(*keys, ms=ms):
            return ", ".join(f"{ms[k]:.1f}" if k in ms else "-" for k in keys)

        def verdict(ratio, bound):
            reach = "reachable" if ratio <= bound else "out of reach"
            return f"{ratio:.2f} ({bound}: {reach})"

        vs_keras = (
            verdict(best / ms["keras"], TARGET_VS_KERAS) if "keras" in ms else "-"
        )
        lines.append(
            f"| {name} | {cell('torch')} | {cell('keras')} | {cell('tflstm_default')} "
            f"| {cell('tf_matmuls')} | {cell('tf_gates')} "
            f"| {cell('tf_graph')} | {cell('tf_block')} | {cell('tf_xla')} "
            f"| {verdict(best / ms['torch'], target)} | {vs_keras} "
            f"| {ms['tflstm_default'] / best:.2f} |"
        )
    return "\n".join(lines)


def _report(results: dict) -> str:
    parts = [
        f"Machine: {results['machine']}, {results['date']}. Forward times in ms "
        "(medians of interleaved rounds). best TF = the fastest of the TF graph, "
        "BlockLSTMV2 and XLA.",
        "",
    ]
    for label, run in results["runs"].items():
        parts += [f"{label} ({run['environment']}):", "", _table(run), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(bench.CONFIGS), help="internal")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    parser.add_argument("--only", nargs="*", default=sorted(bench.CONFIGS))
    parser.add_argument("--onednn", nargs="*", default=["1", "0"])
    args = parser.parse_args(argv)
    if args.config:
        print(json.dumps(run_config(args.config, bench.CONFIGS[args.config])))
        return

    results = {
        "machine": f"{bench._cpu_name()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "runs": {},
    }
    for setting in args.onednn:
        env = bench._child(["--environment"], setting)
        label = f"onednn_{'on' if env['onednn'] else 'off'}"
        run = {"environment": env, "configs": {}}
        for name in bench.CONFIGS:
            if name in args.only:
                print(f"{label}: {name} ...", file=sys.stderr, flush=True)
                run["configs"][name] = bench._child(
                    ["--config", name], setting, script=__file__
                )
        results["runs"][label] = run
    out = Path(args.out)
    (out / "floors.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "floors.md").write_text(_report(results))
    print(_report(results))


if __name__ == "__main__":
    main()
