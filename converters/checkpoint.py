"""Reading and writing PyTorch checkpoints as `dict[str, numpy.ndarray]`.

Formats, chosen by the file's extension:

- `.safetensors`: read and written here without torch (and without the
  `safetensors` package): an 8-byte header length, a JSON header, raw data.
- `.pt`, `.pth`, `.bin`, `.ckpt`: `torch.load(..., weights_only=True)`, which
  refuses any pickled object that is not a tensor or a plain container, so a
  checkpoint can never run code.
- `.npz`: `numpy.load(..., allow_pickle=False)`.

Precision: float64, float32 and float16 tensors keep their dtype; bfloat16,
which numpy lacks, is widened exactly to float32.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", ".npz")

# Keys under which training scripts commonly nest the model's state_dict.
_WRAPPERS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
)

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint, or one that holds code."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a checkpoint into a flat `{key: numpy array}` state_dict.

    Nested containers are unwrapped: `{"state_dict": {...}}`,
    `{"model_state": {...}, "optimizer_state": {...}}` and the like give the
    model's state_dict; other nesting is flattened with "." as in
    `nn.Module.state_dict()`. Values that are not tensors are dropped.

    Args:
        path: A `.pt`/`.pth`/`.bin`/`.ckpt` file written by `torch.save`
            (needs torch), a `.safetensors` file or a `.npz` file.

    Returns:
        The state_dict. bfloat16 tensors are widened (exactly) to float32.

    Raises:
        FileNotFoundError: if `path` does not exist.
        CheckpointError: for an unknown extension, a truncated or corrupt
            file, or a pickle holding anything but tensors and containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {str(path)!r}.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in TORCH_SUFFIXES:
        return _unwrap(_read_torch(path))
    raise CheckpointError(
        f"Expected a checkpoint file ending in one of {', '.join(SUFFIXES)}. "
        f"Received: {str(path)!r}"
    )


def _read_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"Reading {path.suffix} checkpoints needs torch "
            "(pip install torch); .safetensors and .npz files do not."
        ) from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
        # weights_only names the refused global ("unsupported GLOBAL posix.system").
        unsafe = [ln for ln in lines if "GLOBAL" in ln]
        if unsafe:
            reason = (
                "it holds objects other than tensors and plain containers, "
                "which could run code when loaded; it was not loaded"
            )
        else:
            reason = "it is truncated, corrupt or not written by torch.save"
        detail = (unsafe or [ln for ln in lines if "Unsupported" in ln] or lines)[0]
        raise CheckpointError(
            f"Cannot read {str(path)!r} as a PyTorch checkpoint: {reason}. "
            f"Received: {type(e).__name__}: {detail[:200]}"
        ) from e


def _to_numpy(value: Any) -> np.ndarray | None:
    if isinstance(value, np.ndarray):
        return value
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        import torch

        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return tensor.numpy().copy()
    return None


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}{i}.", out)
    else:
        array = _to_numpy(obj)
        if array is not None:
            out[prefix[:-1]] = array


def _unwrap(obj: Any) -> dict[str, np.ndarray]:
    """The model's state_dict inside a training checkpoint, flattened."""
    while isinstance(obj, Mapping):
        inner = next(
            (obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None
        )
        if inner is None or any(_to_numpy(v) is not None for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            "Expected a checkpoint holding a dict of tensors (a state_dict). "
            f"Received: an object of type {type(obj).__name__}"
        )
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    return out


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:  # numpy leaves its own handle open on a broken archive: pass ours
        with path.open("rb") as f, np.load(f, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(
            f"Cannot read {str(path)!r} as a .npz archive of arrays: it is "
            "truncated, corrupt or holds pickled objects. "
            f"Received: {type(e).__name__}: {e}"
        ) from e


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a `.safetensors` file (no torch needed); bfloat16 -> float32."""
    path = Path(path)
    data = path.read_bytes()

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"Cannot read {str(path)!r} as safetensors: {why}.")

    if len(data) < 8:
        raise bad(f"the file has {len(data)} bytes, fewer than its 8-byte header")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise bad("the header runs past the end of the file (truncated?)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"the header is not JSON ({e})") from e
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    body = memoryview(data)[8 + header_len :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = (
                info["dtype"],
                info["shape"],
                info["data_offsets"],
            )
        except (TypeError, KeyError, ValueError) as e:
            raise bad(f"tensor {name!r} has a malformed entry {info!r}") from e
        if end > len(body) or start > end:
            raise bad(f"tensor {name!r} runs past the end of the file (truncated?)")
        raw = body[start:end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype in _ST_DTYPES:
            array = np.frombuffer(raw, _ST_DTYPES[dtype])
        else:
            raise bad(f"tensor {name!r} has the unsupported dtype {dtype}")
        if array.size != int(np.prod(shape)):
            raise bad(f"tensor {name!r} holds {array.size} values for shape {shape}")
        out[name] = array.reshape(shape).copy()
    return out


def save_state_dict(
    state_dict: Mapping[str, np.ndarray], path: str | os.PathLike
) -> None:
    """Writes a state_dict as `.safetensors`, `.npz`, or `.pt`/`.pth`/`.bin` (torch).

    A `.pt` file holds torch tensors and loads with
    `torch.load(path, weights_only=True)`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    arrays = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
    if suffix == ".safetensors":
        _write_safetensors(arrays, path)
    elif suffix == ".npz":
        with path.open("wb") as f:
            np.savez(f, **arrays)
    elif suffix in TORCH_SUFFIXES:
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, path)
    else:
        raise CheckpointError(
            f"Expected an output file ending in one of {', '.join(SUFFIXES)}. "
            f"Received: {str(path)!r}"
        )


def _write_safetensors(arrays: dict[str, np.ndarray], path: Path) -> None:
    header: dict[str, Any] = {}
    offset = 0
    for name, array in arrays.items():
        if array.dtype not in _ST_NAMES:
            raise CheckpointError(
                f"Cannot write {name!r} to safetensors: unsupported dtype. "
                f"Received: {array.dtype}"
            )
        header[name] = {
            "dtype": _ST_NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format aligns the data to 8 bytes
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for array in arrays.values():
            f.write(array.tobytes())
