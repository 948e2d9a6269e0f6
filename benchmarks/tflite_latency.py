"""Latency of the exported .tflite against torch and litert-torch, in one
process, interleaved.

    make bench-tflite     # or:
    python benchmarks/tflite_latency.py [--out benchmarks/tflite_latency.json]
        [--litert-torch-python PY | --litert-torch-models DIR]
        [--threads 2] [--rounds 3] [--repeats 15]

Two rows of the speed table of docs/guides/export.md, nn.LSTM(H_in=40) with seed 0:
streaming (L=50, N=1, H=256) and batched (L=100, N=32, H=128). For each,
in LiteRT (XNNPACK, `--threads`), against torch with the same threads:

- `default`: `export_tflite(layer, batch_size=N, fixed_length=L)`, the graph
  that `graph="auto"` chooses (the fused op at N=1, the unrolled graph at
  N=32);
- `fused`: the fused op with a dynamic length (`fixed_length=None`);
- `unrolled`: the unrolled graph (`graph="unrolled"`);
- `dynamic`, `int8`: the default graph with quantize="dynamic", and the
  fused op with quantize="int8" (calibrated on 4 random batches);
- `litert_torch`: litert-torch's export of the same torch module, when
  available: exported by `--litert-torch-python` (a Python with
  `litert_torch` installed, e.g. its own venv: `pip install
  litert-torch==0.10.0`; the `LITERT_TORCH_PYTHON` environment variable
  sets it too), or read from `--litert-torch-models` (files
  `<row>_litert_torch.tflite` of the same module; checked against torch),
  or imported in this process. Otherwise `litert_torch_recipe`, its recipe
  (every step unrolled, builtin ops) written here: tflstm's unrolled graph.

Then Keras's own `model.export(format="litert")` with a dynamic batch (the
builtin buffer loop of tflstm.kernels.litert) at N=1, H_in=40, H=64, L=100
and L=1,000, against the fused export: the loop is quadratic in L.

With `--cell gru`, the same two rows for nn.GRU(H_in=40) (files
`gru_<row>_litert_torch.tflite` with `--litert-torch-models`). TFLite has
no GRU op, so there is no `fused` and no `int8`: `default` is the unrolled
graph for the fixed length, `loop` the graph for a dynamic length, `dynamic`
the default with quantize="dynamic". No Keras row.

With `--cell rnn`, the same two rows for nn.RNN(H_in=40) (tanh; files
`rnn_<row>_litert_torch.tflite`): `default` is the unrolled graph (what
`graph="auto"` writes for a fixed length, batch 1 included), `fused` TFLite's
UNIDIRECTIONAL_SEQUENCE_RNN (what it writes for a dynamic length), `loop`,
and `dynamic` (the fused op, hybrid). No `int8`, no Keras row.

Every model is checked against torch first (float: 1e-5). Each round times
every model once per repeat, in rotating order, so that load from other
processes hits all alike; a round reports medians, and the JSON keeps every
round. Timings, not tests: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# OpenMP threads that spin after each parallel region starve LiteRT's threads
# and those of other processes: torch at 2 threads then took 1.6 s instead of
# 9 ms for the batched row on this 2-core machine. Before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import tflstm  # noqa: F401, I001  (first: TensorFlow without its start-up lines)
import numpy as np
import torch
from ai_edge_litert.interpreter import Interpreter

import converters
from tflstm._quiet import TFLITE_NOISE, filtered_stderr
from tflstm.tflite import choose_graph, export_tflite

ROWS = {  # name: (L, N, H_in, H)
    "streaming": (50, 1, 40, 256),
    "batched": (100, 32, 40, 128),
}
KERAS_ROW = (1, 40, 64)  # N, H_in, H
KERAS_LENGTHS = (100, 1000)
FLOAT_ATOL = 1e-5

LITERT_TORCH_EXPORT = """
import sys
import torch
import litert_torch

state, out, cell, steps, batch, input_size, hidden = sys.argv[1:8]
steps, batch, input_size, hidden = map(int, (steps, batch, input_size, hidden))
module = getattr(torch.nn, cell)(input_size, hidden).eval()
module.load_state_dict(torch.load(state))


class Wrap(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x, h0, *c0):
        if c0:
            y, (h, c) = self.module(x, (h0, c0[0]))
            return y, h, c
        return self.module(x, h0)


states = (torch.zeros(1, batch, hidden),) * (2 if cell == "LSTM" else 1)
args = (torch.randn(steps, batch, input_size), *states)
litert_torch.convert(Wrap(module).eval(), args).export(out)
"""


def _runner(flatbuffer: bytes, feeds: dict, threads: int):
    """A no-argument call of the model's signature, and its first output."""
    with filtered_stderr(TFLITE_NOISE):
        interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
    runner = interpreter.get_signature_runner()
    names = sorted(runner.get_input_details())
    if "input" in names:  # tflstm's names
        feed = {"input": feeds["x"]}
        for name in names:
            if name != "input":
                feed[name] = feeds["h0"][0]
        first = "output"
    else:  # litert-torch's: args_0 (x), args_1 (h_0), args_2 (c_0)
        values = (feeds["x"], *[feeds["h0"]] * (len(names) - 1))
        feed = dict(zip(names, values, strict=True))
        first = sorted(runner.get_output_details())[0]
    runner(**feed)
    return (lambda: runner(**feed)), (lambda: runner(**feed)[first])


def _litert_torch(name, module, steps, batch, input_size, args) -> tuple:
    """(flatbuffer, how it was obtained, convert seconds) or (None, why, 0)."""
    hidden, cell = module.hidden_size, type(module).__name__
    name = name if cell == "LSTM" else f"{cell.lower()}_{name}"
    if args.litert_torch_models:
        path = Path(args.litert_torch_models) / f"{name}_litert_torch.tflite"
        if path.exists():
            return path.read_bytes(), f"read {path}", 0.0
    python = args.litert_torch_python or os.environ.get("LITERT_TORCH_PYTHON")
    with tempfile.TemporaryDirectory() as tmp:
        state, out = Path(tmp) / "module.pt", Path(tmp) / "module.tflite"
        torch.save(module.state_dict(), state)
        cmd = [str(a) for a in (state, out, cell, steps, batch, input_size, hidden)]
        start = time.perf_counter()
        if python:
            done = subprocess.run(
                [python, "-c", LITERT_TORCH_EXPORT, *cmd],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode:
                return None, f"{python} failed: {done.stderr[-500:]}", 0.0
            return out.read_bytes(), python, time.perf_counter() - start
        try:
            import litert_torch  # noqa: F401
        except ImportError:
            return None, "litert_torch not available", 0.0
        sys.argv = ["", *cmd]
        exec(LITERT_TORCH_EXPORT, {})
        return out.read_bytes(), "in process", time.perf_counter() - start


def _bench(fns: dict, rounds: int, repeats: int, warmup: int = 2) -> list[dict]:
    """Per round, the median ms of each fn, calls interleaved."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    results = []
    for _ in range(rounds):
        times = {n: [] for n in names}
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for n in order:
                start = time.perf_counter()
                fns[n]()
                times[n].append(time.perf_counter() - start)
        results.append({n: 1e3 * float(np.median(t)) for n, t in times.items()})
    return results


def _row(name: str, args) -> dict:
    steps, batch, input_size, hidden = ROWS[name]
    torch.manual_seed(0)
    lstm = args.cell == "lstm"
    module_class = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    module = module_class[args.cell](input_size, hidden).eval()
    layer = converters.from_torch(module)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, input_size)).astype("float32")
    h0 = np.zeros((1, batch, hidden), "float32")
    data = [rng.standard_normal(x.shape).astype("float32") for _ in range(4)]
    xt, h0t = torch.from_numpy(x), torch.from_numpy(h0)
    hx = (h0t, h0t) if lstm else h0t
    with torch.no_grad():
        reference = module(xt, hx)[0].numpy()

    exports = {
        "default": dict(fixed_length=steps),
        "fused": dict(graph="fused"),
        "unrolled": dict(graph="unrolled", fixed_length=steps),
        "dynamic": dict(fixed_length=steps, quantize="dynamic"),
        "int8": dict(graph="fused", quantize="int8", representative_data=data),
    }
    if args.cell == "gru":  # no fused op: the loop for a dynamic length instead
        del exports["fused"], exports["int8"], exports["unrolled"]
        exports["loop"] = dict(graph="loop")
    if args.cell == "rnn":  # the fused RNN op; its unrolled graph is the default
        del exports["int8"], exports["unrolled"]
        exports["loop"] = dict(graph="loop")
        exports["dynamic"] = dict(graph="fused", quantize="dynamic")
    models, info = {}, {}
    for key, options in exports.items():
        start = time.perf_counter()
        models[key] = export_tflite(layer, batch_size=batch, **options)
        info[key] = {"convert_s": time.perf_counter() - start}
    flatbuffer, how, seconds = _litert_torch(
        name, module, steps, batch, input_size, args
    )
    competitor = "litert_torch"
    if flatbuffer is None:
        print(f"{name}: litert-torch: {how}; comparing with its recipe written here")
        competitor = "litert_torch_recipe"
        flatbuffer = models["unrolled" if lstm else "default"]
    models[competitor] = flatbuffer
    info[competitor] = {"convert_s": seconds, "source": how}

    feeds = {"x": x, "h0": h0}
    fns, quantized = {}, ("dynamic", "int8")
    for key, flatbuffer in models.items():
        fns[key], first = _runner(flatbuffer, feeds, args.threads)
        error = float(np.abs(first() - reference).max())
        info[key].update(size=len(flatbuffer), max_abs_error=error)
        if key not in quantized and not error <= FLOAT_ATOL:
            raise SystemExit(f"{name}/{key}: max abs error {error:.2e} vs torch")
    info["default"]["graph"] = choose_graph(
        batch_size=batch,
        fixed_length=steps,
        quantize=None,
        fused=layer.cell.tflite_fused_op,
    )

    def torch_forward():
        with torch.no_grad():
            module(xt, hx)

    fns = {"torch": torch_forward, **fns}
    rounds = _bench(fns, args.rounds, args.repeats)
    return {
        "L": steps,
        "N": batch,
        "H_in": input_size,
        "H": hidden,
        "competitor": competitor,
        "models": info,
        "rounds_ms": rounds,
    }


def _keras_row(args) -> dict:
    import keras

    batch, input_size, hidden = KERAS_ROW
    torch.manual_seed(0)
    module = torch.nn.LSTM(input_size, hidden, batch_first=True).eval()
    layer = converters.from_torch(module)
    inputs = keras.Input((None, input_size))
    model = keras.Model(inputs, layer(inputs)[0])
    fns, errors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keras.tflite"
        with filtered_stderr(TFLITE_NOISE):
            model.export(path, format="litert", verbose=False)
        keras_model = path.read_bytes()
    fused = export_tflite(layer)
    zeros = np.zeros((batch, hidden), "float32")
    for steps in KERAS_LENGTHS:
        x = np.random.default_rng(steps).standard_normal((batch, steps, input_size))
        x = x.astype("float32")
        with torch.no_grad():
            reference = module(torch.from_numpy(x))[0].numpy()
        with filtered_stderr(TFLITE_NOISE):
            interpreter = Interpreter(
                model_content=keras_model, num_threads=args.threads
            )
        detail = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(detail["index"], x.shape)
        interpreter.allocate_tensors()
        out = interpreter.get_output_details()[0]["index"]

        def keras_call(interpreter=interpreter, index=detail["index"], x=x):
            interpreter.set_tensor(index, x)
            interpreter.invoke()

        keras_call()
        errors[f"keras_litert_L{steps}"] = float(
            np.abs(interpreter.get_tensor(out) - reference).max()
        )
        fns[f"keras_litert_L{steps}"] = keras_call
        call, first = _runner(fused, {"x": x, "h0": zeros[None]}, args.threads)
        fns[f"fused_L{steps}"] = call
        errors[f"fused_L{steps}"] = float(np.abs(first() - reference).max())
    bad = {k: e for k, e in errors.items() if not e <= FLOAT_ATOL}
    if bad:
        raise SystemExit(f"keras row: errors vs torch {bad}")
    return {
        "N": batch,
        "H_in": input_size,
        "H": hidden,
        "max_abs_errors": errors,
        "rounds_ms": _bench(fns, args.rounds, max(3, args.repeats // 3)),
    }


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def _table(result: dict) -> str:
    lines = []
    for name in ROWS:
        row = result[name]
        rounds, competitor = row["rounds_ms"], row["competitor"]
        lines.append(
            f"\n{name}: L={row['L']}, N={row['N']}, H_in={row['H_in']}, "
            f"H={row['H']} (ms per round; ratios per round)"
        )
        lines.append(
            f"{'':20s} {'ms':>22s} {'x torch':>12s} {'x ' + competitor:>22s} "
            f"{'size':>10s} {'max abs err':>12s}"
        )
        for key in rounds[0]:
            ms = [r[key] for r in rounds]
            model = row["models"].get(key, {})
            size = f"{model['size']:,}" if model else "-"
            error = f"{model['max_abs_error']:.1e}" if model else "-"
            lines.append(
                f"{key:20s} {' '.join(f'{m:6.2f}' for m in ms):>22s} "
                f"{_span([r[key] / r['torch'] for r in rounds]):>12s} "
                f"{_span([r[key] / r[competitor] for r in rounds]):>22s} "
                f"{size:>10s} {error:>12s}"
            )
    if "keras_litert" not in result:
        return "\n".join(lines)
    keras = result["keras_litert"]
    lines.append(
        f"\nKeras model.export(format='litert'), dynamic batch, N={keras['N']}, "
        f"H_in={keras['H_in']}, H={keras['H']} (ms per round)"
    )
    for key in keras["rounds_ms"][0]:
        ms = " ".join(f"{r[key]:7.2f}" for r in keras["rounds_ms"])
        lines.append(f"{key:20s} {ms}")
    for kind in ("keras_litert", "fused"):
        growth = [r[f"{kind}_L1000"] / r[f"{kind}_L100"] for r in keras["rounds_ms"]]
        lines.append(f"{kind} L=1000 / L=100: {_span(growth)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--litert-torch-python")
    parser.add_argument("--litert-torch-models")
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {
        "cell": args.cell,
        "date": time.strftime("%Y-%m-%d"),
        "versions": _versions(),
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_average": os.getloadavg(),
    }
    for name in ROWS:
        result[name] = _row(name, args)
    if args.cell == "lstm":
        result["keras_litert"] = _keras_row(args)
    result["load_average_after"] = os.getloadavg()
    print(_table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        Path(args.out).with_suffix(".md").write_text(markdown(result))
    return result


def _versions() -> dict[str, str]:
    import importlib.metadata

    names = ("tensorflow-cpu", "tensorflow", "torch", "ai-edge-litert")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def markdown(result: dict) -> str:
    """The run as a page of the docs' benchmarks: machine and date first."""
    cell = {"lstm": "nn.LSTM", "gru": "nn.GRU", "rnn": "nn.RNN (tanh)"}[result["cell"]]
    versions = ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items())
    return (
        f"# `.tflite` latency: {cell}\n\n"
        f"`python benchmarks/tflite_latency.py --cell {result['cell']}` on "
        f"{result['machine']}, {result['cores']} cores, {result['threads']} "
        f"threads, {result.get('date', 'date not recorded')}; {versions}. "
        "LiteRT (XNNPACK) against torch and litert-torch's export of the same "
        "module, in one process, interleaved; load average "
        f"{', '.join(f'{v:.2f}' for v in result['load_average'])} before, "
        f"{', '.join(f'{v:.2f}' for v in result['load_average_after'])} after."
        f"\n\n```text{_table(result)}\n```\n"
    )


if __name__ == "__main__":
    main()
