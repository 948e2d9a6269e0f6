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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from _tflstm.extras import require

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
_ST_DTYPES = {
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

# torch.save's legacy format starts with this number, pickled as a LONG1.
_TORCH_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# Names of the index file of a sharded checkpoint, most preferred first.
_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")

_FORMATS = (
    "a torch.save file (zip or legacy), .safetensors, .npz, or the index "
    "(or folder) of a sharded checkpoint"
)


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint, or one that could run code."""


class UnsafePickleWarning(UserWarning):
    """A checkpoint is being unpickled with `trust_pickle=True`: it can run code."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A tensor's shape and dtype, read without its data.

    `dtype` is numpy's name, or `"bfloat16"` (loaded as float32).
    """

    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# -- public functions ---------------------------------------------------------


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
    path, fmt = _locate(Path(path))
    if fmt == "sharded" and path.name in _SINGLE_NAMES:  # a folder, one file
        return open_checkpoint(path, trust_pickle=trust_pickle)
    if fmt == "sharded":
        return _Sharded(path, trust_pickle)
    return _open_file(path, fmt, trust_pickle)


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
    return _locate(Path(path))[1]


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a `.safetensors` file (no torch needed); bfloat16 -> float32."""
    reader = _Safetensors(Path(path))
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
            if array.dtype.name not in _ST_DTYPES.values():
                raise CheckpointError(
                    f"Cannot write {name!r} to safetensors: expected one of the "
                    f"dtypes {', '.join(sorted(_ST_DTYPES.values()))}. "
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


# -- recognising the format ---------------------------------------------------


def _under(prefix: str | None) -> Callable[[str], bool]:
    """Whether a key belongs to the module at `prefix` (or below it)."""
    module = (prefix or "").rstrip(".")
    if not module:
        return lambda key: True
    return lambda key: key.startswith(module + ".")


def _locate(path: Path) -> tuple[Path, str]:
    """The checkpoint file that `path` names, and its format."""
    if path.is_dir():
        return _index_in(path), "sharded"
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {str(path)!r}.")
    with path.open("rb") as f:
        head = f.read(64)
    size = path.stat().st_size
    if head[:4] in _ZIP_MAGICS:
        return path, _zip_format(path)
    if head[:1] == b"\x80" and _TORCH_MAGIC in head[:32]:
        return path, "torch-legacy"
    if len(head) > 8 and head[8:9] == b"{":
        if 8 + int.from_bytes(head[:8], "little") <= size:
            return path, "safetensors"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" and _is_index(path):
        return path, "sharded"
    raise CheckpointError(
        f"Cannot read {str(path)!r} as a checkpoint: expected {_FORMATS}. "
        f"Received: {_looks_like(head, size)}."
    )


def _zip_format(path: Path) -> str:
    with _reading(path, "a zip archive"), zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(re.fullmatch(r"[^/]+/data\.pkl", name) for name in names):
        return "torch-zip"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    if {"config.json", "model.weights.h5"} <= set(names):
        found = "a Keras .keras model (tflstm-convert to-torch reads those)"
    elif names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        found = f"a zip archive of other files ({shown})"
    else:
        found = "an empty zip archive"
    raise CheckpointError(
        f"Cannot read {str(path)!r} as a checkpoint: expected {_FORMATS}. "
        f"Received: {found}."
    )


def _looks_like(head: bytes, size: int) -> str:
    """What an unrecognised file looks like, for the error message."""
    if size == 0:
        return "an empty file"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (a Keras .h5 file?)"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, without names (numpy.savez writes .npz)"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle that torch.save did not write"
    if any(b < 9 or 13 < b < 32 for b in head):
        return f"a binary file starting with the bytes {head[:8].hex(' ')}"
    text = head.decode("utf-8", "replace").strip()
    first = text.splitlines()[0] if text else ""
    return f"a text file starting with {first[:40]!r}"


# -- readers --------------------------------------------------------------------


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turns whatever a parser raises on a damaged file into `CheckpointError`.

    Parsers of untrusted bytes (zipfile, torch, safetensors) raise many types
    (`BadZipFile`, `NotImplementedError` for an odd zip version, `EOFError`,
    `RuntimeError`, `struct.error`, ...); none of them is the user's bug.
    """
    try:
        yield
    except (CheckpointError, ImportError):
        raise
    except Exception as e:  # see the docstring
        raise CheckpointError(
            f"Cannot read {str(path)!r} as {what}: it is truncated or corrupt. "
            f"Received: {type(e).__name__}: {_first_line(e)}"
        ) from e


def _first_line(error: BaseException) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[0] if lines else "(no message)"


class Checkpoint:
    """An open checkpoint (`open_checkpoint`): its keys, their shapes and
    dtypes, and the tensors of the keys asked for, flattened and unwrapped as
    `load_checkpoint` returns them."""

    def keys(self) -> list[str]:
        """Every key, in file order."""
        return list(self.infos())

    def infos(self, keys: Iterable[str] | None = None) -> dict[str, TensorInfo]:
        """The shape and dtype of every key (or of `keys`), without reading
        tensor data where the format allows; of a sharded checkpoint, only the
        shards that hold `keys` are opened."""
        raise NotImplementedError

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The tensors of `keys` (bfloat16 widened to float32), and no others."""
        raise NotImplementedError

    def submodule(self, prefix: str) -> Any:
        """The `nn.Module` at `prefix` when the file holds a whole pickled
        model (read with `trust_pickle=True`), which records what a
        state_dict does not (`batch_first`, `dropout`); else None."""
        return None


def _open_file(path: Path, fmt: str, trust_pickle: bool) -> Checkpoint:
    if fmt == "safetensors":
        return _Safetensors(path)
    if fmt == "npz":
        return _Npz(path)
    if fmt in ("torch-zip", "torch-legacy"):
        return _Torch(path, mmap=fmt == "torch-zip", trust_pickle=trust_pickle)
    raise CheckpointError(
        f"Cannot read the shard {str(path)!r}: expected a torch.save file, "
        f".safetensors or .npz. Received: a {fmt} checkpoint."
    )


class _Safetensors(Checkpoint):
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _file(self) -> Iterator[Any]:
        from safetensors import safe_open

        with (
            _reading(self.path, "safetensors"),
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
                name = "bfloat16" if dtype == "BF16" else _ST_DTYPES.get(dtype, dtype)
                infos[key] = TensorInfo(tuple(tensor.get_shape()), name)
            return infos

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        out = {}
        with self._file() as f:
            for key in keys:
                dtype = f.get_slice(key).get_dtype()
                if dtype == "BF16":
                    out[key] = self._bfloat16(key)
                elif dtype in _ST_DTYPES:
                    out[key] = f.get_tensor(key)
                else:
                    raise CheckpointError(
                        f"Cannot read {key!r} of {str(self.path)!r}: expected "
                        f"one of the dtypes BF16, {', '.join(_ST_DTYPES)}. "
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
        with _reading(self.path, "a .npz archive"), zipfile.ZipFile(self.path) as z:
            members = self._members(z)
            wanted = members if keys is None else keys
            return {k: self._header(z, members[k]) for k in wanted}

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        with _reading(self.path, "a .npz archive"), zipfile.ZipFile(self.path) as z:
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
                stacklevel=_outside_converters(),
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
                f"{where}: {hint}. Received: {type(e).__name__}: {_first_line(e)}"
            )
        return CheckpointError(
            f"{where}: it is truncated, corrupt or not written by torch.save. "
            f"Received: {type(e).__name__}: {_first_line(e)}"
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
        with _reading(self.path, "a PyTorch checkpoint"):
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


def _outside_converters() -> int:
    """The `stacklevel` of the first caller outside `converters`, so that a
    warning names the user's line rather than this module's."""
    level, frame = 1, sys._getframe(1)
    while frame.f_back and frame.f_globals.get("__name__", "").startswith("converters"):
        level, frame = level + 1, frame.f_back
    return level


def is_module(obj: Any) -> bool:
    """Whether `obj` is a `torch.nn.Module` (without importing torch)."""
    return any(
        c.__module__.startswith("torch.nn") and c.__name__ == "Module"
        for c in type(obj).__mro__
    )


def _is_tensor(obj: Any) -> bool:
    return isinstance(obj, np.ndarray) or (
        type(obj).__module__.startswith("torch") and hasattr(obj, "detach")
    )


def to_numpy(value: Any, *, copy: bool = False) -> np.ndarray:
    """A torch tensor or numpy array as numpy (bfloat16 widened, exactly, to
    float32); with `copy`, never a view of `value`'s memory (e.g. a map)."""
    if isinstance(value, np.ndarray):
        return value.copy() if copy else value
    tensor = value.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":
        return tensor.float().numpy()  # numpy has no bfloat16; a new array
    return tensor.numpy().copy() if copy else tensor.numpy()


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
    elif _is_tensor(obj):
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
        if inner is None or any(_is_tensor(v) for v in obj.values()):
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


# -- sharded checkpoints ----------------------------------------------------------


def _index_in(folder: Path) -> Path:
    """The index (or single checkpoint file) of a Hugging Face style folder."""
    for name in _INDEX_NAMES:
        if (folder / name).is_file():
            return folder / name
    indexes = sorted(folder.glob("*.index.json"))
    if indexes:
        return indexes[0]
    singles = [folder / name for name in _SINGLE_NAMES if (folder / name).is_file()]
    if singles:
        return singles[0]
    held = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(held[:8]) + (", ..." if len(held) > 8 else "") or "nothing"
    raise CheckpointError(
        f"Cannot read the folder {str(folder)!r} as a checkpoint: expected a "
        f"sharded checkpoint's index ({', '.join(_INDEX_NAMES)}) or "
        f"{' or '.join(_SINGLE_NAMES)}. Received: a folder holding {shown}."
    )


def _is_index(path: Path) -> bool:
    """Whether the file is a sharded checkpoint's index JSON."""
    try:
        _index_map(path)
    except CheckpointError:
        return False
    return True


def _index_map(path: Path) -> dict[str, str]:
    """The `weight_map` of an index JSON; an error if it is not one."""
    try:
        index = json.loads(path.read_bytes())
        weight_map = index["weight_map"]
        if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
        ):
            raise TypeError("weight_map is not a {key: shard file} object")
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(
            f"Cannot read {str(path)!r} as a sharded checkpoint's index: "
            'expected JSON {"weight_map": {key: shard file}}. '
            f"Received: {type(e).__name__}: {_first_line(e)}"
        ) from e
    return weight_map


class _Sharded(Checkpoint):
    """The shards of an index, each opened only when one of its keys is read."""

    def __init__(self, index: Path, trust_pickle: bool) -> None:
        self.index, self.trust_pickle = index, trust_pickle
        self.weight_map = _index_map(index)
        self._shards: dict[str, Checkpoint] = {}

    def _shard(self, name: str) -> Checkpoint:
        if name not in self._shards:
            path = self.index.parent / name
            if not path.is_file():
                raise CheckpointError(
                    f"Cannot read the sharded checkpoint {str(self.index)!r}: its "
                    f"index names the shard {name!r}, which is not in "
                    f"{str(self.index.parent)!r}."
                )
            _, fmt = _locate(path)
            self._shards[name] = _open_file(path, fmt, self.trust_pickle)
        return self._shards[name]

    def _by_shard(self, keys: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(self.weight_map[key], []).append(key)
        return groups

    def _check(self, shard: str, keys: list[str], found: Iterable[str]) -> None:
        missing = sorted(set(keys) - set(found))
        if missing:
            raise CheckpointError(
                f"Cannot read the sharded checkpoint {str(self.index)!r}: its "
                f"index puts keys in {shard!r} that the shard does not hold. "
                f"Received: {', '.join(missing[:5])}"
            )

    def keys(self) -> list[str]:
        return list(self.weight_map)

    def infos(self, keys: Iterable[str] | None = None) -> dict[str, TensorInfo]:
        wanted = list(self.weight_map if keys is None else keys)
        return self._from_shards(wanted, lambda reader, some: reader.infos(some))

    def read(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        return self._from_shards(list(keys), lambda reader, some: reader.read(some))

    def _from_shards(self, keys: list[str], get: Callable) -> dict:
        """`get(reader, shard_keys)` of each shard that holds some of `keys`
        (only those shards are opened), merged in the order of `keys`."""
        out = {}
        for shard, shard_keys in self._by_shard(keys).items():
            reader = self._shard(shard)
            self._check(shard, shard_keys, reader.keys())
            out.update(get(reader, shard_keys))
        return {k: out[k] for k in keys}
