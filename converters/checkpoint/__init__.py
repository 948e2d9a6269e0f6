"""Reading and writing PyTorch checkpoints as `dict[str, numpy.ndarray]`.

The format is recognised from the file's content, never from its name (a
`torch.save` file may be called `weights`, `model.pth.tar` or `ckpt.tar`):

- torch.save's zip format (a zip archive holding `<name>/data.pkl`): read with
  `torch.load(path, map_location="cpu", mmap=True, weights_only=True)`, so
  that only the tensors asked for are read from disk, and a pickle that holds
  anything but tensors and plain containers is refused before it can run code.
- torch.save's legacy format (`_use_new_zipfile_serialization=False`, a pickle
  stream that starts with torch's magic number): the same, without `mmap`.
- safetensors (an 8-byte little-endian header length, then a JSON object):
  the `safetensors` package, one tensor at a time; no torch needed.
- `.npz` (a zip archive of `.npy` members): read here, never unpickling.
- a sharded checkpoint: its index (`model.safetensors.index.json`,
  `pytorch_model.bin.index.json`: `{"weight_map": {key: shard file}}`) or the
  folder that holds it; only the shards that hold the requested keys are read.

`load_checkpoint(path, prefix="encoder")` reads only the tensors under
`encoder.`, and `read_shapes(path)` only keys, shapes and dtypes (the headers of
safetensors and `.npz` files), so that one LSTM of a multi-GB checkpoint costs
about its own size in memory.

Precision: float64, float32 and float16 tensors keep their dtype; bfloat16,
which numpy lacks, is widened exactly to float32.

The package: the formats recognised (`sniffing`), a reader per format
(`readers`), sharded checkpoints (`shards`) and what they share (`base`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from _tflstm.extras import require
from converters.checkpoint.base import (
    Checkpoint,
    CheckpointError,
    TensorInfo,
    UnsafePickleWarning,
)
from converters.checkpoint.readers import ST_DTYPES, Safetensors, open_file
from converters.checkpoint.shards import Sharded
from converters.checkpoint.sniffing import SINGLE_NAMES, locate

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "TensorInfo",
    "UnsafePickleWarning",
    "checkpoint_format",
    "load_checkpoint",
    "open_checkpoint",
    "read_safetensors",
    "read_shapes",
    "save_state_dict",
]


def load_checkpoint(
    path: str | os.PathLike,
    *,
    prefix: str | None = None,
    trust_pickle: bool = False,
) -> dict[str, np.ndarray]:
    """Reads a checkpoint into a flat `{key: numpy array}` state_dict.

    Nested containers are unwrapped: `{"state_dict": {...}}`,
    `{"model_state": {...}, "optimizer_state": {...}}` and the like give the
    model's state_dict; other nesting is flattened with "." as in
    `nn.Module.state_dict()`. Values that are not tensors are dropped.

    Args:
        path: A checkpoint file of any name (see the module's docstring for
            the formats, recognised by content), a sharded checkpoint's index
            JSON, or the folder that holds the index.
        prefix: Read only the tensors of the module at `prefix` and below,
            e.g. `"encoder.rnn"` (a trailing "." is optional). Defaults to
            everything. Keys keep their full names.
        trust_pickle: Load torch files that hold other Python objects than
            tensors and plain containers, e.g. a whole model written by
            `torch.save(model)` (its `state_dict()` is taken). Unpickling such
            a file runs any code it names: only for files you trust. Issues an
            `UnsafePickleWarning`. Defaults to `False`.

    Returns:
        The state_dict. bfloat16 tensors are widened (exactly) to float32.

    Raises:
        FileNotFoundError: if `path` does not exist.
        CheckpointError: for a file of no known format, a truncated or corrupt
            file, or (without `trust_pickle`) a pickle that could run code.
        ImportError: for a torch file when torch is not installed.
    """
    checkpoint = open_checkpoint(path, trust_pickle=trust_pickle)
    keep = _under(prefix)
    return checkpoint.read([k for k in checkpoint.keys() if keep(k)])


def read_shapes(
    path: str | os.PathLike, *, trust_pickle: bool = False
) -> dict[str, TensorInfo]:
    """The keys of a checkpoint with their shapes and dtypes, in file order.

    Reads no tensor data from safetensors and `.npz` files (headers only) and
    from torch's zip format (memory-mapped); legacy torch files are read whole.
    Arguments and errors as `load_checkpoint`.
    """
    return open_checkpoint(path, trust_pickle=trust_pickle).infos()


def open_checkpoint(
    path: str | os.PathLike, *, trust_pickle: bool = False
) -> Checkpoint:
    """Opens a checkpoint to read its keys, shapes and tensors piece by piece.

    `converters.from_torch` reads a file this way: the shapes first, then one
    tensor at a time into the layer, so that it never holds more than one of
    the checkpoint's tensors besides the layer. Arguments and errors as
    `load_checkpoint`.
    """
    path, fmt = locate(Path(path))
    if fmt == "sharded" and path.name in SINGLE_NAMES:  # a folder, one file
        return open_checkpoint(path, trust_pickle=trust_pickle)
    if fmt == "sharded":
        return Sharded(path, trust_pickle)
    return open_file(path, fmt, trust_pickle)


def checkpoint_format(path: str | os.PathLike) -> str:
    """The format of the file (or folder) at `path`, from its content.

    Returns:
        One of `"torch-zip"`, `"torch-legacy"`, `"safetensors"`, `"npz"`,
        `"sharded"`.

    Raises:
        FileNotFoundError: if `path` does not exist.
        CheckpointError: if the content is of no known format; the message
            says what the file looks like.
    """
    return locate(Path(path))[1]


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a `.safetensors` file (no torch needed); bfloat16 -> float32."""
    reader = Safetensors(Path(path))
    return reader.read(reader.keys())


def save_state_dict(
    state_dict: Mapping[str, np.ndarray], path: str | os.PathLike
) -> None:
    """Writes a state_dict as `.safetensors`, `.npz`, or `.pt`/`.pth`/`.bin`/`.ckpt`.

    The format is chosen by the suffix of `path`. A torch file holds torch
    tensors and loads with `torch.load(path, weights_only=True)`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    arrays = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
    if suffix == ".safetensors":
        from safetensors.numpy import save_file

        for name, array in arrays.items():
            if array.dtype.name not in ST_DTYPES.values():
                raise CheckpointError(
                    f"Cannot write {name!r} to safetensors: expected one of the "
                    f"dtypes {', '.join(sorted(ST_DTYPES.values()))}. "
                    f"Received: {array.dtype}"
                )
        save_file(arrays, path)
    elif suffix == ".npz":
        with path.open("wb") as f:
            np.savez(f, **cast(dict[str, Any], arrays))  # names, not options
    elif suffix in (".pt", ".pth", ".bin", ".ckpt"):
        torch = require("torch", extra="torch", purpose=f"Writing {suffix} files")
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        raise CheckpointError(
            "Expected an output file ending in .safetensors, .npz, .pt, .pth, "
            f".bin or .ckpt. Received: {str(path)!r}"
        )


def _under(prefix: str | None) -> Callable[[str], bool]:
    """Whether a key belongs to the module at `prefix` (or below it)."""
    module = (prefix or "").rstrip(".")
    if not module:
        return lambda key: True
    return lambda key: key.startswith(module + ".")
