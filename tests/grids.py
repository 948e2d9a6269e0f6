"""The option grids of the tests: the full product of torch.nn.LSTM's options,
and a pairwise covering array of it.

The float64 parity tests run the full grid. Where the full product adds no
code path (exports: the same layer code traced and converted once per
configuration), tests run the pairwise array: every pair of values of any two
options appears in at least one configuration (tests/test_grids.py checks).
"""

from __future__ import annotations

import itertools

OPTIONS = {
    "bias": [True, False],
    "batch_first": [False, True],
    "bidirectional": [False, True],
    "proj_size": [0, 2],
    "num_layers": [1, 2, 3],
}

GRID = [
    dict(zip(OPTIONS, values, strict=True))
    for values in itertools.product(*OPTIONS.values())
]


def pairs(config: dict) -> set[tuple]:
    """The (option, value, option, value) pairs a configuration covers."""
    items = sorted(config.items())
    return {(a, va, b, vb) for (a, va), (b, vb) in itertools.combinations(items, 2)}


def pairwise(grid: list[dict]) -> list[dict]:
    """A small subset of `grid` covering every pair that `grid` covers
    (greedy: each step takes the first configuration covering most new pairs;
    deterministic)."""
    uncovered = set().union(*(pairs(c) for c in grid))
    chosen = []
    while uncovered:
        best = max(grid, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


PAIRWISE = pairwise(GRID)


def ids(config: dict) -> str:
    return "-".join(f"{k}={int(v)}" for k, v in config.items())


def dtype_cases() -> list:
    """(cfg, dtype) parameters of the parity tests: float64 on the full grid
    (its tolerance, 1e-10, catches any slip), float32 on the pairwise array
    (the same code; its numbers are what TensorFlow's oneDNN setting can
    change, so those cases are marked `numerics`)."""
    import pytest

    cases = [pytest.param(c, "float64", id=f"{ids(c)}-float64") for c in GRID]
    cases += [
        pytest.param(c, "float32", id=f"{ids(c)}-float32", marks=pytest.mark.numerics)
        for c in PAIRWISE
    ]
    return cases
