"""SavedModel export: every grid configuration, served in a separate process
that cannot import tflstm, against torch; streaming; Keras's own
`model.export`; `saved_model_cli`."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import torch
from oracle import ATOL
from test_lstm_parity import GRID

import converters
import tflstm
from tflstm.export import export_saved_model

LOADER = Path(__file__).with_name("serving_loader.py")
H_IN, H = 5, 7
SHAPES = [(6, 3), (11, 1)]  # (L, N): two lengths and batch sizes, one file


def serve_elsewhere(jobs: dict, tmp_path: Path) -> dict:
    """Runs `jobs` through serving_loader.py in a fresh process."""
    flat = {}
    for job, (path, signature, inputs) in jobs.items():
        flat[f"{job}/path"] = np.array(str(path))
        flat[f"{job}/signature"] = np.array(signature)
        flat.update({f"{job}/in/{k}": v for k, v in inputs.items()})
    np.savez(tmp_path / "jobs.npz", **flat)
    subprocess.run(
        [
            sys.executable,
            str(LOADER),
            str(tmp_path / "jobs.npz"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        timeout=600,
        cwd=tmp_path,
    )
    results = np.load(tmp_path / "out.npz")
    out: dict = {}
    for key in results.files:
        job, _, name = key.split("/")
        out.setdefault(job, {})[name] = results[key]
    return out


def torch_run(module, x, hx=None):
    with torch.no_grad():
        output, (h_n, c_n) = module(
            torch.from_numpy(x), hx and tuple(map(torch.from_numpy, hx))
        )
    return {"output": output.numpy(), "h_n": h_n.numpy(), "c_n": c_n.numpy()}


def test_saved_model_matches_torch_in_another_process(tmp_path):
    """Every grid configuration, exported once, served at two (L, N) shapes
    with and without an initial state, in one separate process."""
    rng = np.random.default_rng(0)
    jobs, expected = {}, {}
    for i, cfg in enumerate(GRID):
        torch.manual_seed(i)
        module = torch.nn.LSTM(H_IN, H, **cfg)
        path = tmp_path / f"model_{i}"
        export_saved_model(converters.from_torch(module), path)
        n_states = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
        for steps, batch in SHAPES:
            shape = (batch, steps, H_IN) if cfg["batch_first"] else (steps, batch, H_IN)
            x = rng.standard_normal(shape).astype("float32")
            h0 = rng.standard_normal((n_states, batch, cfg["proj_size"] or H)).astype(
                "float32"
            )
            c0 = rng.standard_normal((n_states, batch, H)).astype("float32")
            job = f"{i}-{steps}"
            jobs[job] = (path, "serving_default", {"input": x})
            expected[job] = torch_run(module, x)
            jobs[job + "s"] = (path, "with_state", {"input": x, "h_0": h0, "c_0": c0})
            expected[job + "s"] = torch_run(module, x, (h0, c0))
    served = serve_elsewhere(jobs, tmp_path)
    assert served.keys() == expected.keys()
    errors = {}
    for job, want in expected.items():
        assert served[job].keys() == want.keys()
        for name, value in want.items():
            assert served[job][name].shape == value.shape, (job, name)
            errors[job, name] = float(np.abs(served[job][name] - value).max())
    bad = {k: e for k, e in errors.items() if not e <= ATOL["float32"]}
    assert not bad, bad


def test_streaming_in_chunks_equals_whole_sequence(tmp_path):
    import tensorflow as tf

    layer = tflstm.LSTM(H_IN, H, num_layers=2, proj_size=3, batch_first=True, seed=0)
    export_saved_model(layer, tmp_path / "stream")
    stream = tf.saved_model.load(str(tmp_path / "stream")).signatures["with_state"]
    x = np.random.default_rng(0).standard_normal((2, 50, H_IN)).astype("float32")
    h, c = np.zeros((2, 2, 3), "float32"), np.zeros((2, 2, H), "float32")
    chunks = []
    for start, stop in [(0, 7), (7, 8), (8, 30), (30, 50)]:
        out = stream(input=x[:, start:stop], h_0=h, c_0=c)
        chunks.append(out["output"].numpy())
        h, c = out["h_n"], out["c_n"]
    whole_output, (whole_h, whole_c) = layer(x)
    np.testing.assert_allclose(
        np.concatenate(chunks, axis=1), whole_output, atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(h, whole_h, atol=1e-6, rtol=0)
    np.testing.assert_allclose(c, whole_c, atol=1e-6, rtol=0)


def test_lstm_cell_saved_model(tmp_path):
    torch.manual_seed(0)
    module = torch.nn.LSTMCell(H_IN, H)
    export_saved_model(converters.from_torch(module), tmp_path / "cell")
    rng = np.random.default_rng(0)
    x, h, c = (rng.standard_normal((4, n)).astype("float32") for n in (H_IN, H, H))
    served = serve_elsewhere(
        {"cell": (tmp_path / "cell", "with_state", {"input": x, "h_0": h, "c_0": c})},
        tmp_path,
    )
    with torch.no_grad():
        want = module(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    np.testing.assert_allclose(
        served["cell"]["h_1"], want[0].numpy(), atol=ATOL["float32"], rtol=0
    )
    np.testing.assert_allclose(
        served["cell"]["c_1"], want[1].numpy(), atol=ATOL["float32"], rtol=0
    )


def test_keras_model_export(tmp_path):
    inputs = keras.Input((None, H_IN))
    output, (h_n, _) = tflstm.LSTM(
        H_IN, H, num_layers=2, bidirectional=True, batch_first=True, seed=0
    )(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2)(output), h_n])
    model.export(tmp_path / "keras_export", format="tf_saved_model", verbose=False)
    x = np.random.default_rng(0).standard_normal((3, 9, H_IN)).astype("float32")
    served = serve_elsewhere(
        {"k": (tmp_path / "keras_export", "serve", {"_": x})}, tmp_path
    )
    want = model.predict(x, verbose=0)
    got = [served["k"][k] for k in sorted(served["k"])]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_saved_model_cli_lists_the_signatures(tmp_path):
    export_saved_model(tflstm.LSTM(H_IN, H, num_layers=2, proj_size=3), tmp_path / "m")
    cli = Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run(
        [str(cli), "show", "--dir", str(tmp_path / "m"), "--all"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = result.stdout
    assert "signature_def['serving_default']" in out
    assert "signature_def['with_state']" in out
    for line in (
        "inputs['input'] tensor_info:",
        "shape: (-1, -1, 5)",
        "inputs['h_0'] tensor_info:",
        "shape: (2, -1, 3)",
        "inputs['c_0'] tensor_info:",
        "shape: (2, -1, 7)",
        "outputs['output'] tensor_info:",
        "outputs['h_n'] tensor_info:",
        "outputs['c_n'] tensor_info:",
    ):
        assert line in out, line


def test_layer_returning_only_output_exports_all_three(tmp_path):
    """A layer built with `return_state=False` (e.g. for keras.Sequential)
    still serves `output`, `h_n` and `c_n`."""
    import tensorflow as tf

    layer = tflstm.LSTM(H_IN, H, num_layers=2, return_state=False, seed=0)
    export_saved_model(layer, tmp_path / "m")
    served = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    x = np.random.default_rng(0).standard_normal((5, 2, H_IN)).astype("float32")
    out = served(input=tf.constant(x))
    output, (h_n, c_n) = layer.forward(x)
    np.testing.assert_array_equal(output, layer(x))
    np.testing.assert_allclose(out["output"], output, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["h_n"], h_n, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["c_n"], c_n, atol=1e-6, rtol=0)
