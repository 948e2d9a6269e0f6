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


def test_convert_subprocess_is_quiet(checkpoint, tmp_path):
    keras_file = tmp_path / "rnn.keras"
    code, out, err = run(
        "convert", checkpoint[0], keras_file, "--prefix", "rnn", "--verify"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"wrote {keras_file}: LSTM(input_size=6, hidden_size=8")
    assert lines[-1].startswith("OK: max abs error")


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
        "convert convert one LSTM of a checkpoint to a .keras file, a SavedModel "
        "or a .tflite model" in out
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
        f"tflstm-convert list: error: no nn.LSTM or nn.LSTMCell parameters found in "
        f"'{path}': it holds 8 tensors: 0.weight (2, 2), 0.bias (2,), 1.weight (2, 2), "
        "1.bias (2,), 2.weight (2, 2), ... (3 more)\n",
    )
    torch.save({"epoch": 3}, path)
    assert cli(capsys, "list", path)[2] == (
        "tflstm-convert list: error: no nn.LSTM or nn.LSTMCell parameters found in "
        f"'{path}': it holds no tensors\n"
    )


class WholeModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 3)


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
    assert out.splitlines()[0].startswith("rnn: nn.LSTM(input_size=4, hidden_size=3")
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
    assert [line.split()[0] for line in lines[3:]] == [
        "tensor",
        "output",
        "h_n",
        "c_n",
        "OK:",
    ]
    code, out, _ = cli(
        capsys, "to-torch", keras_file, tmp_path / "rnn.safetensors", "--verify"
    )
    assert code == 0 and out.splitlines()[-1].startswith("OK: max abs error")
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
    assert [line.split()[0] for line in out.splitlines()[-4:]] == [
        "tensor",
        "h_1",
        "c_1",
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
    assert re.fullmatch(r"FAILED: max abs error \S+ > atol 1e-30\n", err)


def test_usage_errors_exit_2(checkpoint, tmp_path, capsys):
    path = checkpoint[0]
    cases = [
        (
            ["convert", path, tmp_path / "x.keras"],
            f"tflstm-convert convert: error: '{path}' holds 2 LSTMs; choose one with --prefix. Prefixes: cell, rnn",
        ),
        (
            ["convert", path, tmp_path / "x.keras", "--prefix", "encoder"],
            "tflstm-convert convert: error: No LSTM parameters at prefix 'encoder'. The checkpoint holds LSTM parameters at the prefixes: 'cell', 'rnn'",
        ),
        (
            ["list", tmp_path / "missing.pt"],
            f"tflstm-convert list: error: no such file: '{tmp_path / 'missing.pt'}'",
        ),
        (
            ["convert", path, tmp_path / "x.h5", "--prefix", "rnn"],
            f"tflstm-convert convert: error: expected an output file ending in .keras, got '{tmp_path / 'x.h5'}'",
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
    assert out.splitlines()[-1].startswith("OK: max abs error")
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
    assert out.splitlines()[-1].startswith("OK: max abs error")
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
    mode's tolerance, which it prints; int8 calibrates on the given file and
    verifies on its first input."""
    from tflstm.tflite import QUANTIZED_RTOL

    path, float_size = quantizable
    out_file = tmp_path / "lstm.tflite"
    args = ["convert", path, out_file, "--format", "tflite", "--quantize", quantize]
    args += ["--batch-size", "2", "--verify"]
    if quantize == "int8":
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
    if quantize == "int8":
        assert f"verifying on the first input of {data}: shape (30, 2, 16)" in lines
    assert [line.split()[0] for line in lines[-5:]] == [
        "tensor",
        "output",
        "h_n",
        "c_n",
        "OK:",
    ]
    assert re.fullmatch(r"OK: max rel error \S+ <= rtol \S+", lines[-1])
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
    assert [line.split()[0] for line in lines[-4:]] == [
        "tensor",
        "output",
        "h_n",
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
            [*tflite, "--quantize", "dynamic", "--representative-data", flat],
            "--representative-data applies to --quantize int8 (it calibrates the activations' ranges)",
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
            f"expected the arrays of '{flat}' to be 3-D (one input) or 4-D (a stack of inputs). Received: an array of shape (3, 16)",
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
