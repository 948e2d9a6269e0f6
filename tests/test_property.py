"""Random sizes, including the degenerate ones (hidden_size 1, batch 1, L = 1)."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import ATOL, assert_matches, copy_torch_weights, run_tflstm, run_torch

import tflstm


@st.composite
def configs(draw):
    hidden = draw(st.integers(1, 6))
    cfg = dict(
        input_size=draw(st.integers(1, 5)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 3)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)),
    )
    shape = dict(
        steps=draw(st.integers(1, 6)),
        batch=draw(st.integers(1, 4)),
        batched=draw(st.booleans()),
        with_hx=draw(st.booleans()),
    )
    return cfg, shape


@settings(max_examples=30, deadline=None, derandomize=True)
@given(configs())
def test_random_sizes_match_torch(case):
    cfg, shape = case
    torch.manual_seed(0)
    module = torch.nn.LSTM(**cfg)
    layer = tflstm.LSTM(**cfg, dtype="float64")
    copy_torch_weights(module, layer)
    rng = np.random.default_rng(0)
    steps, batch, i = shape["steps"], shape["batch"], cfg["input_size"]
    if not shape["batched"]:
        x = rng.standard_normal((steps, i))
    elif cfg["batch_first"]:
        x = rng.standard_normal((batch, steps, i))
    else:
        x = rng.standard_normal((steps, batch, i))
    hx = None
    if shape["with_hx"]:
        lead = (cfg["num_layers"] * (2 if cfg["bidirectional"] else 1),)
        lead += (batch,) if shape["batched"] else ()
        out = cfg["proj_size"] or cfg["hidden_size"]
        hx = (
            rng.standard_normal((*lead, out)),
            rng.standard_normal((*lead, cfg["hidden_size"])),
        )
    want = run_torch(module, x, hx)
    got = run_tflstm(layer, x, hx, training=True)
    assert_matches(want, got, ATOL["float64"])
    got = run_tflstm(layer, x, hx, training=False)
    assert_matches(want, got, ATOL["float64"])
