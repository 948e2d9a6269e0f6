"""One reader per file format: safetensors, `.npz` and torch.save files
(zip, memory-mapped, or legacy), flattened and unwrapped as `load_checkpoint`
returns them."""

from __future__ import annotations

import contextlib
import json
import math
import re
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from _tflstm.extras import require
from converters.checkpoint.base import (
    Checkpoint,
    CheckpointError,
    TensorInfo,
    UnsafePickleWarning,
    first_line,
    is_module,
    is_tensor,
    outside_converters,
    reading,
    to_numpy,
)

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


# safetensors dtype -> numpy dtype (BF16 is decoded separately).
ST_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
}


def open_file(path: Path, fmt: str, trust_pickle: bool) -> Checkpoint:
    if fmt == "safetensors":
        return Safetensors(path)
    if fmt == "npz":
        return _Npz(path)
    if fmt in ("torch-zip", "torch-legacy"):
        return _Torch(path, mmap=fmt == "torch-zip", trust_pickle=trust_pickle)
    raise CheckpointError(
        f"Cannot read the shard {str(path)!r}: expected a torch.save file, "
        f".safetensors or .npz. Received: a {fmt} checkpoint."
    )


class Safetensors(Checkpoint):
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _file(self) -> Iterator[Any]:
        from safetensors import safe_open

        with (
            reading(self.path, "safetensors"),
            safe_open(self.path, framework="numpy") as f,
        ):
            yield f

    def keys(self) -> list[str]:
        with self._file() as f:
            return list(f.keys())

    def infos(self, keys: Iterable[str] | None = None) -> dict[str, TensorInfo]:
        with self._file() as f:
            infos = {}
            for key in f.keys() if keys is None else keys:
                tensor = f.get_slice(key)
                dtype = tensor.get_dtype()
                name = "bfloat16" if dtype == "BF16" else ST_DTYPES.get(dtype, dtype)
                infos[key] = TensorInfo(tuple(tensor.get_shape()), name)
            return infos

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        out = {}
        with self._file() as f:
            for key in keys:
                dtype = f.get_slice(key).get_dtype()
                if dtype == "BF16":
                    out[key] = self._bfloat16(key)
                elif dtype in ST_DTYPES:
                    out[key] = f.get_tensor(key)
                else:
                    raise CheckpointError(
                        f"Cannot read {key!r} of {str(self.path)!r}: expected "
                        f"one of the dtypes BF16, {', '.join(ST_DTYPES)}. "
                        f"Received: {dtype}"
                    )
        return out

    def _bfloat16(self, key: str) -> np.ndarray:
        """numpy has no bfloat16: the raw bits, widened exactly to float32."""
        # safe_open has validated the header; it gives no offsets, so reread it.
        with self.path.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            entry = json.loads(f.read(length))[key]
        start, end = entry["data_offsets"]
        bits = np.fromfile(
            self.path, "<u2", count=(end - start) // 2, offset=8 + length + start
        )
        return (bits.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])


class _Npz(Checkpoint):
    """A `.npz` archive, member by member; object arrays are refused."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _members(self, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        return {info.filename[: -len(".npy")]: info for info in archive.infolist()}

    def _header(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> TensorInfo:
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise CheckpointError(
                f"Cannot read {str(self.path)!r} as a .npz archive of arrays: "
                f"{info.filename!r} holds pickled objects, which could run code "
                f"when loaded. Received: dtype {dtype}"
            )
        if math.prod(shape) * dtype.itemsize > info.file_size:
            raise CheckpointError(
                f"Cannot read {str(self.path)!r} as a .npz archive of arrays: "
                f"{info.filename!r} is truncated or corrupt. Received: shape "
                f"{shape} of {dtype} in {info.file_size} bytes"
            )
        return TensorInfo(tuple(int(d) for d in shape), dtype.name)

    def infos(self, keys: Iterable[str] | None = None) -> dict[str, TensorInfo]:
        with reading(self.path, "a .npz archive"), zipfile.ZipFile(self.path) as z:
            members = self._members(z)
            wanted = members if keys is None else keys
            return {k: self._header(z, members[k]) for k in wanted}

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        with reading(self.path, "a .npz archive"), zipfile.ZipFile(self.path) as z:
            members = self._members(z)
            out = {}
            for key in keys:
                self._header(z, members[key])  # the checks, before any allocation
                with z.open(members[key]) as f:
                    out[key] = np.lib.format.read_array(f, allow_pickle=False)
            return out


class _Torch(Checkpoint):
    """A torch.save file. The zip format is memory-mapped and unpickled again
    for each call (a few ms): the pages read stay mapped, so counted in the
    process's memory, only while the tensors of one call are copied. The
    legacy format cannot be mapped: it is read whole, once."""

    def __init__(self, path: Path, *, mmap: bool, trust_pickle: bool) -> None:
        self.path, self.mmap, self.trust_pickle = path, mmap, trust_pickle
        self._tensors: dict[str, Any] | None = None
        self._warned = False

    def _load(self) -> dict[str, Any]:
        if self.mmap:
            return _unwrap(self._unpickle())
        if self._tensors is None:
            self._tensors = _unwrap(self._unpickle())
        return self._tensors

    def _unpickle(self) -> Any:
        torch = require(
            "torch",
            extra="torch",
            purpose=f"Reading {str(self.path)!r} (a torch.save file)",
        )
        if self.trust_pickle and not self._warned:
            self._warned = True
            warnings.warn(
                f"Unpickling {str(self.path)!r} with trust_pickle=True: a pickle "
                "can run any code it names. Do this only for files you trust.",
                UnsafePickleWarning,
                stacklevel=outside_converters(),
            )
        try:
            with warnings.catch_warnings():
                # A damaged file may name an odd pickle protocol; it fails or
                # loads, and either way the warning says nothing more.
                warnings.filterwarnings("ignore", "Detected pickle protocol")
                return torch.load(
                    self.path,
                    map_location="cpu",
                    mmap=self.mmap,
                    weights_only=not self.trust_pickle,
                )
        except Exception as e:  # torch raises many types for a bad file
            raise self._error(e) from e

    def _error(self, e: Exception) -> CheckpointError:
        where = f"Cannot read {str(self.path)!r} as a PyTorch checkpoint"
        refused = re.findall(r"GLOBAL ([\w.]+[\w])", str(e))
        if refused and not self.trust_pickle:
            return CheckpointError(
                f"{where}: it holds Python objects other than tensors and plain "
                f"containers (here `{refused[0]}`), and unpickling those could run "
                "code, so it was not loaded. A whole model written by "
                "torch.save(model) is such a file: re-save its weights where the "
                "model's code is, with torch.save(model.state_dict(), path), or, "
                "if you trust the file, pass trust_pickle=True (tflstm-convert: "
                "--trust-pickle)."
            )
        if self.trust_pickle and isinstance(e, (AttributeError, ImportError)):
            if "__main__" in str(e):
                hint = (
                    "it names a class of the script that saved it (`__main__`), "
                    "which no other program can import: in that script, save "
                    "torch.save(model.state_dict(), path) instead"
                )
            else:
                hint = (
                    "it names code that is not importable here: make the module "
                    "that defines the model importable (e.g. run from its folder)"
                )
            return CheckpointError(
                f"{where}: {hint}. Received: {type(e).__name__}: {first_line(e)}"
            )
        return CheckpointError(
            f"{where}: it is truncated, corrupt or not written by torch.save. "
            f"Received: {type(e).__name__}: {first_line(e)}"
        )

    def infos(self, keys: Iterable[str] | None = None) -> dict[str, TensorInfo]:
        tensors = self._load()
        infos = {}
        for key in tensors if keys is None else keys:
            value = tensors[key]
            shape = tuple(int(d) for d in value.shape)
            dtype = str(value.dtype).removeprefix("torch.")
            infos[key] = TensorInfo(shape, dtype)
        return infos

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        tensors = self._load()
        with reading(self.path, "a PyTorch checkpoint"):
            # copies: off the memory map
            return {key: to_numpy(tensors[key], copy=True) for key in keys}

    def submodule(self, prefix: str) -> Any:
        if not self.trust_pickle:
            return None
        model = _whole_model(self._unpickle())
        name = prefix.rstrip(".")
        if model is None:
            return None
        try:
            return model.get_submodule(name) if name else model
        except AttributeError:
            return None


def _plain(obj: Any) -> Any:
    """A whole `nn.Module` (from a trusted pickle) stands for its state_dict."""
    return obj.state_dict() if is_module(obj) else obj


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    obj = _plain(obj)
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _flatten(value, f"{prefix}{i}.", out)
    elif is_tensor(obj):
        out[prefix[:-1]] = obj


def _whole_model(obj: Any) -> Any:
    """The `nn.Module` a trusted pickle holds, at its root or under one of
    the wrappers' keys (`{"model": model, "epoch": 3}`); else None."""
    if is_module(obj):
        return obj
    if isinstance(obj, Mapping):
        return next((obj[k] for k in _WRAPPERS if is_module(obj.get(k))), None)
    return None


def _unwrap(obj: Any) -> dict[str, Any]:
    """The model's state_dict inside a training checkpoint, flattened."""
    obj = _plain(obj)
    while isinstance(obj, Mapping):
        inner = next(
            (
                _plain(obj[k])
                for k in _WRAPPERS
                if isinstance(_plain(obj.get(k)), Mapping)
            ),
            None,
        )
        if inner is None or any(is_tensor(v) for v in obj.values()):
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            "Expected a checkpoint holding a dict of tensors (a state_dict). "
            f"Received: an object of type {type(obj).__name__}"
        )
    out: dict[str, Any] = {}
    _flatten(obj, "", out)
    return out
