"""Quantized `.tflite` exports of real checkpoints against torch.

    python benchmarks/quantize_real.py [--out benchmarks/quantize_real.json]
        [--length 160] [--batch 2] [--graphs fused unrolled loop]

Two published LSTMs, downloaded on demand with pip (`pip download --no-deps`)
into benchmarks/.cache/ (git-ignored):

- Resemblyzer 0.1.4's speaker encoder (`resemblyzer/pretrained.pt` in its
  wheel, keys `lstm.*`): `nn.LSTM(40, 256, num_layers=3)`, fed 40-band mel
  frames. Inputs: uniform in [0, 1] (its mel frames are normalised to that
  range), `--length` frames (its partial utterances are 160 frames).
- silero-vad's `LSTMCell(128, 128)` (`silero_vad/data/
  silero_vad_16k.safetensors`, keys `lstm_cell.*`). Its input is the output of
  its encoder (an STFT convolution, magnitude, four ReLU convolutions; the
  layout of `silero_vad/tinygrad_model.py`), so the inputs here are that
  encoder run (in torch, float64) on synthetic audio chunks of 64 + 512
  samples at 16 kHz: a harmonic tone (f0 in 80-300 Hz, 10 harmonics with a
  1/k amplitude, a slow amplitude envelope) plus white noise, peak amplitude
  0.01-0.9 per utterance, and utterances of noise only: non-negative
  features, 0 to a few units (the figures are printed). The cell is run as
  silero streams it: one step per chunk, the state carried; the `.tflite`
  cell is fed its own states. The same weights are also run as a one-layer
  `nn.LSTM` (keys renamed), so that every sequence graph is measured.

Each model is built with `converters.from_torch`, exported with
`tflstm.tflite.export_tflite` for every graph ("fused", "unrolled", "loop")
and `quantize` in (None, "dynamic", "float16", "int8"; int8: the fused graph,
calibrated on `CALIBRATION_BATCHES` batches drawn like the test inputs,
another seed; dynamic: given the same batches, for its accuracy check),
run in LiteRT (`run_tflite`) and compared with torch in float64 on the same
(float32) weights: for each output tensor (output, h_n, c_n), max |error|
divided by the tensor's largest magnitude. The weight statistics (median
|w|, 99.9th percentile, max, per tensor, per gate and per row) are printed
and stored. Writes the JSON (`--out`) and a markdown table next to it.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

import tflstm  # noqa: E402
from converters import from_torch  # noqa: E402
from tflstm.tflite import (  # noqa: E402
    QUANTIZED_RTOL,
    QuantizationWarning,
    export_tflite,
    quantize,
    run_tflite,
)

CACHE = Path(__file__).resolve().parent / ".cache"
PACKAGES = {"resemblyzer": "resemblyzer==0.1.4", "silero": "silero-vad"}
CALIBRATION_BATCHES = 8
CELL_STATE_MAX: dict[str, dict[str, float]] = {}  # by model: max |c_t|
SAMPLE_RATE = 16000
CHUNK, CONTEXT = 512, 64  # silero-vad's samples per step at 16 kHz


def wheel(name: str) -> Path:
    """The package's wheel in the cache, downloaded with pip when missing."""
    stem = PACKAGES[name].split("==")[0].replace("-", "_").lower()
    found = [p for p in CACHE.glob("*.whl") if p.name.lower().startswith(stem)]
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
             ":all:", PACKAGES[name], "-d", str(CACHE)],
            check=True,
        )  # fmt: skip
        found = [p for p in CACHE.glob("*.whl") if p.name.lower().startswith(stem)]
    return sorted(found)[-1]


def read_member(name: str, suffix: str) -> tuple[bytes, str]:
    path = wheel(name)
    with zipfile.ZipFile(path) as archive:
        member = next(n for n in archive.namelist() if n.endswith(suffix))
        return archive.read(member), f"{path.name}:{member}"


def resemblyzer_state() -> tuple[dict[str, torch.Tensor], str]:
    data, source = read_member("resemblyzer", "pretrained.pt")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    lstm = {
        k.removeprefix("lstm."): v
        for k, v in state["model_state"].items()
        if k.startswith("lstm.")
    }
    return lstm, source


def silero_state() -> tuple[dict[str, np.ndarray], str]:
    from safetensors.numpy import load

    data, source = read_member("silero", "silero_vad_16k.safetensors")
    return load(data), source


# -- silero-vad's encoder: the LSTMCell's inputs ------------------------------------


def silero_encoder(weights: dict[str, np.ndarray]):
    """The encoder of silero_vad/tinygrad_model.py in torch float64:
    (B, 576) samples -> (B, 128) features."""
    w = {k: torch.from_numpy(v).double() for k, v in weights.items()}
    conv = torch.nn.functional.conv1d

    def encode(samples: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(samples).double()
        x = torch.nn.functional.pad(x[:, None], (0, 64), mode="reflect")
        x = conv(x, w["stft_conv.weight"], stride=128)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
        x = conv(x, w["conv1.weight"], w["conv1.bias"], padding=1).relu()
        x = conv(x, w["conv2.weight"], w["conv2.bias"], stride=2, padding=1).relu()
        x = conv(x, w["conv3.weight"], w["conv3.bias"], stride=2, padding=1).relu()
        x = conv(x, w["conv4.weight"], w["conv4.bias"], padding=1).relu()
        return x.squeeze(-1).numpy()

    return encode


def synthetic_audio(rng: np.random.Generator, steps: int) -> np.ndarray:
    """One utterance of `steps` chunks (see the module docstring)."""
    n = CONTEXT + steps * CHUNK
    t = np.arange(n) / SAMPLE_RATE
    noise = rng.standard_normal(n) * rng.uniform(0.001, 0.05)
    if rng.uniform() < 0.25:  # noise only
        return noise
    f0 = rng.uniform(80, 300) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 11))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t)
    audio = tone * envelope + noise
    return audio / np.abs(audio).max() * rng.uniform(0.01, 0.9)


def silero_inputs(encode, rng, batch: int, steps: int) -> np.ndarray:
    """(steps, batch, 128) encoder outputs for `batch` synthetic utterances."""
    result = np.empty((steps, batch, 128))
    for b in range(batch):
        audio = synthetic_audio(rng, steps)
        chunks = np.stack(
            [audio[i * CHUNK : i * CHUNK + CONTEXT + CHUNK] for i in range(steps)]
        )
        result[:, b] = encode(chunks)
    return result.astype("float32")


# -- statistics ---------------------------------------------------------------------


def weight_statistics(state: dict) -> dict[str, dict]:
    """median |w|, p99.9, max per tensor; for matrices, per gate and per row."""
    stats = {}
    for name, value in state.items():
        a = np.abs(np.asarray(value, "float64"))
        entry = {
            "shape": list(a.shape),
            "median": float(np.median(a)),
            "p99.9": float(np.quantile(a, 0.999)),
            "max": float(a.max()),
        }
        if a.ndim == 2:
            gates = np.split(a, 4)
            entry["gate_max"] = [float(g.max()) for g in gates]
            entry["gate_max_over_median"] = [
                float(g.max() / np.median(g)) for g in gates
            ]
            rows = a.max(axis=1) / np.maximum(np.median(a, axis=1), 1e-12)
            entry["row_max"] = {
                "median": float(np.median(a.max(axis=1))),
                "p99": float(np.quantile(a.max(axis=1), 0.99)),
            }
            entry["row_max_over_median"] = {
                "median": float(np.median(rows)),
                "p99": float(np.quantile(rows, 0.99)),
                "max": float(rows.max()),
            }
        stats[name] = entry
    return stats


def print_statistics(model: str, stats: dict) -> None:
    print(f"\n{model}: weights (|w|)")
    for name, s in stats.items():
        line = (
            f"  {name:16s} {tuple(s['shape'])!s:12s} median {s['median']:.3f}  "
            f"p99.9 {s['p99.9']:7.3f}  max {s['max']:7.3f}"
        )
        if "gate_max" in s:
            gates = " ".join(f"{m:.1f}" for m in s["gate_max"])
            ratio = " ".join(f"{m:.0f}" for m in s["gate_max_over_median"])
            rows = s["row_max_over_median"]
            line += (
                f"  gate max (i f g o) {gates}  max:median {ratio}  row max:median "
                f"median {rows['median']:.0f} p99 {rows['p99']:.0f} "
                f"max {rows['max']:.0f}"
            )
        print(line)


# -- running ------------------------------------------------------------------------


def relative_errors(got, expected) -> dict[str, float]:
    return {
        name: float(np.abs(g - e).max() / np.abs(e).max())
        for name, g, e in zip(("output", "h_n", "c_n"), got, expected, strict=False)
        if g is not None
    }


def torch_sequence(state: dict, x: np.ndarray) -> tuple[np.ndarray, ...]:
    spec = from_torch(state).get_config()
    module = torch.nn.LSTM(
        spec["input_size"], spec["hidden_size"], num_layers=spec["num_layers"]
    ).double()
    module.load_state_dict(
        {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}
    )
    with torch.no_grad():
        output, (h_n, c_n) = module(torch.from_numpy(x).double())
    return output.numpy(), h_n.numpy(), c_n.numpy()


def torch_cell_stream(state: dict, x: np.ndarray) -> tuple[np.ndarray, ...]:
    module = torch.nn.LSTMCell(x.shape[-1], state["weight_hh"].shape[1]).double()
    module.load_state_dict(
        {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}
    )
    h = c = None
    hs = []
    with torch.no_grad():
        for x_t in torch.from_numpy(x).double():
            h, c = module(x_t, None if h is None else (h, c))
            hs.append(h.numpy())
    return np.stack(hs), h.numpy(), c.numpy()


def cell_stream(flatbuffer: bytes, config: dict, x: np.ndarray) -> tuple:
    """The exported cell run step by step on its own states."""
    zeros = np.zeros((x.shape[1], config["hidden_size"]), "float32")
    h, c = zeros, zeros
    hs = []
    for x_t in x:
        h, c = run_tflite(flatbuffer, config, x_t, (h, c))
        hs.append(h)
    return np.stack(hs), h, c


def export(layer, graph: str | None, mode: str | None, batch: int, length, data):
    kwargs = {"quantize": mode}
    if graph is not None:
        kwargs.update(batch_size=batch, fixed_length=length, graph=graph)
    if mode == "int8" or (mode == "dynamic" and graph is not None):
        kwargs["representative_data"] = data  # dynamic: the accuracy check
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", QuantizationWarning)
        start = time.perf_counter()
        flatbuffer = export_tflite(layer, **kwargs)
        seconds = time.perf_counter() - start
    messages = [
        str(w.message) for w in caught if issubclass(w.category, QuantizationWarning)
    ]
    return flatbuffer, seconds, messages


def cell_state_max(state: dict, inputs: list[np.ndarray]) -> float:
    """The largest |c_t| over every step of `inputs` (float32 math), as
    `export_tflite` measures it on `representative_data`."""
    layer = from_torch(
        {k if k[-1].isdigit() else f"{k}_l0": v for k, v in state.items()}
    )
    return max(quantize.cell_state_maxima(layer, inputs).values())


def int8_rows(state: dict) -> dict:
    """The state with every weight matrix rounded as `quantize="dynamic"`
    rounds it at best: symmetric int8 with one scale per row (the finest
    scale TFLite has), heavy-tailed matrices (`quantize.HEAVY_TAIL_RATIO`, per
    row) left as they are; biases float."""
    out = {}
    for name, value in state.items():
        w = np.asarray(value, np.float64)
        if name.startswith("weight_") and quantize.spread(w, "rows") <= (
            quantize.HEAVY_TAIL_RATIO
        ):
            scale = np.abs(w).max(axis=1, keepdims=True) / 127
            scale[scale == 0] = 1
            w = np.round(w / scale) * scale
        out[name] = w
    return out


def measure_model(name, state, x, calibration, graphs, cell: bool) -> list[dict]:
    layer = from_torch(state)
    config = layer.get_config()
    largest = {
        "test inputs": cell_state_max(state, [x]),
        "calibration": cell_state_max(state, calibration),
    }
    CELL_STATE_MAX[name] = largest
    print("  max |c_t|: " + ", ".join(f"{k} {v:.1f}" for k, v in largest.items()))
    run = torch_cell_stream if cell else torch_sequence
    expected = run(state, x)
    if cell:
        cases = [("cell", None), ("cell", "dynamic"), ("cell", "float16")]
    else:
        cases = [(g, m) for g in graphs for m in (None, "dynamic", "float16")]
        cases.append(("fused", "int8"))
    # The floor of 8-bit weights: torch in float64 with the weights rounded as
    # "dynamic" rounds them at best, and no activation rounding at all. Above
    # the tolerance, no graph of int8 weights can meet it.
    floor = relative_errors(run(int8_rows(state), x), expected)
    print(
        "  floor (per-row int8 weights, float64 math): "
        + "  ".join(f"{k} {v:.2e}" for k, v in floor.items())
    )
    rows = [
        {
            "model": name,
            "graph": "torch, float64 math",
            "quantize": "per-row int8 weights",
            "errors": floor,
            "max_error": max(floor.values()),
            "target": QUANTIZED_RTOL["dynamic"],
            "meets_target": max(floor.values()) <= QUANTIZED_RTOL["dynamic"],
            "bytes": 0,
            "export_s": 0.0,
            "warnings": [],
        }
    ]
    for graph, mode in cases:
        flatbuffer, seconds, messages = export(
            layer,
            None if cell else graph,
            mode,
            x.shape[1],
            x.shape[0],
            calibration,
        )
        if cell:
            got = cell_stream(flatbuffer, config, x)
        else:
            output, (h_n, c_n) = run_tflite(flatbuffer, config, x)
            got = (output, h_n, c_n)
        errors = relative_errors(got, expected)
        target = QUANTIZED_RTOL.get(mode)
        row = {
            "model": name,
            "graph": graph,
            "quantize": mode,
            "errors": errors,
            "max_error": max(errors.values()),
            "target": target,
            "meets_target": None if target is None else max(errors.values()) <= target,
            "bytes": len(flatbuffer),
            "export_s": round(seconds, 2),
            "warnings": messages,
        }
        print(
            f"  {graph:9s} {mode!s:8s} "
            + "  ".join(f"{k} {v:.2e}" for k, v in errors.items())
            + f"  {len(flatbuffer) / 1e6:.2f} MB  {seconds:.1f} s"
            + ("  WARNING" if messages else "")
        )
        rows.append(row)
    return rows


def _worst(rows: list[dict]) -> dict[tuple, float]:
    return {(r["model"], r["graph"], r["quantize"]): r["max_error"] for r in rows}


def readme_section(result: dict, earlier: dict[tuple, float]) -> list[str]:
    """The paragraph and table for the export guide's accuracy section
    (docs/guides/export.md)."""
    worst = _worst(result["rows"])
    states = [v for c in result["cell_state_max"].values() for v in c.values()]
    low, high = min(states), max(states)
    lines = [
        "## For the export guide (docs/guides/export.md, accuracy section)",
        "",
        "Published checkpoints are harder than random layers "
        "(`benchmarks/quantize_real.py`: Resemblyzer's 3 x 256 speaker "
        "encoder on mel-like frames uniform in [0, 1], silero-vad's "
        f"LSTMCell on its encoder's output; {result['length']} steps). Their "
        f"cell states grow to |c| of {low:.0f}-{high:.0f}, a long memory over which "
        "every step's 8-bit rounding (of the weights, and of the activations "
        "that hybrid kernels quantize per call) adds up, and Resemblyzer's "
        "first input matrix is heavy-tailed (median |w| 0.16, max 61). "
        '`quantize="dynamic"` keeps such heavy-tailed matrices float32 '
        "(`HEAVY_TAIL_RATIO`), which removes their share of the error; the "
        "long memory's share remains, and neither 8-bit mode meets its tolerance on "
        "these two models. `export_tflite` says so with a `QuantizationWarning` "
        "(int8 with heavy-tailed weights; either mode when the cell state on "
        "`representative_data` exceeds `LONG_MEMORY_CELL_STATE`). "
        '`quantize="float16"` (float16 weights, float32 math, about half the '
        "float file) serves them; check any quantized model on real data "
        "(`--verify`). The floor column is torch in float64 with the weights "
        "rounded as `dynamic` rounds them at best (int8, one scale per row, the "
        "finest TFLite has; heavy-tailed matrices kept) and no rounding of the "
        "activations: where it is above 2%, no graph of int8 weights can meet "
        "the tolerance. Worst relative error of output, h_n, c_n:",
        "",
        "| model | graph | float32 | dynamic (before) | dynamic | int8 | float16 "
        "| floor of int8 weights |",
        "|---|---|---|---|---|---|---|---|",
    ]
    floors = {r["model"]: r["max_error"] for r in result["rows"] if not r["bytes"]}
    graphs = dict.fromkeys(
        (r["model"], r["graph"]) for r in result["rows"] if r["bytes"]
    )
    for model, graph in graphs:

        def cell(mode, table=worst, model=model, graph=graph):
            value = table.get((model, graph, mode))
            if value is None:
                return ""
            if mode is None:
                return f"{value:.1e}"
            return f"{100 * value:.{1 if value >= 0.01 else 2}f}%"

        floor = floors.get(model)
        lines.append(
            f"| {model} | {graph} | {cell(None)} | {cell('dynamic', earlier)} | "
            f"{cell('dynamic')} | {cell('int8')} | {cell('float16')} | "
            + ("" if floor is None else f"{100 * floor:.1f}%")
            + " |"
        )
    return lines


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f}" if size else ""


def markdown(result: dict, before: dict | None) -> str:
    earlier = _worst(before["rows"]) if before else {}
    lines = [
        "# Quantized `.tflite` exports of real checkpoints",
        "",
        f"`python benchmarks/quantize_real.py` on {result['machine']}, "
        f"{result['date']}; {result['versions']}. L={result['length']}, "
        f"N={result['batch']}. Inputs: {result['inputs']}. Largest |c_t| "
        "(torch's math in float32, every step): "
        + "; ".join(
            f"{model}: " + ", ".join(f"{k} {v:.1f}" for k, v in c.items())
            for model, c in result.get("cell_state_max", {}).items()
        )
        + ".",
        "",
        "Error: max |tflite - torch float64| / max |torch float64|, per output "
        "tensor (torch in float64 on the same float32 weights). Target: "
        "`QUANTIZED_RTOL` (dynamic 2%, int8 5%, float16 1%). `before`: the "
        "worst of the three before heavy-tailed matrices were kept float32 "
        "under dynamic range (quantize_real.before.json). Dynamic exports are given "
        "`representative_data` (the accuracy check); the silero cell is not "
        "(a cell takes none).",
        "",
        "| model | graph | quantize | output | h_n | c_n | before | size (MB) | "
        "within target | QuantizationWarning |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        e = row["errors"]
        ok = {None: "", True: "yes", False: "**no**"}[row["meets_target"]]
        old = earlier.get((row["model"], row["graph"], row["quantize"]))
        lines.append(
            f"| {row['model']} | {row['graph']} | {row['quantize']} | "
            + " | ".join(
                f"{e[k]:.2e}" if k in e else "" for k in ("output", "h_n", "c_n")
            )
            + f" | {'' if old is None else f'{old:.2e}'}"
            + f" | {_megabytes(row['bytes'])} | {ok} | "
            + ("yes" if row["warnings"] else "")
            + " |"
        )
    lines += ["", *readme_section(result, earlier)]
    lines += ["", "Warnings:", ""]
    seen = set()
    for row in result["rows"]:
        for message in row["warnings"]:
            if (row["model"], message) not in seen:
                seen.add((row["model"], message))
                lines.append(f"- {row['model']}, {row['quantize']}: {message}")
    lines += ["", "Weights (|w|):", ""]
    lines += [
        "| model | tensor | median | p99.9 | max | max:median per gate (i f g o) "
        "| row max:median (median / p99 / max) |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    for model, stats in result["weights"].items():
        for name, s in stats.items():
            ratio = " ".join(f"{r:.0f}" for r in s.get("gate_max_over_median", []))
            rows = s.get("row_max_over_median")
            per_row = ""
            if rows:
                per_row = (
                    f"{rows['median']:.0f} / {rows['p99']:.0f} / {rows['max']:.0f}"
                )
            lines.append(
                f"| {model} | {name} | {s['median']:.3f} | {s['p99.9']:.2f} | "
                f"{s['max']:.2f} | {ratio} | {per_row} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/quantize_real.json"))
    parser.add_argument("--length", type=int, default=160)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--graphs", nargs="+", default=["fused", "unrolled", "loop"])
    parser.add_argument("--models", nargs="+", default=["resemblyzer", "silero"])
    parser.add_argument(
        "--before",
        default=str(ROOT / "benchmarks/quantize_real.before.json"),
        help="an earlier result, shown as the `before` column",
    )
    args = parser.parse_args(argv)
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    shape = (args.length, args.batch)
    rows, weights, sources, inputs = [], {}, {}, {}

    if "resemblyzer" in args.models:
        state, sources["resemblyzer"] = resemblyzer_state()
        weights["resemblyzer"] = weight_statistics(state)
        print_statistics("resemblyzer", weights["resemblyzer"])
        x = rng.uniform(0, 1, (*shape, 40)).astype("float32")
        calibration = [
            rng.uniform(0, 1, (*shape, 40)).astype("float32")
            for _ in range(CALIBRATION_BATCHES)
        ]
        inputs["resemblyzer"] = "uniform in [0, 1]"
        print("resemblyzer: nn.LSTM(40, 256, num_layers=3)")
        rows += measure_model(
            "resemblyzer", state, x, calibration, args.graphs, cell=False
        )

    if "silero" in args.models:
        tensors, sources["silero"] = silero_state()
        cell_state = {
            k.removeprefix("lstm_cell."): v
            for k, v in tensors.items()
            if k.startswith("lstm_cell.")
        }
        weights["silero"] = weight_statistics(cell_state)
        print_statistics("silero", weights["silero"])
        encode = silero_encoder(tensors)
        x = silero_inputs(encode, rng, args.batch, args.length)
        calibration = [
            silero_inputs(encode, rng, args.batch, args.length)
            for _ in range(CALIBRATION_BATCHES)
        ]
        inputs["silero"] = (
            f"its encoder on synthetic audio: min {x.min():.3f}, median "
            f"{np.median(x):.3f}, p99 {np.quantile(x, 0.99):.3f}, max {x.max():.3f}, "
            f"{(x == 0).mean():.0%} zeros"
        )
        print(f"silero: LSTMCell(128, 128); inputs {inputs['silero']}")
        rows += measure_model("silero", cell_state, x, calibration, [], cell=True)
        sequence_state = {f"{k}_l0": v for k, v in cell_state.items()}
        print("silero as nn.LSTM(128, 128)")
        rows += measure_model(
            "silero (as LSTM)", sequence_state, x, calibration, args.graphs, cell=False
        )

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}",
        "date": datetime.date.today().isoformat(),
        "versions": (
            f"tflstm {tflstm.__version__}, TensorFlow {tf.__version__}, torch "
            f"{torch.__version__}, ai-edge-litert "
            f"{_version('ai-edge-litert')}, numpy {np.__version__}"
        ),
        "sources": sources,
        "length": args.length,
        "batch": args.batch,
        "inputs": "; ".join(f"{k}: {v}" for k, v in inputs.items()),
        "weights": weights,
        "cell_state_max": CELL_STATE_MAX,
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    before = None
    if args.before and Path(args.before).exists():
        before = json.loads(Path(args.before).read_text())
    Path(args.out).with_suffix(".md").write_text(markdown(result, before))
    print(f"wrote {args.out} and its .md")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    main()
