"""tflstm-convert: its commands in-process through `main(argv)`, and one
subprocess per command, run as a user runs it, with nothing on stderr."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

import converters
from converters.cli import main

CLI = Path(sys.executable).with_name("tflstm-convert")
RULE = "rule: max abs error against torch in float64 <= 4 x max(torch's own float32 error, 4 ulps of the tensor's largest magnitude)"
NOTE = "note: a state_dict does not record batch_first: pass --batch-first to convert if the model was built with batch_first=True (input (N, L, H_in))"


def cli(capsys, *args):
    """`tflstm-convert ARGS` in this process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run(*args, env=None):
    """`tflstm-convert ARGS` in a new process: (exit code, stdout, stderr)."""
    result = subprocess.run(
        [str(CLI), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout, result.stderr


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.front = torch.nn.Linear(3, 6)
        self.rnn = torch.nn.LSTM(6, 8, 2, bidirectional=True, proj_size=3)
        self.cell = torch.nn.LSTMCell(6, 4)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = Model()
    path = tmp_path_factory.mktemp("cli") / "model.pt"
    torch.save({"model_state": model.state_dict(), "epoch": 1}, path)
    return path, model


def _listing(model):
    n_cell = sum(p.numel() for p in model.cell.parameters())
    n_rnn = sum(p.numel() for p in model.rnn.parameters())
    return [
        f"cell: nn.LSTMCell(input_size=6, hidden_size=4, bias=True)  [{n_cell:,} parameters]",
        f"rnn: nn.LSTM(input_size=6, hidden_size=8, bias=True, num_layers=2, bidirectional=True, proj_size=3)  [{n_rnn:,} parameters]",
        NOTE,
    ]


# -- one subprocess per command ------------------------------------------------------

BLOCK_TENSORFLOW = """
import sys

class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, _Block())
"""


def test_list_subprocess_never_imports_tensorflow(checkpoint, tmp_path):
    path, model = checkpoint
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    pythonpath = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    code, out, err = run("list", path, env={"PYTHONPATH": pythonpath})
    assert (code, err) == (0, "")
    assert out.splitlines() == _listing(model)


@pytest.mark.parametrize("suffix", [".keras", ".tflite"])
def test_convert_subprocess_is_quiet(checkpoint, tmp_path, suffix):
    """Nothing on stderr: TensorFlow's, the converter's and LiteRT's log lines
    are filtered where they are written (export_tflite, run_tflite)."""
    out_file = tmp_path / f"rnn{suffix}"
    code, out, err = run(
        "convert", checkpoint[0], out_file, "--prefix", "rnn", "--verify"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"wrote {out_file}: LSTM(input_size=6, hidden_size=8")
    assert lines[-1].startswith("OK: every tensor within its bound")


def test_to_torch_subprocess_is_quiet(checkpoint, tmp_path, capsys):
    keras_file = tmp_path / "rnn.keras"
    assert cli(capsys, "convert", checkpoint[0], keras_file, "--prefix", "rnn")[0] == 0
    code, out, err = run("to-torch", keras_file, tmp_path / "rnn.pt", "--verify")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        f"wrote {tmp_path / 'rnn.pt'}: state_dict of torch.nn.LSTM(input_size=6, "
        "hidden_size=8, bias=True, num_layers=2, batch_first=False, dropout=0.0, "
        "bidirectional=True, proj_size=3)"
    )
    loaded = torch.load(tmp_path / "rnn.pt", weights_only=True)
    want = checkpoint[1].rnn.state_dict()
    assert list(loaded) == list(want)
    assert all(torch.equal(loaded[k], v) for k, v in want.items())


# -- in-process --------------------------------------------------------------------


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert out.startswith("usage: tflstm-convert")
    assert (
        "convert convert one recurrent module of a checkpoint to a .keras file, a "
        "SavedModel or a .tflite model" in out
    )
    for text in ("list", "to-torch", "keras ", "savedmodel ", "tflite "):
        assert text in out
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "{keras,savedmodel,tflite}" in out
    assert "--prefix" in out and "--verify" in out and "--trust-pickle" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"tflstm-convert {converters.cli.__version__}\n"


def test_list(checkpoint, capsys):
    path, model = checkpoint
    assert cli(capsys, "list", path) == (0, "\n".join(_listing(model)) + "\n", "")


def test_list_root_cell_and_sharded(tmp_path, capsys):
    cell = torch.nn.LSTMCell(3, 2)
    path = tmp_path / "cell_weights"  # no extension
    safetensors.torch.save_file(cell.state_dict(), path)
    assert cli(capsys, "list", path) == (
        0,
        "(root): nn.LSTMCell(input_size=3, hidden_size=2, bias=True)  [56 parameters]\n",
        "",
    )
    lstm = torch.nn.LSTM(3, 2)
    for i, (key, value) in enumerate(lstm.state_dict().items()):
        safetensors.torch.save_file(
            {f"lstm.{key}": value}, tmp_path / f"s{i}.safetensors"
        )
    index = {f"lstm.{k}": f"s{i}.safetensors" for i, k in enumerate(lstm.state_dict())}
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": index})
    )
    code, out, _ = cli(capsys, "list", tmp_path)
    assert code == 0
    assert out.splitlines()[0] == (
        "lstm: nn.LSTM(input_size=3, hidden_size=2, bias=True, num_layers=1, "
        "bidirectional=False, proj_size=0)  [56 parameters]"
    )


def test_list_without_lstm_says_what_the_file_holds(tmp_path, capsys):
    path = tmp_path / "classifier.pt"
    model = torch.nn.Sequential(*(torch.nn.Linear(2, 2) for _ in range(4)))
    torch.save(model.state_dict(), path)
    assert cli(capsys, "list", path) == (
        2,
        "",
        f"tflstm-convert list: error: no parameters of an nn.LSTM, nn.GRU, nn.RNN or their cells found in "
        f"'{path}': it holds 8 tensors: 0.weight (2, 2), 0.bias (2,), 1.weight (2, 2), "
        "1.bias (2,), 2.weight (2, 2), ... (3 more)\n",
    )
    torch.save({"epoch": 3}, path)
    assert cli(capsys, "list", path)[2] == (
        "tflstm-convert list: error: no parameters of an nn.LSTM, nn.GRU, nn.RNN or their cells found in "
        f"'{path}': it holds no tensors\n"
    )


class WholeModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 3, batch_first=True)


def test_whole_model_pickle_needs_trust_pickle(tmp_path, capsys, monkeypatch):
    path = tmp_path / "whole.pt"
    torch.save(WholeModel(), path)
    code, out, err = cli(capsys, "list", path)
    assert (code, out) == (2, "")
    assert err.startswith(f"tflstm-convert list: error: Cannot read '{path}'")
    assert "torch.save(model.state_dict(), path)" in err
    assert err.endswith("pass trust_pickle=True (tflstm-convert: --trust-pickle).\n")
    monkeypatch.setattr(sys, "path", list(sys.path))  # --trust-pickle adds the cwd
    code, out, err = cli(capsys, "list", path, "--trust-pickle")
    assert code == 0
    # A whole model records batch_first: no note that it is not recorded.
    assert out.splitlines() == [
        "rnn: nn.LSTM(input_size=4, hidden_size=3, bias=True, num_layers=1, "
        "bidirectional=False, proj_size=0)  [108 parameters]  recorded: "
        "batch_first=True, dropout=0.0"
    ]
    assert err == (
        "tflstm-convert list: warning: --trust-pickle: torch files are unpickled "
        "without weights_only, which runs any code they name; use it only for files "
        "you trust\n"
    )


def test_convert_verify_and_back(checkpoint, tmp_path, capsys):
    path, model = checkpoint
    keras_file = tmp_path / "rnn.keras"
    code, out, err = cli(
        capsys, "convert", path, keras_file, "--prefix", "rnn", "--verify"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == [
        f"wrote {keras_file}: LSTM(input_size=6, hidden_size=8, bias=True, num_layers=2, batch_first=False, dropout=0.0, bidirectional=True, proj_size=3)",
        NOTE,
        "note: load it with `import tflstm` first (which registers the layer with "
        f"Keras), then keras.saving.load_model('{keras_file}')",
    ]
    assert lines[3] == (
        "verifying on a random input, standard normal (pass --inputs "
        "FILE.npy|.npz to verify on your own): shape (20, 1, 6)"
    )
    assert [line.split()[0] for line in lines[4:]] == [
        "tensor",
        "output",
        "h_n",
        "c_n",
        "rule:",
        "OK:",
    ]
    assert lines[-2] == RULE
    code, out, _ = cli(
        capsys, "to-torch", keras_file, tmp_path / "rnn.safetensors", "--verify"
    )
    assert code == 0
    assert out.splitlines()[-1].startswith("OK: every tensor within its bound")
    # What was written loads strictly into torch and equals the original.
    state_dict = converters.load_checkpoint(tmp_path / "rnn.safetensors")
    module = torch.nn.LSTM(6, 8, 2, bidirectional=True, proj_size=3)
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True
    )
    for key, value in model.rnn.state_dict().items():
        assert np.array_equal(state_dict[key], value.numpy())


def test_convert_cell_with_trailing_dot(checkpoint, tmp_path, capsys):
    code, out, _ = cli(
        capsys,
        "convert",
        checkpoint[0],
        tmp_path / "cell.keras",
        "--prefix",
        "cell.",
        "--verify",
    )
    assert code == 0
    assert out.startswith(
        f"wrote {tmp_path / 'cell.keras'}: LSTMCell(input_size=6, hidden_size=4, bias=True)\n"
    )
    assert NOTE not in out  # a cell has no batch_first
    assert [line.split()[0] for line in out.splitlines()[-5:]] == [
        "tensor",
        "h_1",
        "c_1",
        "rule:",
        "OK:",
    ]


def test_verify_failure_exits_1(checkpoint, tmp_path, capsys):
    code, _, err = cli(
        capsys,
        "convert",
        checkpoint[0],
        tmp_path / "rnn.keras",
        "--prefix",
        "rnn",
        "--verify",
        "--atol",
        "1e-30",
    )
    assert code == 1
    lines = err.splitlines()
    for line, name in zip(lines, ("output", "h_n", "c_n"), strict=False):
        assert re.fullmatch(
            rf"FAILED: {name}: max abs error \S+ > bound 1.00e-30 \(max rel \S+\)", line
        )
    assert lines[-1] == (
        "the bound: max abs error against torch in float64 <= atol 1e-30. "
        "To judge by another tolerance, pass --atol/--rtol."
    )


def test_usage_errors_exit_2(checkpoint, tmp_path, capsys):
    path = checkpoint[0]
    cases = [
        (
            ["convert", path, tmp_path / "x.keras"],
            f"tflstm-convert convert: error: '{path}' holds 2 recurrent modules; choose one with --prefix. Prefixes: cell, rnn",
        ),
        (
            ["convert", path, tmp_path / "x.keras", "--prefix", "encoder"],
            "tflstm-convert convert: error: No recurrent parameters at prefix 'encoder'. The checkpoint holds recurrent parameters (nn.LSTM, nn.GRU, nn.RNN or their cells) at the prefixes: 'cell', 'rnn'",
        ),
        (
            ["list", tmp_path / "missing.pt"],
            f"tflstm-convert list: error: no such file: '{tmp_path / 'missing.pt'}'",
        ),
        (
            ["convert", path, tmp_path / "x.h5", "--prefix", "rnn"],
            f"tflstm-convert convert: error: expected the output to end in .keras (a Keras model) or .tflite (LiteRT), or to be a folder without a suffix (a SavedModel). Received: '{tmp_path / 'x.h5'}'",
        ),
        (
            [
                "convert",
                path,
                tmp_path / "x.keras",
                "--prefix",
                "rnn",
                "--sequence-lengths",
            ],
            "tflstm-convert convert: error: --sequence-lengths applies to --format savedmodel or tflite (a .keras layer takes sequence_lengths= at call time)",
        ),
    ]
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    cases.append(
        (
            ["list", bad],
            f"tflstm-convert list: error: Cannot read '{bad}' as a checkpoint: expected a torch.save file (zip or legacy), .safetensors, .npz, or the index (or folder) of a sharded checkpoint. Received: a text file starting with 'not a checkpoint'.",
        )
    )
    for args, message in cases:
        assert cli(capsys, *args) == (2, "", message + "\n"), args
    assert not (tmp_path / "x.keras").exists()
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_missing_extras_exit_2_and_name_them(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # not installed
    out_file = tmp_path / "rnn.tflite"
    code, out, err = cli(
        capsys,
        "convert",
        checkpoint[0],
        out_file,
        "--prefix",
        "rnn",
        "--format",
        "tflite",
        "--verify",
    )
    assert (code, out) == (2, "")
    assert err == (
        "tflstm-convert convert: error: --verify of a .tflite needs ai-edge-litert, "
        'which is not installed. Install it with: pip install "tflstm[litert]"\n'
    )
    assert not out_file.exists()  # refused before any work
    monkeypatch.setitem(sys.modules, "torch", None)
    code, _, err = cli(capsys, "list", checkpoint[0])
    assert code == 2
    assert err.startswith(
        f"tflstm-convert list: error: Reading '{checkpoint[0]}' (a torch.save file) "
        'needs torch, which is not installed. Install it with: pip install "tflstm[torch]"'
    )


def test_convert_to_saved_model(checkpoint, tmp_path, capsys):
    code, out, err = cli(
        capsys,
        "convert",
        checkpoint[0],
        tmp_path / "served",
        "--prefix",
        "rnn",
        "--format",
        "savedmodel",
        "--verify",
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("OK: every tensor within its bound")
    assert (tmp_path / "served" / "saved_model.pb").is_file()


def test_convert_to_tflite(checkpoint, tmp_path, capsys):
    code, out, err = cli(
        capsys,
        "convert",
        checkpoint[0],
        tmp_path / "rnn.tflite",
        "--prefix",
        "rnn",
        "--format",
        "tflite",
        "--batch-size",
        "2",
        "--verify",
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("OK: every tensor within its bound")
    from tflstm.tflite import tflite_ops

    assert set(tflite_ops((tmp_path / "rnn.tflite").read_bytes())) <= {
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "REVERSE_V2",
        "CONCATENATION",
    }


# -- --quantize ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def quantizable(tmp_path_factory):
    """An LSTM whose gate matrices have the 1,024 weights that the converter
    quantizes, and its float .tflite size."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(16, 64, bidirectional=True, proj_size=16)
    path = tmp_path_factory.mktemp("quantize") / "lstm.pt"
    torch.save(module.state_dict(), path)
    float_file = path.with_name("float.tflite")
    assert main(["convert", str(path), str(float_file), "--format", "tflite"]) == 0
    return path, float_file.stat().st_size


@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_convert_to_tflite_quantized(quantizable, tmp_path, capsys, quantize):
    """--verify checks the error relative to each tensor's scale against the
    mode's tolerance, which it prints; int8 calibrates on the given file, and
    both modes verify on its first input."""
    from tflstm.tflite import QUANTIZED_RTOL

    path, float_size = quantizable
    out_file = tmp_path / "lstm.tflite"
    args = ["convert", path, out_file, "--format", "tflite", "--quantize", quantize]
    args += ["--batch-size", "2", "--verify"]
    rng = np.random.default_rng(0)
    data = tmp_path / "features.npz"
    np.savez(
        data,
        a=rng.standard_normal((2, 30, 4, 16)),
        b=rng.standard_normal((9, 2, 16)),
    )
    args += ["--representative-data", data]
    code, out, err = cli(capsys, *args)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    tolerance = (
        f"quantize={quantize}: tolerance {QUANTIZED_RTOL[quantize]:.0e} of each "
        "tensor's largest magnitude (max rel)"
    )
    assert tolerance in lines
    assert f"verifying on the first input of {data}: shape (30, 2, 16)" in lines
    assert [line.split()[0] for line in lines[-6:]] == [
        "tensor",
        "output",
        "h_n",
        "c_n",
        "rule:",
        "OK:",
    ]
    rtol = QUANTIZED_RTOL[quantize]
    assert lines[-2] == (
        "rule: max abs error against torch in float64 <= rtol "
        f"{rtol:.0e} x the tensor's largest magnitude"
    )
    assert lines[-1].startswith("OK: every tensor within its bound")
    assert out_file.stat().st_size < 0.4 * float_size


def test_int8_without_data_warns_and_sequence_lengths_drop_c_n(
    quantizable, tmp_path, capsys
):
    path, _ = quantizable
    args = ["convert", path, tmp_path / "lstm.tflite", "--format", "tflite"]
    args += [
        "--quantize",
        "int8",
        "--sequence-lengths",
        "--batch-size",
        "2",
        "--verify",
    ]
    code, out, err = cli(capsys, *args)
    assert code == 0
    assert err.startswith(
        "tflstm-convert convert: WARNING: --quantize int8 without "
        "--representative-data: calibrating on random standard-normal inputs."
    )
    lines = out.splitlines()
    assert (
        "verifying on the first input of the random calibration inputs: shape (50, 2, 16)"
        in lines
    )
    assert (
        "c_n: not produced by an int8 model with sequence lengths (see tflstm.tflite)"
        in lines
    )
    assert [line.split()[0] for line in lines[-5:]] == [
        "tensor",
        "output",
        "h_n",
        "rule:",
        "OK:",
    ]


def test_quantize_usage_errors_exit_2(quantizable, tmp_path, capsys):
    path, _ = quantizable
    out_file = tmp_path / "lstm.tflite"
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((3, 16)))
    text = tmp_path / "features.txt"
    text.write_text("1 2 3")
    tflite = ["convert", path, out_file, "--format", "tflite"]
    cases = [
        (
            ["convert", path, tmp_path / "x.keras", "--quantize", "dynamic"],
            "--quantize applies to --format tflite",
        ),
        (
            [*tflite, "--quantize", "float16", "--representative-data", flat],
            "--representative-data applies to --quantize int8 or dynamic (int8 calibrates the activations' ranges on it, both check the cell state's range on it, and --verify runs on it)",
        ),
        (
            [*tflite, "--quantize", "int8", "--representative-data", text],
            f"expected --representative-data to be a .npy or .npz file. Received: '{text}'",
        ),
        (
            [
                *tflite,
                "--quantize",
                "int8",
                "--representative-data",
                tmp_path / "no.npy",
            ],
            f"no such file: '{tmp_path / 'no.npy'}'",
        ),
        (
            [*tflite, "--quantize", "int8", "--representative-data", flat],
            f"expected the arrays of '{flat}' to be inputs (L, N, H_in) with H_in=16 (3-D: one input; 4-D: a stack of them). Received: an array of shape (3, 16)",
        ),
    ]
    for args, message in cases:
        code, out, err = cli(capsys, *args)
        assert (code, out, err) == (
            2,
            "",
            f"tflstm-convert convert: error: {message}\n",
        )
    assert not out_file.exists() and not (tmp_path / "x.keras").exists()


# -- --verify on a checkpoint shaped like a real one ------------------------------


@pytest.fixture(scope="module")
def real_shaped(tmp_path_factory):
    """A 2-layer LSTM shaped like a trained speech encoder: weight_ih_l0 with
    heavy tails (median |w| 0.16, a few weights up to 61, as Resemblyzer's),
    cell states of 20-60 on inputs in [0, 1]; saved batch-first with inputs."""
    rng = np.random.default_rng(1)
    module = torch.nn.LSTM(40, 64, num_layers=2, batch_first=True)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "weight_ih_l0":
                w = np.clip(0.16 * rng.standard_t(1.3, size=p.shape), -61, 61)
            else:
                w = rng.normal(0, 0.25, size=p.shape)
            p.copy_(torch.from_numpy(w))
    folder = tmp_path_factory.mktemp("real_shaped")
    torch.save(module.state_dict(), folder / "encoder.pt")
    np.save(folder / "frames.npy", rng.uniform(0, 1, (3, 160, 40)))
    return folder, module


def _table(out):
    """The rows of --verify's table: {tensor: (max abs, torch f32, bound)}."""
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("output", "h_n", "c_n") and len(parts) >= 5:
            rows[parts[0]] = (float(parts[1]), float(parts[3]), float(parts[4]))
    return rows


@pytest.mark.parametrize("suffix", [".keras", ".tflite"])
def test_verify_passes_an_exact_port_whatever_its_states(
    real_shaped, tmp_path, capsys, suffix
):
    """torch's own float32 error on c_n is above 1e-5 here (the fixed
    tolerance that --verify used to apply): the rule passes the port, as
    exact as torch, and a fixed --atol 1e-5 fails it, naming the options."""
    folder, _ = real_shaped
    out_file = tmp_path / f"encoder{suffix}"
    args = ["convert", folder / "encoder.pt", out_file, "--batch-first", "--verify"]
    args += ["--inputs", folder / "frames.npy"]
    code, out, err = cli(capsys, *args)
    assert (code, err) == (0, "")
    # A .tflite model has a batch size (--batch-size, 1): the input is cut.
    runs = "3 input(s)" if suffix == ".tflite" else "1 input(s)"
    batch = 1 if suffix == ".tflite" else 3
    assert (
        f"verifying on {runs} of {folder / 'frames.npy'}: shape ({batch}, 160, 40)"
        in out
    )
    rows = _table(out)
    assert rows["c_n"][1] > 1e-5  # torch's own float32 error
    assert all(error <= bound for error, _, bound in rows.values())
    assert out.splitlines()[-2] == RULE
    code, out, err = cli(capsys, *args, "--atol", "1e-5")
    assert code == 1
    assert "FAILED: c_n: max abs error" in err
    assert err.splitlines()[-1] == (
        "the bound: max abs error against torch in float64 <= atol 1e-05. "
        "To judge by another tolerance, pass --atol/--rtol."
    )


def test_verify_fails_a_port_with_one_weight_off(
    real_shaped, tmp_path, capsys, monkeypatch
):
    """One weight of the written model off by 1e-3 (of weights up to 61):
    --verify fails, and says what the rule is and how to replace it."""
    folder, _ = real_shaped
    from_torch = converters.from_torch

    def perturbed(*args, **kwargs):
        layer = from_torch(*args, **kwargs)
        weight = layer.weight_hh_l1.numpy()
        weight[5, 7] += 1e-3
        layer.weight_hh_l1.assign(weight)
        return layer

    monkeypatch.setattr(converters, "from_torch", perturbed)
    code, out, err = cli(
        capsys,
        "convert",
        folder / "encoder.pt",
        tmp_path / "encoder.keras",
        "--batch-first",
        "--verify",
        "--inputs",
        folder / "frames.npy",
    )
    assert code == 1
    assert re.search(r"^FAILED: output: max abs error \S+ > bound \S+", err, re.M)
    assert err.splitlines()[-1] == (
        "the written model differs from torch by more than float32 rounding "
        "explains (the rule above). To judge by a fixed tolerance instead, pass "
        "--atol and/or --rtol."
    )
    assert out.splitlines()[-1] == RULE


# -- output names and folders ------------------------------------------------------


def test_format_follows_the_output_name(checkpoint, tmp_path, capsys):
    path = checkpoint[0]
    out_file = tmp_path / "new" / "folder" / "rnn.tflite"  # created
    code, out, err = cli(capsys, "convert", path, out_file, "--prefix", "rnn")
    assert (code, err) == (0, "")
    assert out.startswith(f"wrote {out_file}: LSTM(")
    assert out_file.read_bytes()[4:8] == b"TFL3"
    served = tmp_path / "more" / "served"
    assert cli(capsys, "convert", path, served, "--prefix", "cell")[0] == 0
    assert (served / "saved_model.pb").is_file()
    state_dict = tmp_path / "back" / "rnn.npz"
    keras_file = tmp_path / "rnn.keras"
    assert cli(capsys, "convert", path, keras_file, "--prefix", "rnn")[0] == 0
    assert cli(capsys, "to-torch", keras_file, state_dict, "--format", "npz")[0] == 0
    assert set(np.load(state_dict)) == set(checkpoint[1].rnn.state_dict())


def test_output_names_that_contradict_or_cannot_be_written(
    checkpoint, tmp_path, capsys
):
    path = checkpoint[0]
    blocker = tmp_path / "file"
    blocker.write_text("")
    keras_file = tmp_path / "rnn.keras"
    assert cli(capsys, "convert", path, keras_file, "--prefix", "rnn")[0] == 0
    cases = [
        (
            ["convert", path, tmp_path / "out.keras", "--format", "tflite"],
            f"--format tflite writes a .tflite file, but the output '{tmp_path / 'out.keras'}' names a .keras file: name it '{tmp_path / 'out.tflite'}', or leave --format out (the format follows the name)",
        ),
        (
            ["convert", path, tmp_path / "served", "--format", "keras"],
            f"--format keras writes a .keras file, but the output '{tmp_path / 'served'}' names a SavedModel folder (a name without a suffix): name it '{tmp_path / 'served.keras'}', or leave --format out (the format follows the name)",
        ),
        (
            ["convert", path, blocker / "rnn.keras", "--prefix", "rnn"],
            f"expected the output's parent '{blocker}' to be a folder. Received: a file",
        ),
        (
            [
                "convert",
                path,
                tmp_path / "x.keras",
                "--prefix",
                "rnn",
                "--inputs",
                blocker,
            ],
            "--inputs applies to --verify",
        ),
        (
            ["convert", path, tmp_path / "x.keras", "--verify", "--atol", "-1"],
            "expected --atol to be a number >= 0. Received: -1.0",
        ),
    ]
    for args, message in cases:
        assert cli(capsys, *args) == (
            2,
            "",
            f"tflstm-convert convert: error: {message}\n",
        )
    for args, message in [
        (
            ["to-torch", keras_file, tmp_path / "x.h5"],
            f"expected the output to end in .pt, .pth, .bin, .ckpt (torch), .safetensors or .npz. Received: '{tmp_path / 'x.h5'}'",
        ),
        (
            ["to-torch", keras_file, tmp_path / "x.pt", "--format", "safetensors"],
            f"--format safetensors writes a .safetensors file, but the output '{tmp_path / 'x.pt'}' names a torch file: name it '{tmp_path / 'x.safetensors'}', or leave --format out (the format follows the name)",
        ),
    ]:
        assert cli(capsys, *args) == (
            2,
            "",
            f"tflstm-convert to-torch: error: {message}\n",
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "rnn.keras"]


def test_inputs_are_checked_before_any_work(checkpoint, tmp_path, capsys):
    path = checkpoint[0]
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 2, 7)))  # H_in is 6
    nan = tmp_path / "nan.npz"
    np.savez(nan, a=np.full((5, 2, 6), np.nan))
    out_file = tmp_path / "rnn.keras"
    base = ["convert", path, out_file, "--prefix", "rnn", "--verify", "--inputs"]
    for args, message in [
        (
            [*base, wrong],
            f"expected the arrays of '{wrong}' to be inputs (L, N, H_in) with H_in=6 (3-D: one input; 4-D: a stack of them). Received: an array of shape (5, 2, 7)",
        ),
        (
            [*base, nan],
            f"expected the arrays of '{nan}' to hold finite numbers. Received: an array of dtype float64 with other values",
        ),
    ]:
        assert cli(capsys, *args) == (
            2,
            "",
            f"tflstm-convert convert: error: {message}\n",
        )
    assert not out_file.exists()


def test_help_shows_each_example_on_its_own_lines(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert (
        "  tflstm-convert convert model.pt encoder.tflite --prefix encoder.rnn \\\n"
        "      --verify --inputs features.npy\n"
    ) in out


def test_cell_verifies_on_its_own_inputs(checkpoint, tmp_path, capsys):
    """An LSTMCell's inputs are (N, H_in): --inputs and the quantization data
    are cut along their axis 0 into the model's batch."""
    data = tmp_path / "steps.npy"
    np.save(data, np.random.default_rng(0).standard_normal((3, 4, 6)))
    out_file = tmp_path / "cell.tflite"
    base = ["convert", checkpoint[0], out_file, "--prefix", "cell", "--verify"]
    for extra, line in (
        (
            ["--inputs", data, "--batch-size", "2"],
            f"6 input(s) of {data}: shape (2, 6)",
        ),
        (
            ["--quantize", "dynamic", "--representative-data", data],
            f"the first input of {data}: shape (1, 6)",
        ),
    ):
        code, out, err = cli(capsys, *base, *extra)
        assert (code, err) == (0, "")
        assert f"verifying on {line}" in out
        assert out.splitlines()[-1].startswith("OK: every tensor within its bound")


def test_quantized_verify_says_why_it_fails_and_float16_passes(
    real_shaped, tmp_path, capsys
):
    """A long memory (cell states of 20-60): the export warns that "dynamic"
    will miss its tolerance, --verify fails and says why; "float16" passes."""
    folder, _ = real_shaped
    base = ["convert", folder / "encoder.pt", tmp_path / "encoder.tflite"]
    base += ["--batch-first", "--verify", "--inputs", folder / "frames.npy"]
    code, out, err = cli(capsys, *base, "--quantize", "dynamic")
    assert code == 1
    long_memory = (
        "quantize='dynamic' is likely to miss its tolerance (QUANTIZED_RTOL=0.02): "
        "the cell state reaches |c| = "
    )
    assert err.startswith(f"tflstm-convert convert: warning: {long_memory}")
    assert f"why: {long_memory}" in err
    assert re.search(r"^FAILED: output: max abs error \S+ > bound \S+", err, re.M)
    assert err.splitlines()[-1].startswith("the bound: max abs error against torch")
    code, out, err = cli(capsys, *base, "--quantize", "float16")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("OK: every tensor within its bound")
