"""The converters and the CLI on GRUs and RNNs: discovery tells a GRU, an RNN
and an LSTM apart by their shapes, every source and format, round trips
bit-exact, an RNN's nonlinearity (which a state_dict does not record), stock
Keras (`GRU(reset_after=True)`, `SimpleRNN`), and `--verify` judged by the
suite's rule (torch is the oracle throughout)."""

import re

import numpy as np
import pytest
import safetensors.torch
import torch

import converters
import tflstm
from converters.cli import main

# isort: split
import keras


class Model(torch.nn.Module):
    """A speech-like model: an LSTM and a GRU encoder, a GRUCell decoder; a
    relu RNN policy with an RNNCell head."""

    def __init__(self):
        super().__init__()
        self.front = torch.nn.Linear(3, 5)
        self.lstm = torch.nn.LSTM(5, 6, proj_size=2)
        self.enc = torch.nn.GRU(
            5, 6, num_layers=2, bidirectional=True, batch_first=True
        )
        self.dec = torch.nn.GRUCell(12, 6, bias=False)
        self.policy = torch.nn.RNN(5, 4, num_layers=2, nonlinearity="relu")
        self.head = torch.nn.RNNCell(4, 3, nonlinearity="relu")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Model().double()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    """The model's state_dict as torch zip, safetensors and numpy npz."""
    folder = tmp_path_factory.mktemp("gru")
    state = {k: v.float() for k, v in model.state_dict().items()}
    torch.save({"state": state, "step": 3}, folder / "model.pt")
    safetensors.torch.save_file(state, folder / "model.safetensors")
    np.savez(folder / "model.npz", **{k: v.numpy() for k, v in state.items()})
    return folder


EXPECTED = [
    "dec: nn.GRUCell(input_size=12, hidden_size=6, bias=False)",
    "policy: nn.RNN(input_size=5, hidden_size=4, bias=True, num_layers=2, "
    "bidirectional=False)",
    "head: nn.RNNCell(input_size=4, hidden_size=3, bias=True)",
    "lstm: nn.LSTM(input_size=5, hidden_size=6, bias=True, num_layers=1, "
    "bidirectional=False, proj_size=2)",
    "enc: nn.GRU(input_size=5, hidden_size=6, bias=True, num_layers=2, "
    "bidirectional=True)",
]


@pytest.mark.parametrize("suffix", ["pt", "safetensors", "npz"])
def test_discovery_tells_each_module_by_its_shapes(files, suffix):
    specs = converters.find_recurrent(files / f"model.{suffix}")
    described = sorted(s.describe().removeprefix("state.") for s in specs)
    assert described == sorted(EXPECTED)
    kinds = {s.prefix.removeprefix("state."): s.kind for s in specs}
    assert kinds == {
        "dec": "GRUCell",
        "lstm": "LSTM",
        "enc": "GRU",
        "policy": "RNN",
        "head": "RNNCell",
    }


def sourced(model, files, source: str, name: str) -> tuple:
    """The model as `from_torch` takes it from `source`, and the prefix of
    its module `name` there (a file's state_dict sits under "state")."""
    given = {
        "module": model,
        "state_dict": model.state_dict(),
        "numpy": {k: v.numpy() for k, v in model.state_dict().items()},
        "file": files / "model.pt",
    }[source]
    return given, f"state.{name}" if source == "file" else name


@pytest.mark.parametrize("source", ["module", "state_dict", "numpy", "file"])
def test_from_torch_builds_a_gru_and_round_trips_bit_exact(model, files, source):
    given, prefix = sourced(model, files, source, "enc")
    layer = converters.from_torch(given, prefix=prefix)
    assert isinstance(layer, tflstm.GRU)
    assert layer.batch_first is (source == "module")  # a module records it
    assert not hasattr(layer, "weight_hr_l0")
    back = converters.to_torch(layer)
    want = model.enc.state_dict()
    assert list(back) == list(want)
    for name, value in back.items():
        expected = want[name].numpy()
        if source == "file":  # written as float32
            expected = expected.astype("float32")
        np.testing.assert_array_equal(value, expected)


def test_gru_cell_and_torch_module_and_compare(model):
    cell = converters.from_torch(model, prefix="dec")
    assert isinstance(cell, tflstm.GRUCell) and cell.bias is False
    module = converters.to_torch_module(cell)
    assert isinstance(module, torch.nn.GRUCell)
    assert converters.torch_config(cell) == dict(
        input_size=12, hidden_size=6, bias=False
    )
    report = converters.compare(cell, model.dec)
    assert sorted(report) == ["h_1"] and report.ok
    assert report["h_1"].abs <= 1e-10  # float64 on both sides

    gru = converters.from_torch(model, prefix="enc")
    torch_gru = converters.to_torch_module(gru)
    assert isinstance(torch_gru, torch.nn.GRU) and torch_gru.batch_first
    assert converters.torch_config(gru) == dict(
        input_size=5,
        hidden_size=6,
        bias=True,
        num_layers=2,
        batch_first=True,
        dropout=0.0,
        bidirectional=True,
    )
    lengths = converters.random_lengths(20, 3)
    report = converters.compare(gru, model.enc, sequence_lengths=lengths)
    assert sorted(report) == ["h_n", "output"] and report.ok
    assert max(e.abs for e in report.values()) <= 1e-10


def test_compare_fails_a_wrong_gru(model):
    """One weight off by 1e-3 in float32 is far above the rule's bound."""
    gru = converters.from_torch(model, prefix="enc", dtype="float32")
    assert converters.compare(gru, model.enc).ok
    gru.weight_hh_l1_reverse.assign(gru.weight_hh_l1_reverse.numpy() + 1e-3)
    report = converters.compare(gru, model.enc)
    assert not report.ok
    assert report[report.worst].abs > 3 * report[report.worst].bound


def test_gru_errors(model):
    with pytest.raises(ValueError, match=re.escape("do not apply to an nn.GRUCell")):
        converters.from_torch(model, prefix="dec", batch_first=True)
    with pytest.raises(
        TypeError,
        match=re.escape(
            "Expected a tflstm.LSTM, GRU or RNN. Received: an object of type GRUCell"
        ),
    ):
        converters.to_keras(converters.from_torch(model, prefix="dec"))
    state = {k: v for k, v in model.state_dict().items() if k.startswith("enc.")}
    del state["enc.bias_hh_l1"]
    with pytest.raises(ValueError) as info:
        converters.from_torch(state, prefix="enc")
    assert str(info.value) == (
        "The weights do not fit the nn.GRU inferred at prefix 'enc'.\n"
        "Missing keys: bias_hh_l1"
    )


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_lists_and_converts_grus_in_every_format(files, tmp_path, capsys):
    path = files / "model.pt"
    code, out, err = cli(capsys, "list", path)
    assert code == 0 and err == ""
    assert "state.enc: nn.GRU(input_size=5, hidden_size=6" in out
    assert "state.dec: nn.GRUCell(input_size=12, hidden_size=6, bias=False)" in out
    for output in ("enc.keras", "enc_savedmodel", "enc.tflite"):
        code, out, err = cli(
            capsys, "convert", path, tmp_path / output, "--prefix", "state.enc",
            "--batch-first", "--verify",
        )  # fmt: skip
        assert code == 0, (output, out, err)
        assert re.search(r"^output .*\n^h_n ", out, re.M) and "c_n" not in out
        assert "OK: every tensor within its bound" in out
    code, out, err = cli(
        capsys, "convert", path, tmp_path / "packed.tflite", "--prefix", "state.enc",
        "--batch-first", "--sequence-lengths", "--verify",
    )  # fmt: skip
    assert code == 0 and "OK: every tensor within its bound" in out, out + err
    code, out, err = cli(
        capsys, "convert", path, tmp_path / "dec.tflite", "--prefix", "state.dec",
        "--verify",
    )  # fmt: skip
    assert code == 0 and re.search(r"^h_1 ", out, re.M), out + err
    code, out, err = cli(
        capsys, "to-torch", tmp_path / "enc.keras", tmp_path / "back.safetensors",
        "--verify",
    )  # fmt: skip
    assert code == 0 and "state_dict of torch.nn.GRU(" in out, out + err
    back = converters.load_checkpoint(tmp_path / "back.safetensors")
    want = converters.load_checkpoint(path)
    for name, value in back.items():
        np.testing.assert_array_equal(value, want["state.enc." + name])


def test_cli_refuses_int8_for_a_gru(files, tmp_path, capsys):
    code, _, err = cli(
        capsys, "convert", files / "model.pt", tmp_path / "q.tflite", "--prefix",
        "state.enc", "--quantize", "int8",
    )  # fmt: skip
    assert code == 2
    assert err == (
        "tflstm-convert convert: error: --quantize int8 needs an nn.LSTM (TFLite's "
        "fused LSTM op), not an nn.GRU: use --quantize dynamic or float16\n"
    )


# -- stock Keras: keras.layers.GRU(reset_after=True) --------------------------


@pytest.mark.parametrize(
    "config",
    [
        dict(num_layers=1, bias=True, bidirectional=False),
        dict(num_layers=2, bias=True, bidirectional=True, dropout=0.25),
        dict(num_layers=2, bias=False, bidirectional=False),
    ],
    ids=["one", "bidir2-dropout", "no-bias"],
)
def test_keras_gru_round_trip_is_exact_and_matches_torch(config):
    """torch -> tflstm -> keras.layers.GRU computes torch's output; back to
    tflstm, both biases are kept (nothing summed: the map is exact)."""
    torch.manual_seed(1)
    module = torch.nn.GRU(5, 6, batch_first=True, **config)
    layer = converters.from_torch(module)
    model = converters.to_keras(layer)
    grus = [lyr for lyr in model.layers if "gru" in lyr.name or "bidir" in lyr.name]
    assert len(grus) == config["num_layers"]
    x = np.random.default_rng(0).standard_normal((3, 7, 5)).astype("float32")
    with torch.no_grad():  # eval: no dropout, as Keras's call
        want = module.double().eval()(torch.from_numpy(x).double())[0].numpy()
    got = model(x).numpy()
    # float32 Keras against float64 torch: a few float32 ulps of the outputs
    assert np.abs(got - want).max() <= 1e-6
    back = converters.from_keras(model)
    assert isinstance(back, tflstm.GRU)
    assert converters.torch_config(back) == converters.torch_config(layer)
    restored, original = converters.to_torch(back), converters.to_torch(layer)
    assert list(restored) == list(original)
    for name, value in original.items():
        np.testing.assert_array_equal(restored[name], value)


def test_a_naive_keras_gru_copy_is_wrong_and_the_map_is_right():
    """What users report: torch's weights copied into keras.layers.GRU without
    reordering the gates (r, z, n) -> (z, r, h) are far off; `to_keras` is not."""
    torch.manual_seed(2)
    module = torch.nn.GRU(4, 5, batch_first=True)
    x = np.random.default_rng(1).standard_normal((2, 6, 4)).astype("float32")
    with torch.no_grad():
        want = module(torch.from_numpy(x))[0].numpy()
    naive = keras.layers.GRU(5, return_sequences=True, reset_after=True)
    naive(x)
    sd = {k: v.numpy() for k, v in module.state_dict().items()}
    naive.set_weights(
        [
            sd["weight_ih_l0"].T,
            sd["weight_hh_l0"].T,
            np.stack([sd["bias_ih_l0"], sd["bias_hh_l0"]]),
        ]
    )
    assert np.abs(naive(x).numpy() - want).max() > 1e-2
    mapped = converters.to_keras(converters.from_torch(module))
    assert np.abs(mapped(x).numpy() - want).max() <= 1e-6


def test_from_keras_gru_errors():
    x = np.zeros((1, 2, 4), "float32")

    def built(layer):
        layer(x)
        return layer

    with pytest.raises(ValueError) as info:
        converters.from_keras(built(keras.layers.GRU(3, reset_after=False, name="gru")))
    assert str(info.value) == (
        "Expected keras.layers.GRU at position 0 ('gru') with reset_after=True: "
        "torch.nn.GRU applies the reset gate after the recurrent matmul (its bias "
        "included); reset_after=False applies it before, another function. "
        "Received: reset_after=False"
    )
    mixed = keras.Sequential(
        [
            keras.Input((None, 4)),
            keras.layers.GRU(3, return_sequences=True),
            keras.layers.LSTM(3, return_sequences=True),
        ]
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected layers of one kind, as a torch module has. Received: gru, lstm layers"
        ),
    ):
        converters.from_keras(mixed)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "with recurrent_activation='sigmoid', as torch.nn.GRU computes. Received: recurrent_activation='hard_sigmoid'"
        ),
    ):
        converters.from_keras(
            built(keras.layers.GRU(3, recurrent_activation="hard_sigmoid"))
        )


# -- the RNN: its nonlinearity is not in a state_dict ------------------------------


@pytest.mark.parametrize("source", ["module", "state_dict", "numpy", "file"])
def test_from_torch_builds_an_rnn_with_its_nonlinearity(model, files, source):
    """A module records its nonlinearity; a state_dict does not (tanh, torch's
    default, unless `nonlinearity=` says otherwise). Round trips bit-exact."""
    given, prefix = sourced(model, files, source, "policy")
    layer = converters.from_torch(given, prefix=prefix)
    assert isinstance(layer, tflstm.RNN)
    assert layer.nonlinearity == ("relu" if source == "module" else "tanh")
    layer = converters.from_torch(given, prefix=prefix, nonlinearity="relu")
    assert layer.nonlinearity == "relu"
    want = model.policy.state_dict()
    back = converters.to_torch(layer)
    assert list(back) == list(want)
    for name, value in back.items():
        expected = want[name].numpy()
        np.testing.assert_array_equal(value, expected.astype(value.dtype))
    assert converters.compare(layer, model.policy).ok


def test_rnn_cell_module_config_and_compare(model):
    cell = converters.from_torch(model, prefix="head")
    assert isinstance(cell, tflstm.RNNCell) and cell.nonlinearity == "relu"
    assert converters.torch_config(cell) == dict(
        input_size=4, hidden_size=3, bias=True, nonlinearity="relu"
    )
    module = converters.to_torch_module(cell)
    assert isinstance(module, torch.nn.RNNCell) and module.nonlinearity == "relu"
    report = converters.compare(cell, model.head)
    assert sorted(report) == ["h_1"] and report[report.worst].abs <= 1e-10

    rnn = converters.from_torch(model, prefix="policy")
    torch_rnn = converters.to_torch_module(rnn)
    assert isinstance(torch_rnn, torch.nn.RNN) and torch_rnn.nonlinearity == "relu"
    lengths = converters.random_lengths(20, 3)
    report = converters.compare(rnn, model.policy, sequence_lengths=lengths)
    assert sorted(report) == ["h_n", "output"] and report.ok
    assert max(e.abs for e in report.values()) <= 1e-10


def test_the_wrong_nonlinearity_is_caught_by_compare(model):
    """What the CLI's note is about: the same weights with tanh are another
    function, which `compare` against the relu module shows."""
    state = {k: v for k, v in model.state_dict().items() if k.startswith("policy.")}
    wrong = converters.from_torch(state, prefix="policy")
    assert wrong.nonlinearity == "tanh"
    assert not converters.compare(wrong, model.policy).ok
    reference = converters.torch_module_from(state, "policy", nonlinearity="relu")
    assert reference.nonlinearity == "relu"


def test_nonlinearity_errors(model):
    with pytest.raises(ValueError) as info:
        converters.from_torch(model, prefix="enc", nonlinearity="relu")
    assert str(info.value) == (
        "`nonlinearity` applies to an nn.RNN or nn.RNNCell, not to an nn.GRU. "
        "Received: nonlinearity='relu'"
    )
    with pytest.raises(ValueError, match=re.escape("Received: nonlinearity='gelu'")):
        converters.from_torch(model, prefix="policy", nonlinearity="gelu")


def test_cli_converts_rnns_in_every_format(files, tmp_path, capsys):
    """`list` and `convert` say that the nonlinearity is not recorded;
    `--nonlinearity relu` builds torch's model, which `--verify` checks in
    every format; a pickled whole model records it."""
    path = files / "model.pt"
    code, out, err = cli(capsys, "list", path)
    assert code == 0 and err == ""
    assert "note: a state_dict does not record an nn.RNN's nonlinearity" in out
    for output in ("policy.keras", "policy_savedmodel", "policy.tflite"):
        code, out, err = cli(
            capsys, "convert", path, tmp_path / output, "--prefix", "state.policy",
            "--nonlinearity", "relu", "--verify",
        )  # fmt: skip
        assert code == 0, (output, out, err)
        assert "RNN(input_size=5, hidden_size=4" in out and "nonlinearity=relu" in out
        assert "OK: every tensor within its bound" in out
        assert "note: built with nonlinearity='relu'; a state_dict" in out
    code, out, err = cli(
        capsys, "convert", path, tmp_path / "packed.tflite", "--prefix",
        "state.policy", "--nonlinearity", "relu", "--sequence-lengths", "--verify",
    )  # fmt: skip
    assert code == 0 and "OK: every tensor within its bound" in out, out + err
    code, out, err = cli(
        capsys, "convert", path, tmp_path / "head.tflite", "--prefix", "state.head",
        "--nonlinearity", "relu", "--verify",
    )  # fmt: skip
    assert code == 0 and re.search(r"^h_1 ", out, re.M), out + err
    code, out, err = cli(
        capsys, "to-torch", tmp_path / "policy.keras", tmp_path / "back.npz",
        "--verify",
    )  # fmt: skip
    assert code == 0 and "state_dict of torch.nn.RNN(" in out, out + err
    assert "nonlinearity=relu" in out
    code, _, err = cli(
        capsys, "convert", path, tmp_path / "x.keras", "--prefix", "state.enc",
        "--nonlinearity", "relu",
    )  # fmt: skip
    assert code == 2 and "`nonlinearity` applies to an nn.RNN" in err, err
    code, _, err = cli(
        capsys, "convert", path, tmp_path / "q.tflite", "--prefix", "state.policy",
        "--quantize", "int8",
    )  # fmt: skip
    assert code == 2 and "not an nn.RNN" in err, err


def test_cli_reads_the_nonlinearity_of_a_pickled_model(model, tmp_path, capsys):
    path = tmp_path / "whole.pt"
    torch.save(model.policy, path)
    code, out, _ = cli(capsys, "list", path, "--trust-pickle")
    assert (
        code == 0
        and "nonlinearity='relu'" in out
        and "note: a state_dict does not record an nn.RNN" not in out
    )
    code, out, err = cli(
        capsys, "convert", path, tmp_path / "p.keras", "--trust-pickle", "--verify"
    )
    assert (
        code == 0 and "nonlinearity='relu', as the pickled model records" in out + err
    ), out + err


# -- stock Keras: keras.layers.SimpleRNN ---------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        dict(num_layers=1, bias=True, bidirectional=False, nonlinearity="tanh"),
        dict(num_layers=2, bias=True, bidirectional=True, dropout=0.25, nonlinearity="relu"),
        dict(num_layers=2, bias=False, bidirectional=False, nonlinearity="relu"),
    ],
    ids=["tanh", "relu-bidir2-dropout", "relu-no-bias"],
)  # fmt: skip
def test_keras_simple_rnn_round_trip_matches_torch(config):
    """torch -> tflstm -> keras.layers.SimpleRNN(activation=nonlinearity)
    computes torch's output; back, the summed bias sits in `bias_ih` (the
    function is the same, as for the LSTM)."""
    torch.manual_seed(1)
    module = torch.nn.RNN(5, 6, batch_first=True, **config)
    layer = converters.from_torch(module)
    model = converters.to_keras(layer)
    rnns = [lyr for lyr in model.layers if "rnn" in lyr.name or "bidir" in lyr.name]
    assert len(rnns) == config["num_layers"]
    x = np.random.default_rng(0).standard_normal((3, 7, 5)).astype("float32")
    with torch.no_grad():
        want = module.double().eval()(torch.from_numpy(x).double())[0].numpy()
    assert np.abs(model(x).numpy() - want).max() <= 1e-6
    back = converters.from_keras(model)
    assert isinstance(back, tflstm.RNN)
    assert converters.torch_config(back) == converters.torch_config(layer)
    got = back(x)[0].numpy()
    assert np.abs(got - want).max() <= 1e-6
    if config["bias"]:
        assert not back.bias_hh_l0.numpy().any()  # summed into bias_ih


def test_from_keras_simple_rnn_errors():
    x = np.zeros((1, 2, 4), "float32")
    rnn = keras.layers.SimpleRNN(3, activation="sigmoid", name="rnn")
    rnn(x)
    with pytest.raises(ValueError) as info:
        converters.from_keras(rnn)
    assert str(info.value) == (
        "Expected keras.layers.SimpleRNN at position 0 ('rnn') with "
        "activation='tanh' or 'relu', the nonlinearities of torch.nn.RNN. "
        "Received: activation='sigmoid'"
    )
    mixed = keras.Sequential(
        [
            keras.Input((None, 4)),
            keras.layers.SimpleRNN(3, return_sequences=True),
            keras.layers.SimpleRNN(3, activation="relu", return_sequences=True),
        ]
    )
    with pytest.raises(
        ValueError,
        match=re.escape(
            "Expected layers of one kind, as a torch module has. Received: "
            "rnn (relu), rnn (tanh) layers"
        ),
    ):
        converters.from_keras(mixed)
