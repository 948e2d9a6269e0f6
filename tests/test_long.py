"""Long sequences and large layers in float32, judged against torch in float64:
outputs and every gradient on the training path, outputs on the inference path.

There, float32 rounding dominates any difference of summation order, so the
criterion is relative to torch's own float32 error: tflstm's float32 error
against a float64 torch run is at most FLOAT32_ERROR_RATIO times torch's.
"""

import numpy as np
import pytest
import torch
from oracle import (
    FLOAT32_ERROR_RATIO,
    copy_torch_weights,
    max_errors,
    run_tflstm,
    run_torch,
)

import tflstm

CASES = {
    "long_sequence": dict(
        steps=1000,
        batch=2,
        input_size=8,
        hidden_size=32,
        num_layers=2,
        bidirectional=True,
        proj_size=0,
    ),
    "large_layer": dict(
        steps=50,
        batch=4,
        input_size=64,
        hidden_size=512,
        num_layers=1,
        bidirectional=False,
        proj_size=128,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_float32_error_within_twice_torch(name):
    case = dict(CASES[name])
    steps, batch = case.pop("steps"), case.pop("batch")
    torch.manual_seed(0)
    module = torch.nn.LSTM(**case)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, case["input_size"]))
    n_states = case["num_layers"] * (2 if case["bidirectional"] else 1)
    hx = (
        rng.standard_normal(
            (n_states, batch, case["proj_size"] or case["hidden_size"])
        ),
        rng.standard_normal((n_states, batch, case["hidden_size"])),
    )
    # Reference: torch in float64 on the float32-rounded weights and inputs.
    module = module.float()
    x, hx = x.astype("float32"), tuple(s.astype("float32") for s in hx)
    reference = run_torch(module.double(), x, hx, dtype="float64")
    torch32 = run_torch(module.float(), x, hx, dtype="float32")
    layer = tflstm.LSTM(**case)
    copy_torch_weights(module, layer)
    ours32 = run_tflstm(layer, x, hx, dtype="float32", training=True)
    # The inference path (TensorFlow's own activations): outputs only.
    inference = run_tflstm(layer, x, hx, dtype="float32", training=False)
    ours32.update(
        {f"inference_{k}": v for k, v in inference.items() if k.startswith("out")}
    )
    reference.update(
        {f"inference_{k}": v for k, v in reference.items() if k.startswith("out")}
    )
    torch32.update(
        {f"inference_{k}": v for k, v in torch32.items() if k.startswith("out")}
    )

    torch_err = max_errors(reference, torch32)
    our_err = max_errors(reference, ours32)
    report = {k: (our_err[k], torch_err[k]) for k in reference}
    bad = {k: v for k, v in report.items() if not v[0] <= FLOAT32_ERROR_RATIO * v[1]}
    assert not bad, (
        f"(tflstm error, torch error) above ratio {FLOAT32_ERROR_RATIO}: {bad}"
    )
    assert all(e > 0 for e in torch_err.values()), "the reference must be float64"
