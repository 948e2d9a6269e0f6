"""Real checkpoint files as users have them: torch.save (zip and legacy),
safetensors, npz and sharded checkpoints, under any file name; nested, prefixed,
half precision, LSTMCell, several LSTMs; whole-model pickles behind an opt-in;
and files that must be refused."""

import json
import os
import re
import subprocess
import sys
import zipfile

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


PREFIXES = [("cell", "LSTMCell"), ("decoder", "LSTM"), ("encoder.rnn", "LSTM")]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Tagger()


def _assert_ports(model, source, cast=torch.float32, trust_pickle=False):
    """Every LSTM in the file is found, converts, and matches torch."""
    specs = converters.find_recurrent(source, trust_pickle=trust_pickle)
    assert [(s.prefix, s.kind) for s in specs] == PREFIXES
    for spec in specs:
        layer = converters.from_torch(
            source, prefix=spec.prefix, trust_pickle=trust_pickle
        )
        module = model.get_submodule(spec.prefix)
        reference = type(module)(**converters.torch_config(layer))
        reference.load_state_dict(
            {k: v.to(cast).float() for k, v in module.state_dict().items()}
        )
        report = converters.compare(layer, reference)
        assert max(e.abs for e in report.values()) <= ATOL["float32"], spec.prefix


def _write(fmt, state_dict, path):
    if fmt == "torch-zip":
        torch.save(state_dict, path)
    elif fmt == "torch-legacy":
        torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        safetensors.torch.save_file(state_dict, path)
    else:
        with open(path, "wb") as f:
            np.savez(f, **{k: v.numpy() for k, v in state_dict.items()})


FORMATS = ["torch-zip", "torch-legacy", "safetensors", "npz"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "name", ["weights", "model.pth.tar", "checkpoint.tar", "model.bin"]
)
def test_format_is_read_from_content_not_name(model, tmp_path, fmt, name):
    path = tmp_path / name
    _write(fmt, model.state_dict(), path)
    assert converters.checkpoint_format(path) == fmt
    loaded = converters.load_checkpoint(path)
    assert sorted(loaded) == sorted(model.state_dict())
    for key, value in model.state_dict().items():
        assert np.array_equal(loaded[key], value.numpy()), key


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_lstm_ports(model, tmp_path, fmt):
    path = tmp_path / "checkpoint"
    _write(fmt, model.state_dict(), path)
    _assert_ports(model, path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_prefix_reads_only_that_module(model, tmp_path, fmt):
    path = tmp_path / "checkpoint"
    _write(fmt, model.state_dict(), path)
    for prefix in ("encoder.rnn", "encoder.rnn.", "encoder"):
        loaded = converters.load_checkpoint(path, prefix=prefix)
        want = [k for k in model.state_dict() if k.startswith("encoder.rnn.")]
        assert sorted(loaded) == sorted(want)
    assert converters.load_checkpoint(path, prefix="enc") == {}
    shapes = converters.read_shapes(path)
    assert {k: i.shape for k, i in shapes.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }
    assert shapes["head.weight"] == converters.TensorInfo((2, 6), "float32")


def test_prefix_that_holds_no_lstm_names_those_that_do(model, tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), path)
    message = "No recurrent parameters at prefix 'encoder'. The checkpoint holds recurrent parameters (nn.LSTM, nn.GRU, nn.RNN or their cells) at the prefixes: 'cell', 'decoder', 'encoder.rnn'"
    with pytest.raises(ValueError, match=re.escape(message)):
        converters.from_torch(path, prefix="encoder")


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
        assert (
            converters.find_recurrent(state_dict)[0].prefix == "checkpoint.model.cell"
        )
    else:
        _assert_ports(model, path)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["torch-zip", "safetensors"])
def test_half_precision(model, tmp_path, dtype, fmt):
    half = {k: v.to(dtype) for k, v in model.state_dict().items()}
    path = tmp_path / "model"
    _write(fmt, half, path)
    loaded = converters.load_checkpoint(path)
    want = np.float16 if dtype == torch.float16 else np.float32  # bf16 widened
    assert loaded["encoder.rnn.weight_ih_l0"].dtype == want
    for key, value in half.items():
        assert np.array_equal(loaded[key].astype("float64"), value.double().numpy()), (
            key
        )
    dtype_name = str(dtype).removeprefix("torch.")
    assert converters.read_shapes(path)["head.bias"].dtype == dtype_name
    _assert_ports(model, path, cast=dtype)
    assert converters.from_torch(path, prefix="decoder").compute_dtype == "float32"


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
        loaded = dict(np.load(path))
    want = converters.to_torch(layer)
    assert sorted(loaded) == sorted(want)
    assert all(np.array_equal(loaded[k], v) for k, v in want.items())
    assert all(
        np.array_equal(a, want[k]) for k, a in converters.load_checkpoint(path).items()
    )
    module = torch.nn.LSTM(**converters.torch_config(layer))
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in loaded.items()}, strict=True
    )


def test_save_state_dict_refuses_unknown_suffix_and_dtype(tmp_path):
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            "Expected an output file ending in .safetensors, .npz, .pt, .pth, .bin or .ckpt. Received: "
        ),
    ):
        converters.save_state_dict({"w": np.zeros(2)}, tmp_path / "w.h5")
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape("Cannot write 'w' to safetensors: expected one of the dtypes"),
    ):
        converters.save_state_dict(
            {"w": np.zeros(2, "complex64")}, tmp_path / "w.safetensors"
        )


# -- sharded checkpoints ------------------------------------------------------------


def _shard(model, folder, fmt):
    """The state_dict in 3 shards, the LSTM `encoder.rnn` split over two."""
    keys = list(model.state_dict())
    shards = [keys[:5], keys[5:21], keys[21:]]
    assert [any(k.startswith("encoder.rnn.") for k in s) for s in shards] == [
        True,
        True,
        False,
    ]
    name = (
        "model-{:05d}-of-00003.safetensors"
        if fmt == "safetensors"
        else ("pytorch_model-{:05d}-of-00003.bin")
    )
    weight_map = {}
    for i, shard_keys in enumerate(shards, 1):
        part = {k: model.state_dict()[k].contiguous() for k in shard_keys}
        _write(
            "safetensors" if fmt == "safetensors" else "torch-zip",
            part,
            folder / name.format(i),
        )
        weight_map.update((k, name.format(i)) for k in shard_keys)
    index = folder / (
        "model.safetensors.index.json"
        if fmt == "safetensors"
        else "pytorch_model.bin.index.json"
    )
    index.write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
    )
    return index, [folder / name.format(i) for i in (1, 2, 3)]


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_sharded_checkpoint(model, tmp_path, fmt):
    index, shards = _shard(model, tmp_path, fmt)
    for source in (index, tmp_path):
        assert converters.checkpoint_format(source) == "sharded"
        _assert_ports(model, source)
        loaded = converters.load_checkpoint(source)
        assert list(loaded) == list(model.state_dict())  # the index's order
    # Only the shards that hold the prefix are opened: the third may be broken.
    shards[2].write_bytes(b"not a shard")
    layer = converters.from_torch(index, prefix="encoder.rnn")
    assert layer.bidirectional and layer.proj_size == 3
    with pytest.raises(converters.CheckpointError, match="as a checkpoint"):
        converters.load_checkpoint(index, prefix="head")


def test_sharded_checkpoint_errors(model, tmp_path):
    index, shards = _shard(model, tmp_path, "safetensors")
    shards[1].unlink()
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            "its index names the shard 'model-00002-of-00003.safetensors', which is not in"
        ),
    ):
        converters.load_checkpoint(index)
    bad_map = tmp_path / "other.index.json"
    bad_map.write_text(json.dumps({"weight_map": {"x.weight": shards[0].name}}))
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            "its index puts keys in 'model-00001-of-00003.safetensors' that the shard does not hold. Received: x.weight"
        ),
    ):
        converters.load_checkpoint(bad_map)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            "expected a sharded checkpoint's index (model.safetensors.index.json, pytorch_model.bin.index.json) or model.safetensors or pytorch_model.bin. Received: a folder holding notes.txt."
        ),
    ):
        converters.load_checkpoint(empty)


def test_folder_with_one_unsharded_file(model, tmp_path):
    safetensors.torch.save_file(model.state_dict(), tmp_path / "model.safetensors")
    _assert_ports(model, tmp_path)


# -- pickles: refused unless trusted ---------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


REFUSAL = (
    "it holds Python objects other than tensors and plain containers (here `{}`), "
    "and unpickling those could run code, so it was not loaded. A whole model "
    "written by torch.save(model) is such a file: re-save its weights where the "
    "model's code is, with torch.save(model.state_dict(), path), or, if you trust "
    "the file, pass trust_pickle=True (tflstm-convert: --trust-pickle)."
)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("place", ["top", "inside state_dict"])
def test_malicious_pickle_never_runs_without_opt_in(model, tmp_path, place, legacy):
    marker = tmp_path / "pwned"
    payload = _Payload(marker)
    obj = (
        {"state_dict": model.state_dict(), "extra": payload}
        if place == "top"
        else {**model.state_dict(), "rnn.weight_ih_l0": payload}
    )
    path = tmp_path / "evil.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    message = f"Cannot read '{path}' as a PyTorch checkpoint: " + REFUSAL.format(
        f"{os.system.__module__}.system"
    )
    for read in (
        converters.load_checkpoint,
        converters.read_shapes,
        converters.find_recurrent,
        lambda p: converters.from_torch(p, prefix="encoder.rnn"),
    ):
        with pytest.raises(converters.CheckpointError) as info:
            read(path)
        assert str(info.value) == message
    assert not marker.exists()
    # The opt-in does run it: the payload is live, so the check above means
    # something.
    with pytest.warns(converters.UnsafePickleWarning):
        converters.read_shapes(path, trust_pickle=True)
    assert marker.exists()


class WholeModel(torch.nn.Module):
    """Saved whole with torch.save(model); importable as `test_checkpoint`."""

    def __init__(self):
        super().__init__()
        self.front = torch.nn.Linear(3, 6)
        self.rnn = torch.nn.LSTM(6, 5, num_layers=2, batch_first=True, dropout=0.25)


def test_whole_model_pickle_needs_trust_pickle(tmp_path):
    torch.manual_seed(0)
    whole = WholeModel()
    path = tmp_path / "whole.pt"
    torch.save(whole, path)
    with pytest.raises(converters.CheckpointError) as info:
        converters.load_checkpoint(path)
    assert str(info.value) == (
        f"Cannot read '{path}' as a PyTorch checkpoint: "
        + REFUSAL.format(f"{WholeModel.__module__}.WholeModel")
    )
    with pytest.warns(
        converters.UnsafePickleWarning,
        match=re.escape(
            f"Unpickling '{path}' with trust_pickle=True: a pickle can run any code it names. Do this only for files you trust."
        ),
    ) as record:
        loaded = converters.load_checkpoint(path, trust_pickle=True)
    assert record[0].filename == __file__  # the warning names the caller's line
    assert list(loaded) == list(whole.state_dict())
    with pytest.warns(converters.UnsafePickleWarning):
        specs = converters.find_recurrent(path, trust_pickle=True)
    assert [s.prefix for s in specs] == ["rnn"]
    with pytest.warns(converters.UnsafePickleWarning):
        # A whole model records what a state_dict does not.
        layer = converters.from_torch(path, prefix="rnn", trust_pickle=True)
    assert (layer.batch_first, layer.dropout) == (True, 0.25)
    report = converters.compare(layer, whole.rnn)
    assert max(e.abs for e in report.values()) <= ATOL["float32"]
    with pytest.warns(converters.UnsafePickleWarning):
        layer = converters.from_torch(
            path, prefix="rnn", batch_first=False, trust_pickle=True
        )
    assert not layer.batch_first  # an explicit value wins


def test_trusted_pickle_of_a_script_class_explains_why_it_fails(tmp_path):
    script = (
        "import sys, torch\n"
        "class M(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.rnn = torch.nn.LSTM(2, 3)\n"
        "torch.save(M(), sys.argv[1])\n"
    )
    path = tmp_path / "script_model.pt"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    with (
        pytest.warns(converters.UnsafePickleWarning),
        pytest.raises(
            converters.CheckpointError,
            match=re.escape(
                "it names a class of the script that saved it (`__main__`), which no other program can import: in that script, save torch.save(model.state_dict(), path) instead. Received: AttributeError: "
            ),
        ),
    ):
        converters.load_checkpoint(path, trust_pickle=True)


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.array([_Payload(tmp_path / "pwned")], dtype=object))
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            "'w.npy' holds pickled objects, which could run code when loaded. Received: dtype object"
        ),
    ):
        converters.load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


# -- files that are not checkpoints -----------------------------------------------

EXPECTED = "expected a torch.save file (zip or legacy), .safetensors, .npz, or the index (or folder) of a sharded checkpoint. Received: "


def test_unknown_files_say_what_they_hold(tmp_path):
    cases = {
        b"": "an empty file",
        b"this is not a checkpoint\nsecond line": "a text file starting with 'this is not a checkpoint'",
        b"\x89HDF\r\n\x1a\n\0\0\0": "an HDF5 file (a Keras .h5 file?)",
        b"\x93NUMPY\x01\x00": "a single .npy array, without names (numpy.savez writes .npz)",
        b"\x80\x04K\x01.": "a Python pickle that torch.save did not write",
        b"\x1f\x8b\x08\x00": "a gzip-compressed file",
        b"\x00\x01\x02\x03\x04\x05\x06\x07\x08": "a binary file starting with the bytes 00 01 02 03 04 05 06 07",
    }
    for i, (content, found) in enumerate(cases.items()):
        path = tmp_path / f"file{i}"
        path.write_bytes(content)
        with pytest.raises(converters.CheckpointError) as info:
            converters.load_checkpoint(path)
        assert str(info.value) == (
            f"Cannot read '{path}' as a checkpoint: {EXPECTED}{found}."
        )
    keras_file = tmp_path / "model.keras"
    with zipfile.ZipFile(keras_file, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", "")
    with pytest.raises(
        converters.CheckpointError,
        match=re.escape(
            f"{EXPECTED}a Keras .keras model (tflstm-convert to-torch reads those)."
        ),
    ):
        converters.load_checkpoint(keras_file)
    with pytest.raises(FileNotFoundError, match=re.escape("No checkpoint file at")):
        converters.load_checkpoint(tmp_path / "missing.pt")


def test_damaged_files_give_clear_errors(model, tmp_path):
    good = tmp_path / "good.pt"
    torch.save(model.state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:300])
    st = tmp_path / "good.safetensors"
    safetensors.torch.save_file(model.state_dict(), st)
    st_truncated = tmp_path / "truncated.safetensors"
    st_truncated.write_bytes(st.read_bytes()[:-100])
    npz = tmp_path / "bad.npz"
    npz.write_bytes(b"PK\x03\x04 broken")
    cases = [
        (
            truncated,
            "Cannot read '{}' as a zip archive: it is truncated or corrupt. Received: BadZipFile: ",
        ),
        (
            st_truncated,
            "Cannot read '{}' as safetensors: it is truncated or corrupt. Received: SafetensorError: ",
        ),
        (
            npz,
            "Cannot read '{}' as a zip archive: it is truncated or corrupt. Received: BadZipFile: ",
        ),
    ]
    for path, message in cases:
        with pytest.raises(
            converters.CheckpointError, match=re.escape(message.format(path))
        ):
            converters.load_checkpoint(path)


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


def test_missing_torch_names_the_extra(model, tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(
        ImportError,
        match=re.escape(
            f"Reading '{path}' (a torch.save file) needs torch, which is not installed. Install it with: pip install \"tflstm[torch]\""
        ),
    ):
        converters.load_checkpoint(path)
    # safetensors and npz need no torch.
    st = tmp_path / "model.safetensors"
    monkeypatch.undo()
    safetensors.torch.save_file(model.state_dict(), st)
    monkeypatch.setitem(sys.modules, "torch", None)
    assert sorted(converters.load_checkpoint(st)) == sorted(model.state_dict())
