"""Recognising a checkpoint's format from its content, never from its name."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from converters.checkpoint.base import CheckpointError, first_line, reading

# torch.save's legacy format starts with this number, pickled as a LONG1.
TORCH_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


# Names of the index file of a sharded checkpoint, most preferred first.
INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")


FORMATS = (
    "a torch.save file (zip or legacy), .safetensors, .npz, or the index "
    "(or folder) of a sharded checkpoint"
)


def locate(path: Path) -> tuple[Path, str]:
    """The checkpoint file that `path` names, and its format."""
    if path.is_dir():
        return _index_in(path), "sharded"
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {str(path)!r}.")
    with path.open("rb") as f:
        head = f.read(64)
    size = path.stat().st_size
    if head[:4] in ZIP_MAGICS:
        return path, _zip_format(path)
    if head[:1] == b"\x80" and TORCH_MAGIC in head[:32]:
        return path, "torch-legacy"
    if len(head) > 8 and head[8:9] == b"{":
        if 8 + int.from_bytes(head[:8], "little") <= size:
            return path, "safetensors"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" and _is_index(path):
        return path, "sharded"
    raise CheckpointError(
        f"Cannot read {str(path)!r} as a checkpoint: expected {FORMATS}. "
        f"Received: {_looks_like(head, size)}."
    )


def _zip_format(path: Path) -> str:
    with reading(path, "a zip archive"), zipfile.ZipFile(path) as archive:
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
        f"Cannot read {str(path)!r} as a checkpoint: expected {FORMATS}. "
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


def _index_in(folder: Path) -> Path:
    """The index (or single checkpoint file) of a Hugging Face style folder."""
    for name in INDEX_NAMES:
        if (folder / name).is_file():
            return folder / name
    indexes = sorted(folder.glob("*.index.json"))
    if indexes:
        return indexes[0]
    singles = [folder / name for name in SINGLE_NAMES if (folder / name).is_file()]
    if singles:
        return singles[0]
    held = sorted(p.name for p in folder.iterdir())
    shown = ", ".join(held[:8]) + (", ..." if len(held) > 8 else "") or "nothing"
    raise CheckpointError(
        f"Cannot read the folder {str(folder)!r} as a checkpoint: expected a "
        f"sharded checkpoint's index ({', '.join(INDEX_NAMES)}) or "
        f"{' or '.join(SINGLE_NAMES)}. Received: a folder holding {shown}."
    )


def _is_index(path: Path) -> bool:
    """Whether the file is a sharded checkpoint's index JSON."""
    try:
        index_map(path)
    except CheckpointError:
        return False
    return True


def index_map(path: Path) -> dict[str, str]:
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
            f"Received: {type(e).__name__}: {first_line(e)}"
        ) from e
    return weight_map
