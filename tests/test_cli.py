"""tflstm-convert, run as a user runs it: a subprocess, its output and exit code."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import converters

CLI = Path(sys.executable).with_name("tflstm-convert")


def run(*args, check_rc):
    result = subprocess.run(
        [str(CLI), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == check_rc, (result.stdout, result.stderr)
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.front = torch.nn.Linear(3, 6)
    model.rnn = torch.nn.LSTM(6, 8, 2, bidirectional=True, proj_size=3)
    model.cell = torch.nn.LSTMCell(6, 4)
    path = tmp_path_factory.mktemp("cli") / "model.pt"
    torch.save({"model_state": model.state_dict(), "epoch": 1}, path)
    return path, model


def test_help():
    out, _ = run("--help", check_rc=0)
    assert "usage: tflstm-convert" in out
    for command in ("list", "convert", "to-torch"):
        assert command in out
    out, _ = run("convert", "--help", check_rc=0)
    assert "--prefix" in out and "--verify" in out


def test_list(checkpoint):
    path, model = checkpoint
    out, err = run("list", path, check_rc=0)
    n_cell = sum(p.numel() for p in model.cell.parameters())
    n_rnn = sum(p.numel() for p in model.rnn.parameters())
    assert out.splitlines() == [
        f"cell.: nn.LSTMCell(input_size=6, hidden_size=4, bias=True)  [{n_cell:,} parameters]",
        f"rnn.: nn.LSTM(input_size=6, hidden_size=8, bias=True, num_layers=2, bidirectional=True, proj_size=3)  [{n_rnn:,} parameters]",
    ]
    assert err == ""  # no TensorFlow start-up noise


def test_convert_verify_and_back(checkpoint, tmp_path):
    path, model = checkpoint
    keras_file = tmp_path / "rnn.keras"
    out, _ = run("convert", path, keras_file, "--prefix", "rnn", "--verify", check_rc=0)
    assert out.startswith(f"wrote {keras_file}: LSTM(input_size=6, hidden_size=8")
    assert "OK: max abs error" in out
    for name in ("output", "h_n", "c_n"):
        assert name in out
    out, _ = run(
        "to-torch", keras_file, tmp_path / "rnn.safetensors", "--verify", check_rc=0
    )
    assert "OK: max abs error" in out
    # What was written loads strictly into torch and equals the original.
    state_dict = converters.load_checkpoint(tmp_path / "rnn.safetensors")
    module = torch.nn.LSTM(6, 8, 2, bidirectional=True, proj_size=3)
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True
    )
    for key, value in model.rnn.state_dict().items():
        assert np.array_equal(state_dict[key], value.numpy())
    run("to-torch", keras_file, tmp_path / "rnn.pt", check_rc=0)
    loaded = torch.load(tmp_path / "rnn.pt", weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in model.rnn.state_dict().items())


def test_convert_cell(checkpoint, tmp_path):
    out, _ = run(
        "convert",
        checkpoint[0],
        tmp_path / "cell.keras",
        "--prefix",
        "cell.",
        "--verify",
        check_rc=0,
    )
    assert "h_1" in out and "c_1" in out and "OK" in out


def test_verify_failure_exits_1(checkpoint, tmp_path):
    _, err = run(
        "convert",
        checkpoint[0],
        tmp_path / "rnn.keras",
        "--prefix",
        "rnn",
        "--verify",
        "--atol",
        "1e-30",
        check_rc=1,
    )
    assert "FAILED: max abs error" in err and "> atol 1e-30" in err


def test_usage_errors_exit_2(checkpoint, tmp_path):
    path = checkpoint[0]
    _, err = run("convert", path, tmp_path / "x.keras", check_rc=2)
    assert "tflstm-convert convert: error: " in err
    assert "holds 2 LSTMs; choose one with --prefix. Prefixes: 'cell.', 'rnn.'" in err
    _, err = run(
        "convert", path, tmp_path / "x.keras", "--prefix", "encoder", check_rc=2
    )
    assert (
        "No LSTM parameters at prefix 'encoder.'. The checkpoint holds LSTM parameters at the prefixes: 'cell.', 'rnn.'"
        in err
    )
    _, err = run("list", tmp_path / "missing.pt", check_rc=2)
    assert (
        f"tflstm-convert list: error: no such file: '{tmp_path / 'missing.pt'}'" in err
    )
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    _, err = run("list", bad, check_rc=2)
    assert (
        "as a PyTorch checkpoint: it is truncated, corrupt or not written by torch.save"
        in err
    )
    _, err = run("convert", path, tmp_path / "x.h5", "--prefix", "rnn", check_rc=2)
    assert "expected an output file ending in .keras, got" in err
    _, err = run("frobnicate", check_rc=2)
    assert "invalid choice: 'frobnicate'" in err
    assert "Traceback" not in err


def test_convert_to_saved_model(checkpoint, tmp_path):
    out, _ = run(
        "convert",
        checkpoint[0],
        tmp_path / "served",
        "--prefix",
        "rnn",
        "--format",
        "savedmodel",
        "--verify",
        check_rc=0,
    )
    assert "OK: max abs error" in out
    assert (tmp_path / "served" / "saved_model.pb").is_file()


def test_convert_to_tflite(checkpoint, tmp_path):
    out, _ = run(
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
        check_rc=0,
    )
    assert "OK: max abs error" in out
    from tflstm.tflite import tflite_ops

    assert set(tflite_ops((tmp_path / "rnn.tflite").read_bytes())) <= {
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "REVERSE_V2",
        "CONCATENATION",
    }
