"""The distribution behind tests/test_long.py's float32 criterion.

    python benchmarks/float32_errors.py [--seeds 12]            # oneDNN as it comes
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/float32_errors.py  # and flipped
    python benchmarks/float32_errors.py --kernel xla            # the XLA paths

For each long/large case of tests/test_long.py and each seed: every tensor's
float32 error (tflstm, and torch itself) against a float64 torch run, and how
much of the test's bound (`oracle.float32_error_bound`) tflstm uses. Prints
the median, 90th/99th percentiles and maximum per path; with --out, writes
one JSON line per tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import numpy as np  # noqa: E402
from oracle import float32_error_bound  # noqa: E402
from test_long import CASES, errors_against_float64  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument(
        "--kernel", default="auto", help="the layer's kernel option (auto, loop, xla)"
    )
    parser.add_argument("--out", help="a .jsonl file for every tensor's numbers")
    args = parser.parse_args()
    # torch on CPU notes that its oneDNN kernels lack projections.
    warnings.filterwarnings("ignore", "LSTM with projections is not supported")
    rows = []
    for name in CASES:
        for seed in range(args.seeds):
            for path, errors in errors_against_float64(name, seed, args.kernel).items():
                for key, (ours, theirs, reference) in errors.items():
                    bound = float32_error_bound(theirs, reference, path)
                    rows.append(
                        dict(
                            case=name,
                            seed=seed,
                            path=path,
                            key=key,
                            ours=ours,
                            torch=theirs,
                            of_bound=ours / bound,
                        )
                    )
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "as the CPU's default")
    print(
        f"TF_ENABLE_ONEDNN_OPTS={onednn}, kernel={args.kernel}, "
        f"{args.seeds} seeds, {len(rows)} tensors"
    )
    for path in ("training", "inference"):
        sel = [r for r in rows if r["path"] == path]
        ratio = np.array([r["ours"] / r["torch"] for r in sel])
        of_bound = np.array([r["of_bound"] for r in sel])
        print(
            f"{path:9s} tflstm/torch: median {np.median(ratio):.2f}, "
            f"p90 {np.percentile(ratio, 90):.2f}, max {ratio.max():.2f}; "
            f"of the bound: p99 {np.percentile(of_bound, 99):.2f}, "
            f"max {of_bound.max():.2f}"
        )


if __name__ == "__main__":
    main()
