"""Sharded checkpoints: an index and its shard files, each opened only when
one of its keys is read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from converters.checkpoint.base import Checkpoint, CheckpointError, TensorInfo
from converters.checkpoint.readers import open_file
from converters.checkpoint.sniffing import index_map, locate


class Sharded(Checkpoint):
    """The shards of an index, each opened only when one of its keys is read."""

    def __init__(self, index: Path, trust_pickle: bool) -> None:
        self.index, self.trust_pickle = index, trust_pickle
        self.weight_map = index_map(index)
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
            _, fmt = locate(path)
            self._shards[name] = open_file(path, fmt, self.trust_pickle)
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
