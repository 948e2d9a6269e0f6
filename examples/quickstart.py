"""Port a torch.nn.LSTM to tflstm.LSTM and print the parity report.

Run with `make demo`. A 2-layer bidirectional LSTM with projection, as in
speech models, is built in PyTorch; its weights are copied by name into a
tflstm.LSTM (the names and shapes are PyTorch's), and both run on the same
input in float32 and float64.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import torch

import tflstm

# torch, on CPU, says it falls back from oneDNN for projections: not our concern.
warnings.filterwarnings("ignore", "LSTM with projections is not supported")

CONFIG = dict(
    input_size=40,
    hidden_size=128,
    num_layers=2,
    bidirectional=True,
    proj_size=64,
    batch_first=True,
)


def port(module: torch.nn.LSTM, dtype: str) -> tflstm.LSTM:
    layer = tflstm.LSTM(**CONFIG, dtype=dtype)
    for name, param in module.named_parameters():
        getattr(layer, name).assign(param.detach().numpy().astype(dtype))
    return layer


def report(dtype: str, x: np.ndarray, module: torch.nn.LSTM) -> None:
    module = module.to(getattr(torch, dtype))
    with torch.no_grad():
        out, (h, c) = module(torch.from_numpy(x.astype(dtype)))
    want = {"output": out.numpy(), "h_n": h.numpy(), "c_n": c.numpy()}
    output, (h_n, c_n) = port(module, dtype)(x.astype(dtype))
    got = {"output": output.numpy(), "h_n": h_n.numpy(), "c_n": c_n.numpy()}
    for name, ref in want.items():
        err = np.abs(got[name] - ref)
        rel = err.max() / np.abs(ref).max()
        shape = str(ref.shape)
        print(f"{dtype:8s} {name:7s} {shape:15s} {err.max():10.2e} {rel:10.2e}")


def main() -> None:
    torch.manual_seed(0)
    module = torch.nn.LSTM(**CONFIG)
    x = np.random.default_rng(0).standard_normal((4, 50, 40))
    args = ", ".join(f"{k}={v}" for k, v in CONFIG.items())
    print(f"torch.nn.LSTM({args}) -> tflstm.LSTM, input {x.shape}")
    print(f"{'dtype':8s} {'tensor':7s} {'shape':15s} {'max abs':>10s} {'max rel':>10s}")
    for dtype in ("float32", "float64"):
        report(dtype, x, module)


if __name__ == "__main__":
    main()
