"""The pairwise array covers every pair of option values of the full grid."""

import itertools

from grids import GRID, OPTIONS, PAIRWISE, pairs


def test_pairwise_covers_every_pair():
    every = {
        (a, va, b, vb)
        for a, b in itertools.combinations(sorted(OPTIONS), 2)
        for va, vb in itertools.product(OPTIONS[a], OPTIONS[b])
    }
    assert set().union(*(pairs(c) for c in PAIRWISE)) == every
    assert all(c in GRID for c in PAIRWISE)
    assert len(GRID) == 48 and len(PAIRWISE) <= 8
