"""Peak memory of converting one LSTM out of a checkpoint larger than 1 GB.

    python benchmarks/checkpoint_memory.py [--gb 1.2] [--keep DIR]
        [--out benchmarks/checkpoint_memory.md]

Writes a model's state_dict (a large embedding, a 2-layer bidirectional LSTM
`encoder.lstm` of about 42 MB, a head) as .safetensors and as a torch.save zip
file in a temporary folder, then, for each, in a fresh process: imports tflstm,
converts a small LSTM once (so that TensorFlow's own start-up allocations are
not counted), resets the kernel's peak-RSS mark (/proc/self/clear_refs), runs
`converters.from_torch(path, prefix="encoder.lstm")` and reports the growth of
the peak RSS (VmHWM) over the RSS before the call, against the LSTM's size.
The target: at most 1.5x the LSTM's size plus a constant. Linux only.
With `--out`, the report is also written there as a page of the docs'
benchmarks (machine and date first).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

LSTM = dict(input_size=512, hidden_size=512, num_layers=2, bidirectional=True)
PREFIX = "encoder.lstm"


def _status(field: str) -> int:
    """A /proc/self/status field (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(path: str) -> None:
    """Runs in its own process: the conversion (or, for path "-", only the
    construction of the same tflstm.LSTM), measured."""
    import numpy as np
    import torch  # noqa: F401  (its import, ~180 MB, is not the conversion's)

    import converters
    import tflstm

    warm = {
        f"w.{k}": np.zeros(shape, "float32")
        for k, shape in tflstm.lstm_param_shapes(8, 8, 2, bidirectional=True).items()
    }
    converters.from_torch(warm, prefix="w")  # TensorFlow's one-time allocations
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
    before = _status("VmRSS")
    if path == "-":
        layer = tflstm.LSTM(**LSTM)
    else:
        layer = converters.from_torch(path, prefix=PREFIX)
    peak = _status("VmHWM")
    size = sum(int(np.prod(v.shape)) * 4 for v in layer.weights)
    print(json.dumps({"growth": peak - before, "lstm_bytes": size}))


def write_checkpoints(folder: Path, gigabytes: float) -> dict[str, Path]:
    import safetensors.torch
    import torch

    torch.manual_seed(0)
    rows = int(gigabytes * 2**30 / (1024 * 4))
    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(rows, 1024, _weight=torch.empty(rows, 1024))
    model.embed.weight.data.uniform_()
    model.encoder = torch.nn.Module()
    model.encoder.lstm = torch.nn.LSTM(**LSTM)
    model.head = torch.nn.Linear(1024, 10)
    state_dict = model.state_dict()
    paths = {
        "safetensors": folder / "model.safetensors",
        "torch zip": folder / "model.pt",
    }
    safetensors.torch.save_file(state_dict, paths["safetensors"])
    torch.save({"model_state": state_dict, "epoch": 1}, paths["torch zip"])
    return paths


def _measure(path: str) -> tuple[int, int]:
    """(peak RSS growth, LSTM bytes) of `child(path)`, in a fresh process."""
    result = subprocess.run(
        [sys.executable, __file__, "--child", path],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(result.stdout.splitlines()[-1])
    return r["growth"], r["lstm_bytes"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.2, help="checkpoint size")
    parser.add_argument("--keep", help="write the checkpoints here and keep them")
    parser.add_argument("--out", help="also write the report as Markdown here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    lines: list[str] = []

    def report(line: str) -> None:
        print(line)
        lines.append(line)

    config = ", ".join(f"{k}={v}" for k, v in LSTM.items())
    growth, size = _measure("-")
    report(f"LSTM {PREFIX}: nn.LSTM({config}), {size / 2**20:.1f} MiB")
    report(
        f"constructing tflstm.LSTM({config}) alone: peak RSS growth "
        f"{growth / 2**20:.1f} MiB = {growth / size:.2f}x (random initialisation)"
    )
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in write_checkpoints(folder, args.gb).items():
            growth, size = _measure(str(path))
            worst = max(worst, growth / size)
            report(
                f"from_torch, {name} file of {path.stat().st_size / 2**30:.2f} GiB: "
                f"peak RSS growth {growth / 2**20:.1f} MiB = {growth / size:.2f}x"
            )
    verdict = "OK" if worst <= 1.5 else "ABOVE TARGET"
    report(f"{verdict}: worst {worst:.2f}x the LSTM's size (target 1.5x)")
    if args.out:
        Path(args.out).write_text(_markdown(lines))
    return 0


def _markdown(lines: list[str]) -> str:
    import os
    import platform
    import time

    return (
        "# Peak memory of converting one LSTM out of a large checkpoint\n\n"
        f"`python benchmarks/checkpoint_memory.py` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"{time.strftime('%Y-%m-%d')}. Peak RSS growth of "
        '`converters.from_torch(path, prefix="encoder.lstm")` in a fresh '
        "process, against the LSTM's size.\n\n```text\n" + "\n".join(lines) + "\n```\n"
    )


if __name__ == "__main__":
    sys.exit(main())
