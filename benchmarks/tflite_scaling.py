"""How the exported .tflite's time grows with the sequence length.

    make bench-tflite      # or: python benchmarks/tflite_scaling.py [out.json]

Streaming-like shape (N=1, H_in=40, H=256), LiteRT with 2 threads, median of
9 runs after 2 warm-ups, at L = 100 and L = 1,000, with torch.nn.LSTM in the
same process for reference, for the fused export and the builtin WHILE
fallback (`graph="loop"`). A linear-time model has a ratio near 10 (the
target is <= 12). Timings, not tests: this machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see tflite_latency.py

import numpy as np
import torch
from _timing import median_ms  # benchmarks/ is on sys.path when run as a script
from ai_edge_litert.interpreter import Interpreter

import converters
from tflstm.tflite import export_tflite

LENGTHS = (100, 1000)
REPEATS, WARMUP = 9, 2


def _median_ms(fn) -> float:
    return median_ms(fn, repeats=REPEATS, warmup=WARMUP)


def main(out_path: str | None = None) -> dict:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    module = torch.nn.LSTM(40, 256).eval()
    layer = converters.from_torch(module)
    runners = {
        name: Interpreter(
            model_content=export_tflite(layer, graph=graph), num_threads=2
        ).get_signature_runner("serving_default")
        for name, graph in (("tflite", "fused"), ("tflite_fallback", "loop"))
    }
    zeros = {
        "h_0_l0": np.zeros((1, 256), "float32"),
        "c_0_l0": np.zeros((1, 256), "float32"),
    }
    result = {
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    for steps in LENGTHS:
        x = np.random.default_rng(0).standard_normal((steps, 1, 40)).astype("float32")
        xt = torch.from_numpy(x)
        with torch.no_grad():
            result[f"torch_ms_L{steps}"] = _median_ms(lambda xt=xt: module(xt))
        for name, runner in runners.items():
            result[f"{name}_ms_L{steps}"] = _median_ms(
                lambda x=x, runner=runner: runner(input=x, **zeros)
            )
    for name in runners:
        result[f"{name}_ratio_L1000_over_L100"] = (
            result[f"{name}_ms_L1000"] / result[f"{name}_ms_L100"]
        )
    result["tflite_over_torch_L100"] = (
        result["tflite_ms_L100"] / result["torch_ms_L100"]
    )
    print(json.dumps(result, indent=2))
    if out_path:
        with open(out_path, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
