"""SavedModel export: the pairwise grid of configurations, with and without
packed sequences, an LSTMCell and Keras's own `model.export`, all exported once
and served in separate processes that cannot import tflstm (one with
TensorFlow's oneDNN off, one with it on), against torch; streaming;
`saved_model_cli`."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import torch
from grids import PAIRWISE
from oracle import ATOL, run_torch

import converters
import tflstm
from converters import random_lengths
from tflstm.export import export_saved_model

LOADER = Path(__file__).with_name("serving_loader.py")
H_IN, H = 5, 7
SHAPES = [(6, 3), (11, 1)]  # (L, N): two lengths and batch sizes, one file
PACKED_STEPS, PACKED_BATCH = 7, 4
# Packed sequences through SavedModel on the first 4 pairwise configurations:
# with and without bias, batch_first, both directions, a projection, 1-3 layers.
PACKED = 4


# TF_ENABLE_ONEDNN_OPTS of the serving processes. Served under both here,
# the tests that use them need no `numerics` rerun: what oneDNN changes is
# the serving process's arithmetic; the exported graph is the same.
ONEDNN = ("0", "1")


def serve_elsewhere(jobs: dict, tmp_path: Path) -> dict[str, dict]:
    """Runs `jobs` through serving_loader.py in fresh processes, one per
    oneDNN setting, side by side: {setting: {job: {output name: array}}}."""
    flat = {}
    for job, (path, signature, inputs) in jobs.items():
        flat[f"{job}/path"] = np.array(str(path))
        flat[f"{job}/signature"] = np.array(signature)
        flat.update({f"{job}/in/{k}": v for k, v in inputs.items()})
    np.savez(tmp_path / "jobs.npz", **flat)
    outs = {setting: tmp_path / f"out-onednn{setting}.npz" for setting in ONEDNN}
    processes = [
        subprocess.Popen(
            [sys.executable, str(LOADER), str(tmp_path / "jobs.npz"), str(out)],
            cwd=tmp_path,
            env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting},
        )
        for setting, out in outs.items()
    ]
    for process in processes:
        assert process.wait(timeout=600) == 0, process.args
    served: dict = {}
    for setting, path in outs.items():
        with np.load(path) as results:
            for key in results.files:
                job, _, name = key.split("/")
                served.setdefault(setting, {}).setdefault(job, {})[name] = results[key]
    return served


def _torch(module, x, hx=None, lengths=None):
    want = run_torch(module, x, hx, dtype="float32", lengths=lengths)
    return {"output": want["out0"], "h_n": want["out1"], "c_n": want["out2"]}


def _lstm_jobs(tmp: Path, rng) -> tuple[dict, dict]:
    """The pairwise grid at two (L, N), with and without an initial state;
    the first PACKED configurations again with `sequence_lengths` (padding
    filled with a random value)."""
    jobs, expected = {}, {}
    for i, cfg in enumerate(PAIRWISE):
        torch.manual_seed(i)
        module = torch.nn.LSTM(H_IN, H, **cfg)
        layer = converters.from_torch(module)
        export_saved_model(layer, tmp / f"grid{i}")
        n_states = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
        shapes = [(*shape, None) for shape in SHAPES]
        if i < PACKED:
            export_saved_model(layer, tmp / f"packed{i}", sequence_lengths=True)
            lengths = random_lengths(PACKED_STEPS, PACKED_BATCH, seed=i)
            shapes.append((PACKED_STEPS, PACKED_BATCH, lengths))
        for steps, batch, lengths in shapes:
            shape = (batch, steps, H_IN) if cfg["batch_first"] else (steps, batch, H_IN)
            x = rng.standard_normal(shape).astype("float32")
            hx = tuple(
                rng.standard_normal((n_states, batch, size)).astype("float32")
                for size in (cfg["proj_size"] or H, H)
            )
            path, extra, group = tmp / f"grid{i}", {}, "grid"
            if lengths is not None:
                path, extra, group = (
                    tmp / f"packed{i}",
                    {"sequence_lengths": lengths},
                    "packed",
                )
                valid = np.arange(steps)[:, None] < lengths[None, :]
                valid = valid.T if cfg["batch_first"] else valid
                x = np.where(valid[..., None], x, rng.standard_normal()).astype(
                    "float32"
                )
            job = f"{group}-{i}-{steps}"
            jobs[job] = (path, "serving_default", {"input": x, **extra})
            expected[job] = _torch(module, x, lengths=lengths)
            state = {"input": x, "h_0": hx[0], "c_0": hx[1], **extra}
            jobs[job + "s"] = (path, "with_state", state)
            expected[job + "s"] = _torch(module, x, hx, lengths)
    return jobs, expected


def _export_and_serve(tmp: Path) -> tuple[dict, dict]:
    """Every SavedModel of this module, exported and served elsewhere: what
    was served ({oneDNN setting: {job: outputs}}) and what torch (or the
    Keras model) gives ({job: outputs})."""
    rng = np.random.default_rng(0)
    jobs, expected = _lstm_jobs(tmp, rng)

    torch.manual_seed(0)
    cell = torch.nn.LSTMCell(H_IN, H)
    export_saved_model(converters.from_torch(cell), tmp / "cell")
    x, h, c = (rng.standard_normal((4, n)).astype("float32") for n in (H_IN, H, H))
    jobs["cell"] = (tmp / "cell", "with_state", {"input": x, "h_0": h, "c_0": c})
    with torch.no_grad():
        h_1, c_1 = cell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
    expected["cell"] = {"h_1": h_1.numpy(), "c_1": c_1.numpy()}

    inputs = keras.Input((None, H_IN))
    output, (h_n, _) = tflstm.LSTM(
        H_IN, H, num_layers=2, bidirectional=True, batch_first=True, seed=0
    )(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(2)(output), h_n])
    model.export(tmp / "keras_export", format="tf_saved_model", verbose=False)
    x = rng.standard_normal((3, 9, H_IN)).astype("float32")
    jobs["keras"] = (tmp / "keras_export", "serve", {"_": x})
    # Keras names the served outputs output_0, output_1.
    want = model.predict(x, verbose=0)
    expected["keras"] = {f"output_{i}": w for i, w in enumerate(want)}

    return serve_elsewhere(jobs, tmp), expected


def test_saved_models_served_elsewhere_match_torch(tmp_path):
    """One test, so that its exports and its one serving process are built
    once whatever the number of workers:

    - grid: the pairwise grid, at two (L, N) shapes, with and without an
      initial state (`serving_default`, `with_state`);
    - packed: the same configurations exported with `sequence_lengths`,
      torch's packed sequences, padding filled with a random value;
    - cell: an LSTMCell;
    - keras: Keras's own `model.export` of a model holding a tflstm.LSTM,
      against what the model predicts.

    Each served with oneDNN off and on (`serve_elsewhere`).
    """
    served_by, expected = _export_and_serve(tmp_path)
    assert list(served_by) == list(ONEDNN)
    bad = {}
    for setting, served in served_by.items():
        assert served.keys() == expected.keys()
        for job, want in expected.items():
            assert served[job].keys() == want.keys(), job
            atol = 1e-6 if job == "keras" else ATOL["float32"]
            for name, value in want.items():
                assert served[job][name].shape == value.shape, (job, name)
                error = float(np.abs(served[job][name] - value).max())
                if not error <= atol:
                    bad[setting, job, name] = error
    counts: dict = {}
    for job in expected:
        group = job.split("-")[0]
        counts[group] = counts.get(group, 0) + 1
    assert counts == {
        "grid": len(PAIRWISE) * len(SHAPES) * 2,
        "packed": PACKED * 2,
        "cell": 1,
        "keras": 1,
    }
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
