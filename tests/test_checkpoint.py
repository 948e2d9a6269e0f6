"""Real checkpoint files: torch.save, safetensors, npz; nested, prefixed,
half precision, LSTMCell, several LSTMs; and files that must be refused."""

import os
import re

import numpy as np
import pytest
import safetensors.torch
import torch
from oracle import ATOL

import converters
import tflstm


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(17, 6)
        self.encoder = torch.nn.Module()
        self.encoder.rnn = torch.nn.LSTM(6, 8, 2, bidirectional=True, proj_size=3)
        self.decoder = torch.nn.LSTM(6, 5, batch_first=True)
        self.cell = torch.nn.LSTMCell(5, 4, bias=False)
        self.head = torch.nn.Linear(6, 2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Tagger()


def _assert_ports(model, state_dict_or_path, cast=torch.float32):
    """Every LSTM in the file converts and matches torch on the same weights."""
    specs = converters.find_lstms(converters.load_checkpoint(state_dict_or_path))
    assert [(s.prefix, s.kind) for s in specs] == [
        ("cell.", "LSTMCell"),
        ("decoder.", "LSTM"),
        ("encoder.rnn.", "LSTM"),
    ]
    for spec in specs:
        layer = converters.from_torch(state_dict_or_path, prefix=spec.prefix)
        module = model.get_submodule(spec.prefix.rstrip("."))
        reference = type(module)(**converters.torch_config(layer))
        reference.load_state_dict(
            {k: v.to(cast).float() for k, v in module.state_dict().items()}
        )
        report = converters.compare(layer, reference)
        assert max(a for a, _ in report.values()) <= ATOL["float32"], spec.prefix


def test_whole_model_state_dict(model, tmp_path):
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    _assert_ports(model, path)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd},
        lambda sd: {
            "model_state": sd,
            "optimizer_state": {
                "state": {0: {"exp_avg": torch.zeros(3)}},
                "param_groups": [{"lr": 0.1}],
            },
            "epoch": 3,
        },
        lambda sd: {"checkpoint": {"model": sd, "step": 10}},
    ],
    ids=["state_dict", "model_state+optimizer", "deeper"],
)
def test_nested_containers(model, tmp_path, wrap):
    path = tmp_path / "model.pth"
    torch.save(wrap(model.state_dict()), path)
    state_dict = converters.load_checkpoint(path)
    if "checkpoint.model.head.weight" in state_dict:  # unknown wrapper: flattened
        assert converters.find_lstms(state_dict)[0].prefix == "checkpoint.model.cell."
    else:
        _assert_ports(model, path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_half_precision(model, tmp_path, dtype, suffix):
    half = {k: v.to(dtype) for k, v in model.state_dict().items()}
    path = tmp_path / f"model{suffix}"
    if suffix == ".pt":
        torch.save(half, path)
    else:
        safetensors.torch.save_file(half, path)
    loaded = converters.load_checkpoint(path)
    want = np.float16 if dtype == torch.float16 else np.float32  # bf16 widened
    assert loaded["encoder.rnn.weight_ih_l0"].dtype == want
    for key, value in half.items():
        assert np.array_equal(loaded[key].astype("float64"), value.double().numpy()), (
            key
        )
    _assert_ports(model, path, cast=dtype)
    assert converters.from_torch(path, prefix="decoder").compute_dtype == "float32"


def test_safetensors_and_npz(model, tmp_path):
    st = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), st)
    _assert_ports(model, st)
    npz = tmp_path / "model.npz"
    np.savez(npz, **{k: v.numpy() for k, v in model.state_dict().items()})
    _assert_ports(model, npz)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pt"])
def test_save_state_dict_round_trip(tmp_path, suffix):
    layer = tflstm.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=2, seed=0)
    path = tmp_path / f"lstm{suffix}"
    converters.save_state_dict(converters.to_torch(layer), path)
    if suffix == ".safetensors":  # readable by the reference implementation
        loaded = {k: v.numpy() for k, v in safetensors.torch.load_file(path).items()}
    elif suffix == ".pt":
        loaded = {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}
    else:
        loaded = converters.load_checkpoint(path)
    want = converters.to_torch(layer)
    assert list(loaded) == list(want)
    assert all(np.array_equal(loaded[k], v) for k, v in want.items())
    module = torch.nn.LSTM(**converters.torch_config(layer))
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in loaded.items()}, strict=True
    )


def test_legacy_torch_format(model, tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    _assert_ports(model, path)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("place", ["top", "inside state_dict"])
def test_malicious_pickle_is_refused_without_running(model, tmp_path, place):
    marker = tmp_path / "pwned"
    payload = _Payload(marker)
    obj = (
        {"state_dict": model.state_dict(), "extra": payload}
        if place == "top"
        else {**model.state_dict(), "rnn.weight_ih_l0": payload}
    )
    path = tmp_path / "evil.pt"
    torch.save(obj, path)
    with pytest.raises(
        converters.CheckpointError,
        match="it holds objects other than tensors and plain containers, which could run code when loaded; it was not loaded",
    ):
        converters.load_checkpoint(path)
    with pytest.raises(converters.CheckpointError):
        converters.from_torch(path, prefix="encoder.rnn")
    assert not marker.exists()


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.array([_Payload(tmp_path / "pwned")], dtype=object))
    with pytest.raises(converters.CheckpointError, match="holds pickled objects"):
        converters.load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_broken_files_give_clear_errors(model, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(model.state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    st = tmp_path / "good.safetensors"
    safetensors.torch.save_file(model.state_dict(), st)
    st_truncated = tmp_path / "truncated.safetensors"
    st_truncated.write_bytes(st.read_bytes()[:-100])
    st_tiny = tmp_path / "tiny.safetensors"
    st_tiny.write_bytes(b"abc")
    bad_json = tmp_path / "json.safetensors"
    bad_json.write_bytes((5).to_bytes(8, "little") + b"{nope")
    npz = tmp_path / "bad.npz"
    npz.write_bytes(b"PK\x03\x04 broken")
    cases = [
        (
            truncated,
            "Cannot read '{}' as a PyTorch checkpoint: it is truncated, corrupt or not written by torch.save. Received: ",
        ),
        (
            text,
            "Cannot read '{}' as a PyTorch checkpoint: it is truncated, corrupt or not written by torch.save. Received: ",
        ),
        (st_truncated, "Cannot read '{}' as safetensors: tensor"),
        (
            st_tiny,
            "Cannot read '{}' as safetensors: the file has 3 bytes, fewer than its 8-byte header.",
        ),
        (bad_json, "Cannot read '{}' as safetensors: the header is not JSON"),
        (npz, "Cannot read '{}' as a .npz archive of arrays"),
    ]
    for path, message in cases:
        with pytest.raises(
            converters.CheckpointError, match=re.escape(message.format(path))
        ):
            converters.load_checkpoint(path)
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            "Expected a checkpoint file ending in one of .pt, .pth, .bin, .ckpt, .safetensors, .npz. Received: "
        ),
    ):
        converters.load_checkpoint(text.rename(tmp_path / "notes.txt"))
    with pytest.raises(FileNotFoundError, match=re.escape("No checkpoint file at")):
        converters.load_checkpoint(tmp_path / "missing.pt")


def test_non_dict_checkpoint_is_refused(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            "Expected a checkpoint holding a dict of tensors (a state_dict). Received: an object of type Tensor"
        ),
    ):
        converters.load_checkpoint(path)
