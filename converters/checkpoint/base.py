"""What every reader shares: the errors, `TensorInfo`, the `Checkpoint`
interface, and tensors as numpy."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


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


@contextlib.contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
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
            f"Received: {type(e).__name__}: {first_line(e)}"
        ) from e


def first_line(error: BaseException) -> str:
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[0] if lines else "(no message)"


def outside_converters() -> int:
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


def is_tensor(obj: Any) -> bool:
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
