"""Damaged checkpoints: every byte-level mutation of a valid file of each format
gives `CheckpointError` or a clean load, never another exception.

Deterministic (seeded) and fast: 200 mutations per format, about 2 s in all.
A wider run of the same mutators (5,000 per format, 2026-11-28) found nothing
either.
"""

import random

import numpy as np
import pytest
import safetensors.torch
import torch

import converters

MUTATIONS = 200


def _truncate(data: bytearray, rng: random.Random) -> bytearray:
    return data[: rng.randrange(len(data))]


def _flip(data: bytearray, rng: random.Random) -> bytearray:
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return data


def _overwrite_header(data: bytearray, rng: random.Random) -> bytearray:
    start, n = rng.randrange(min(len(data), 128)), rng.randint(1, 16)
    data[start : start + n] = rng.randbytes(n)
    return data


def _insert(data: bytearray, rng: random.Random) -> bytearray:
    i = rng.randrange(len(data))
    data[i:i] = rng.randbytes(rng.randint(1, 8))
    return data


def _delete(data: bytearray, rng: random.Random) -> bytearray:
    i = rng.randrange(len(data))
    del data[i : i + rng.randint(1, 8)]
    return data


MUTATORS = [_truncate, _flip, _overwrite_header, _insert, _delete]


def _state_dict():
    torch.manual_seed(0)
    return {
        "rnn.weight_ih_l0": torch.randn(8, 3),
        "rnn.weight_hh_l0": torch.randn(8, 2),
        "rnn.bias_ih_l0": torch.randn(8),
        "rnn.bias_hh_l0": torch.randn(8).to(torch.float16),
        "steps": torch.tensor(3),
    }


def _write(fmt, path):
    state_dict = _state_dict()
    if fmt == "torch-zip":
        torch.save({"state_dict": state_dict, "epoch": 2}, path)
    elif fmt == "torch-legacy":
        torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        bf16 = {**state_dict, "rnn.bias_ih_l0": state_dict["rnn.bias_ih_l0"].bfloat16()}
        safetensors.torch.save_file(bf16, path)
    else:
        with open(path, "wb") as f:
            np.savez(f, **{k: v.numpy() for k, v in state_dict.items()})


@pytest.mark.parametrize("fmt", ["torch-zip", "torch-legacy", "safetensors", "npz"])
def test_mutations_give_checkpoint_error_or_clean_load(tmp_path, fmt):
    original = tmp_path / "original"
    _write(fmt, original)
    assert converters.checkpoint_format(original) == fmt
    data = original.read_bytes()
    rng = random.Random(f"tflstm-{fmt}")
    path = tmp_path / "mutated"
    outcomes = {"error": 0, "loaded": 0}
    for i in range(MUTATIONS):
        mutate = MUTATORS[i % len(MUTATORS)]
        path.write_bytes(bytes(mutate(bytearray(data), rng)))
        try:
            shapes = converters.read_shapes(path)
            loaded = converters.load_checkpoint(path)
        except converters.CheckpointError:
            outcomes["error"] += 1
            continue
        # A clean load: arrays whose shapes are those the header announced.
        assert all(isinstance(v, np.ndarray) for v in loaded.values()), i
        assert {k: v.shape for k, v in loaded.items()} == {
            k: info.shape for k, info in shapes.items()
        }, i
        outcomes["loaded"] += 1
    # Most mutations break the file; the checks above ran on every outcome.
    assert outcomes["error"] > MUTATIONS // 2, outcomes
    assert sum(outcomes.values()) == MUTATIONS
