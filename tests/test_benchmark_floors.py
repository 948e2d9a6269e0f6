"""The reference graphs of benchmarks/floors.py: the straight-line LSTM must be
torch's LSTM, and its "matmuls alone" part must keep every layer's chain (a
chain that Grappler could prune would make the floor look lower than it is)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
from oracle import ATOL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import floors

STEPS, BATCH, INPUTS, HIDDEN = 5, 3, 4, 6


@pytest.mark.parametrize(
    "num_layers, bidirectional, proj_size", [(1, False, 0), (2, True, 0), (2, False, 3)]
)
def test_straight_line_graph_is_torchs_lstm(num_layers, bidirectional, proj_size):
    torch.manual_seed(0)
    module = torch.nn.LSTM(
        INPUTS, HIDDEN, num_layers, bidirectional=bidirectional, proj_size=proj_size
    )
    x = np.random.default_rng(0).standard_normal((STEPS, BATCH, INPUTS), "float32")
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    got = floors.graph_forward(module, STEPS)(tf.constant(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL["float32"])


def test_matmul_chain_of_every_layer_depends_on_the_input():
    """Every layer's chain of matmuls is in the graph Grappler optimises: the
    first layer's too, and changing the input changes the last layer's output
    (so the first layer's chain cannot be pruned)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(INPUTS, HIDDEN, 2, bidirectional=True)
    forward = floors.graph_forward(module, STEPS, "matmuls")
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((STEPS, BATCH, INPUTS), "float32") for _ in "ab")
    y1 = forward(tf.constant(x1)).numpy()
    y2 = forward(tf.constant(x2)).numpy()
    assert y1.shape == (STEPS, BATCH, 2 * HIDDEN)
    assert np.abs(y1 - y2).max() > 1e-3
    graph = forward.get_concrete_function(tf.constant(x1)).graph
    matmuls = [op for op in graph.get_operations() if op.type == "MatMul"]
    # Per layer and direction: the input projection and one matmul per step.
    assert len(matmuls) == 2 * 2 * (1 + STEPS)
