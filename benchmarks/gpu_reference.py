"""torch-cuDNN reference outputs for tflstm's equivalence tests.

    python benchmarks/gpu_reference.py [--out benchmarks/gpu_reference.npz]
                                       [--device cuda|cpu]

Needs torch only (no TensorFlow, no tflstm): it runs on a GPU machine where
TensorFlow is not installed. For a fixed grid of configurations and seeds it
builds `torch.nn.LSTM` on the device (cuDNN on a GPU; TF32 disabled so that
float32 is float32), runs it on a fixed input, with an initial state and with
packed sequences, and stores weights, inputs, outputs and the gradients of a
fixed linear loss in one `.npz`. `tests/test_gpu_reference.py` compares
tflstm, on CPU, with the file. `--device cpu` writes the same file from
torch's CPU kernels (used by the tests to check this script's format).
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

STEPS, BATCH, INPUT, HIDDEN = 7, 3, 5, 6
GRID = [
    dict(num_layers=n, bidirectional=b, proj_size=p, bias=bias)
    for n, b, p, bias in itertools.product([1, 2], [False, True], [0, 3], [True])
] + [dict(num_layers=1, bidirectional=False, proj_size=0, bias=False)]
DTYPES = ["float32", "float64"]
LENGTHS = [7, 1, 4]  # unsorted, with 1 and L


def reference_cases(
    device: str, seed: int = 0, limit: int | None = None
) -> dict[str, np.ndarray]:
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    out: dict[str, np.ndarray] = {}
    for (i, cfg), dtype in itertools.product(enumerate(GRID[:limit]), DTYPES):
        torch.manual_seed(seed + i)
        tdtype = getattr(torch, dtype)
        module = torch.nn.LSTM(INPUT, HIDDEN, **cfg).to(device, tdtype)
        d = 2 if cfg["bidirectional"] else 1
        h_out = cfg["proj_size"] or HIDDEN
        gen = torch.Generator().manual_seed(seed + 1000 + i)
        x = torch.randn(STEPS, BATCH, INPUT, generator=gen, dtype=tdtype)
        h0 = torch.randn(
            d * cfg["num_layers"], BATCH, h_out, generator=gen, dtype=tdtype
        )
        c0 = torch.randn(
            d * cfg["num_layers"], BATCH, HIDDEN, generator=gen, dtype=tdtype
        )
        for packed in (False, True):
            key = f"{i}-{dtype}-{'packed' if packed else 'full'}"
            xs = [t.clone().to(device).requires_grad_() for t in (x, h0, c0)]
            if packed:
                lengths = torch.tensor(LENGTHS)
                seq = pack_padded_sequence(xs[0], lengths, enforce_sorted=False)
                output, (h_n, c_n) = module(seq, (xs[1], xs[2]))
                output = pad_packed_sequence(output, total_length=STEPS)[0]
            else:
                output, (h_n, c_n) = module(xs[0], (xs[1], xs[2]))
            cots = [
                torch.randn(t.shape, generator=gen, dtype=tdtype).to(device)
                for t in (output, h_n, c_n)
            ]
            loss = sum(
                (t * g).sum() for t, g in zip((output, h_n, c_n), cots, strict=True)
            )
            names = [n for n, _ in module.named_parameters()]
            grads = torch.autograd.grad(
                loss, xs + [p for _, p in module.named_parameters()]
            )
            out[f"{key}/config"] = np.array(json.dumps({**cfg, "dtype": dtype}))
            out[f"{key}/lengths"] = np.array(LENGTHS if packed else [STEPS] * BATCH)
            for name, t in (("x", x), ("h0", h0), ("c0", c0)):
                out[f"{key}/in/{name}"] = t.numpy()
            for name, t in (("output", output), ("h_n", h_n), ("c_n", c_n)):
                out[f"{key}/out/{name}"] = t.detach().cpu().numpy()
            for name, p in module.named_parameters():
                out[f"{key}/param/{name}"] = p.detach().cpu().numpy()
            for name, g in zip(["x", "h0", "c0", *names], grads, strict=True):
                out[f"{key}/grad/{name}"] = g.cpu().numpy()
            for name, g in zip(("output", "h_n", "c_n"), cots, strict=True):
                out[f"{key}/cot/{name}"] = g.cpu().numpy()
    out["device"] = np.array(
        torch.cuda.get_device_name() if device == "cuda" else "cpu"
    )
    out["torch"] = np.array(torch.__version__)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/gpu_reference.npz")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--limit",
        type=int,
        help="only the first LIMIT configurations (the test of this file's format)",
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --device cpu")
    np.savez_compressed(args.out, **reference_cases(args.device, limit=args.limit))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
