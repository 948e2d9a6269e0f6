"""tflstm against torch-cuDNN reference outputs (benchmarks/gpu_reference.py),
and tflstm's own cuDNN path where TensorFlow sees a GPU."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from oracle import ATOL

import tflstm

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_reference.py"
CUDNN_REFERENCE = ROOT / "benchmarks" / "gpu_reference.npz"
# cuDNN sums in its own order: float32 within the small-configuration
# tolerance; float64 a little looser than bit-for-bit CPU parity.
TOLERANCE = {"float32": ATOL["float32"], "float64": 1e-10}


def compare_with_reference(path: Path) -> dict[str, float]:
    """Max abs error per case and tensor (outputs and gradients)."""
    data = np.load(path)
    keys = sorted({k.rsplit("/", 2)[0] for k in data.files if k.endswith("/config")})
    worst = {}
    for key in keys:
        cfg = json.loads(str(data[f"{key}/config"]))
        dtype = cfg.pop("dtype")
        x, h0, c0 = (data[f"{key}/in/{n}"] for n in ("x", "h0", "c0"))
        layer = tflstm.LSTM(
            x.shape[-1], data[f"{key}/in/c0"].shape[-1], dtype=dtype, **cfg
        )
        for v in layer.trainable_weights:
            v.assign(data[f"{key}/param/{v.name}"])
        lengths = data[f"{key}/lengths"]
        inputs = [tf.constant(a) for a in (x, h0, c0)]
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            output, (h_n, c_n) = layer(
                inputs[0], tuple(inputs[1:]), sequence_lengths=lengths, training=True
            )
            loss = sum(
                tf.reduce_sum(t * data[f"{key}/cot/{n}"])
                for t, n in ((output, "output"), (h_n, "h_n"), (c_n, "c_n"))
            )
        grads = tape.gradient(loss, inputs + layer.trainable_weights)
        names = ["x", "h0", "c0"] + [v.name for v in layer.trainable_weights]
        got = {"output": output, "h_n": h_n, "c_n": c_n}
        got.update({f"grad_{n}": g for n, g in zip(names, grads, strict=True)})
        for name, value in got.items():
            ref_key = (
                f"{key}/out/{name}"
                if "grad_" not in name
                else (f"{key}/grad/{name.removeprefix('grad_')}")
            )
            err = float(np.abs(np.asarray(value) - data[ref_key]).max())
            if err > TOLERANCE[dtype]:
                worst[f"{key}:{name}"] = err
    return worst


def test_reference_script_format_with_torch_cpu(tmp_path):
    """The script (run with torch's CPU kernels) writes a file that the
    comparison reads, and tflstm matches it: the pipeline the cuDNN file uses."""
    out = tmp_path / "ref.npz"
    subprocess.run(
        # --limit 3: a projection and both directions among them (the parity
        # tests cover the rest against torch on CPU)
        [
            sys.executable,
            str(SCRIPT),
            "--device",
            "cpu",
            "--out",
            str(out),
            "--limit",
            "3",
        ],
        check=True,
        timeout=300,
    )
    assert str(np.load(out)["device"]) == "cpu"
    assert compare_with_reference(out) == {}


@pytest.mark.skipif(
    not CUDNN_REFERENCE.exists(),
    reason="no torch-cuDNN reference file yet: run benchmarks/gpu_reference.py "
    "on a GPU machine and commit benchmarks/gpu_reference.npz",
)
def test_matches_torch_cudnn_reference():
    assert compare_with_reference(CUDNN_REFERENCE) == {}


@pytest.mark.gpu
@pytest.mark.skipif(
    not tf.config.list_logical_devices("GPU"), reason="TensorFlow sees no GPU"
)
def test_cudnn_path_matches_torch():
    """On a GPU, the layer dispatches to CudnnRNNV3; compare it with torch."""
    import torch
    from oracle import assert_matches, copy_torch_weights, run_tflstm, run_torch

    for cfg in (dict(), dict(num_layers=2, bidirectional=True)):
        torch.manual_seed(0)
        module = torch.nn.LSTM(5, 6, **cfg)
        layer = tflstm.LSTM(5, 6, dtype="float32", **cfg)
        copy_torch_weights(module, layer)
        x = np.random.default_rng(0).standard_normal((7, 3, 5))
        want = run_torch(module, x, dtype="float32")
        for training in (True, False):
            got = run_tflstm(layer, x, dtype="float32", training=training)
            assert_matches(want, got, ATOL["float32"])
