"""Several datasets trained on as one: more towns without regenerating what is already built.

A dataset's towns are fixed when it is generated (``--towns``, ``--seed``); growing it adds
sequences in the same towns. A second dataset with another seed brings new towns, and
``shareverse-train --data A B --latents LA LB --cache-inputs CA CB`` trains on both. Each
dataset keeps its own latent cache and cache-input store, built and checked exactly as for one
dataset; the union only routes a sequence to the files of its own dataset.

Sequence ``i`` of the union runs through the first dataset's sequences, then the next's; its
id is ``"k:ID"`` (``k`` the dataset's position, ``ID`` its id there), so ids stay unique. A
draw picks uniformly among all sequences, so a dataset weighs as many sequences as it holds.

Example:
    >>> import tempfile
    >>> from shareverse_env.data import SequenceDataset
    >>> union = SequenceUnion([SequenceDataset(tempfile.mkdtemp(), "train")] * 2)
    >>> len(union), union.split, split_union_id("1:000004")
    (0, 'train', (1, '000004'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from shareverse_env.models.training.cache_inputs import CacheInputStore
from shareverse_env.models.training.latent_cache import LatentCache

from shareverse_env.data import SequenceDataset
from shareverse_env.data.format import SequenceData


def split_union_id(seq_id: str) -> tuple[int, str]:
    """``"k:ID"`` → ``(k, "ID")``."""
    part, sep, local = seq_id.partition(":")
    if not sep or not part.isdigit():
        raise ValueError(f'{seq_id!r} is not a union sequence id ("k:ID")')
    return int(part), local


class SequenceUnion:
    """The sequences of several :class:`~shareverse_env.data.SequenceDataset` of one split,
    read as one dataset (the interface the trainer and the latent cache use)."""

    def __init__(self, parts: Sequence[SequenceDataset]) -> None:
        if not parts:
            raise ValueError("a dataset union needs at least one dataset")
        splits = sorted({part.split for part in parts})
        if len(splits) != 1:
            raise ValueError(f"the datasets of a union must share one split; got {splits}")
        self.parts = list(parts)
        self.split = splits[0]
        self.ids = [f"{k}:{seq_id}" for k, part in enumerate(self.parts) for seq_id in part.ids]
        self._where = [(k, j) for k, part in enumerate(self.parts) for j in range(len(part))]

    def __len__(self) -> int:
        return len(self._where)

    def locate(self, i: int) -> tuple[SequenceDataset, int]:
        """The dataset that holds sequence ``i`` and the sequence's index there."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} sequences")
        k, j = self._where[i]
        return self.parts[k], j

    def __getitem__(self, i: int) -> SequenceData:
        part, j = self.locate(i)
        return part[j]

    def meta(self, i: int) -> dict[str, Any]:
        part, j = self.locate(i)
        return part.meta(j)

    def load_poses(self, i: int) -> np.ndarray:
        part, j = self.locate(i)
        return part.load_poses(j)

    def load_frames(
        self, i: int, agent: int, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        part, j = self.locate(i)
        return part.load_frames(j, agent, start, stop)


def _same_stride(stores: Sequence[Any], what: str) -> int:
    strides = sorted({store.stride for store in stores})
    if len(strides) != 1:
        folders = ", ".join(f"{s.folder} ({s.stride})" for s in stores)
        raise ValueError(f"the {what} of a union must share one start stride; got {folders}")
    return strides[0]


def _check_parts(stores: Sequence[Any], pipe: Any, data: Any, what: str) -> None:
    parts = getattr(data, "parts", None)
    if parts is None or len(parts) != len(stores):
        raise ValueError(
            f"{len(stores)} {what} for {len(parts) if parts is not None else 1} dataset(s): give "
            "one per --data folder, in the same order"
        )
    for store, part in zip(stores, parts, strict=True):
        store.check(pipe, part)


class _StoreUnion:
    """One store per dataset of a :class:`SequenceUnion`, read as one store of ``part_type``
    (mixed in before it, so the union is one for the trainer's type checks)."""

    part_type: type
    what: str

    def __init__(self, folders: Sequence[str | os.PathLike]) -> None:
        self.parts = [self.part_type(folder) for folder in folders]
        if not self.parts:
            raise ValueError(f"a union of {self.what} needs at least one folder")
        self.stride = _same_stride(self.parts, self.what)
        self.folder = Path(self.parts[0].folder)
        self.manifest = self.parts[0].manifest

    def path(self, seq_id: str) -> Path:
        k, local = split_union_id(seq_id)
        return self.parts[k].path(local)

    def check(self, pipe: Any, data: Any) -> None:
        """Each store checked against its own dataset of the union ``data``."""
        _check_parts(self.parts, pipe, data, self.what)


class LatentCacheUnion(_StoreUnion, LatentCache):
    """One latent cache per dataset of a :class:`SequenceUnion`, read as one."""

    part_type = LatentCache
    what = "latent caches"


class CacheInputUnion(_StoreUnion, CacheInputStore):
    """One cache-input store per dataset of a :class:`SequenceUnion`, read as one."""

    part_type = CacheInputStore
    what = "cache-input stores"


def open_training_data(
    roots: Sequence[str | os.PathLike],
    split: str,
    frames_only: bool,
    latents: Sequence[str | os.PathLike] | None = None,
    cache_inputs: Sequence[str | os.PathLike] | None = None,
) -> tuple[Any, Any, Any]:
    """``(data, latents, cache_inputs)`` for the trainer from one or several dataset folders.

    One folder gives a plain :class:`~shareverse_env.data.SequenceDataset` and the folders
    (or ``None``) as given; several give a :class:`SequenceUnion` and unions of the stores,
    which need one store per dataset.
    """
    roots = list(roots)
    for name, stores in (("--latents", latents), ("--cache-inputs", cache_inputs)):
        if stores is not None and len(stores) != len(roots):
            raise ValueError(
                f"{name} names {len(stores)} folder(s) for {len(roots)} --data folder(s): give "
                "one per dataset, in the same order"
            )
    parts = [SequenceDataset(root, split, frames_only=frames_only) for root in roots]
    if len(parts) == 1:
        return (
            parts[0],
            None if latents is None else Path(latents[0]),
            None if cache_inputs is None else Path(cache_inputs[0]),
        )
    data = SequenceUnion(parts)
    return (
        data,
        None if latents is None else LatentCacheUnion(latents),
        None if cache_inputs is None else CacheInputUnion(cache_inputs),
    )
