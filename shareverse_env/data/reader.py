"""Reading datasets written by :mod:`.format`: whole sequences, or windows of frames by mmap.

Nothing here unpickles: arrays are read with ``allow_pickle=False`` after their headers are
checked against ``meta.json`` (and ``dataset.json`` when present), and any mismatch raises an
error that names the file and what was expected.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> from shareverse_env.data.format import SequenceData, write_sequence
    >>> root = tempfile.mkdtemp()
    >>> frames = np.arange(2 * 4 * 32 * 48 * 3, dtype=np.uint64).astype(np.uint8)
    >>> data = SequenceData(frames.reshape(2, 4, 32, 48, 3), np.ones((2, 4, 32, 48), np.float32),
    ...                     np.zeros((2, 4, 3)), {"scenario": "head_on"})
    >>> _ = write_sequence(root, "train", 0, data)
    >>> ds = SequenceDataset(root, "train")
    >>> len(ds), ds.ids
    (1, ['000000'])
    >>> window = ds.load_frames(0, agent=1, start=1, stop=3)
    >>> window.shape, bool((window == data.frames[1, 1:3]).all())
    ((2, 32, 48, 3), True)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from shareverse_env.data.format import (
    COMPLETE_MARKER,
    DATASET_JSON,
    DEPTH_DTYPE,
    DEPTH_FILE,
    META_JSON,
    POSES_FILE,
    SequenceData,
    frames_file,
    is_complete,
    load_npy,
    load_npz_array,
    read_dataset_info,
    read_json,
    sequence_dir,
)


def list_sequences(root: str | os.PathLike, split: str, complete: bool = True) -> list[str]:
    """Sorted ids of the sequence folders of ``split`` (only complete ones by default).

    Hidden folders (``.<id>.tmp`` of unfinished writes) are never listed.
    """
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        return []
    ids = [
        p.name
        for p in split_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (not complete or is_complete(p))
    ]
    return sorted(ids)


def _shape(meta: dict[str, Any], path: Path, dataset: dict[str, Any] | None) -> tuple[int, ...]:
    """``(A, F, 2H, 2W)`` from ``meta.json``, checked against ``dataset.json``."""
    try:
        num_agents, num_frames = int(meta["num_agents"]), int(meta["num_frames"])
        height, width = (int(v) for v in meta["view_hw"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: needs num_agents, num_frames and view_hw [H, W] ({err!r})"
        ) from err
    if dataset is not None:
        for key, value in (
            ("num_agents", num_agents),
            ("num_frames", num_frames),
            ("view_hw", [height, width]),
        ):
            if key in dataset and dataset[key] != value:
                raise ValueError(
                    f"{path}: {key} = {value} disagrees with {DATASET_JSON} ({dataset[key]})"
                )
    return num_agents, num_frames, 2 * height, 2 * width


def _dataset_or_none(root: str | os.PathLike) -> dict[str, Any] | None:
    return read_dataset_info(root) if (Path(root) / DATASET_JSON).is_file() else None


def read_sequence(
    root: str | os.PathLike,
    split: str,
    seq_id: str | int,
    depth: bool = False,
    *,
    dataset: dict[str, Any] | None = None,
) -> SequenceData:
    """Load one complete sequence.

    Args:
        root: the dataset folder.
        split: split folder name (``"train"``, ``"val"``).
        seq_id: the sequence's id (``"000012"``) or index (``12``).
        depth: also load ``depth.npz`` (returned as float32; float16 precision).
        dataset: the parsed ``dataset.json`` to check against (default: read it when present).

    Raises:
        FileNotFoundError: the sequence, its ``COMPLETE`` marker or one of its files is missing.
        ValueError: a file is malformed, truncated, holds pickled objects, or disagrees with
            ``meta.json`` / ``dataset.json``.
    """
    folder = sequence_dir(root, split, seq_id)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such sequence")
    if not is_complete(folder):
        raise FileNotFoundError(f"{folder / COMPLETE_MARKER}: missing; the sequence is incomplete")
    dataset = _dataset_or_none(root) if dataset is None else dataset
    meta = read_json(folder / META_JSON)
    if not isinstance(meta, dict):
        raise ValueError(f"{folder / META_JSON}: expected a JSON object")
    a, f, h2, w2 = _shape(meta, folder / META_JSON, dataset)
    poses = load_npy(folder / POSES_FILE, np.float64, (a, f, 3))
    frames = np.stack(
        [load_npy(folder / frames_file(k), np.uint8, (f, h2, w2, 3)) for k in range(a)]
    )
    depth_arr = None
    if depth:
        depth_arr = load_npz_array(folder / DEPTH_FILE, "depth", DEPTH_DTYPE, (a, f, h2, w2))
        depth_arr = depth_arr.astype(np.float32)
    return SequenceData(frames=frames, depth=depth_arr, poses=poses, meta=meta)


def verify_sequence(root: str | os.PathLike, split: str, seq_id: str | int) -> str | None:
    """``None`` when the sequence reads back with the expected shapes, else what is wrong."""
    try:
        read_sequence(root, split, seq_id, depth=True).validate()
    except (OSError, ValueError) as err:
        return str(err)
    return None


class SequenceDataset:
    """Map-style dataset over the complete sequences of one split (no torch needed).

    Folders without their ``COMPLETE`` marker are invisible. ``dataset[i]`` is a
    :class:`~.format.SequenceData`; :meth:`load_frames` memory-maps one agent's frames file so
    that a training loader can read short windows without loading whole sequences.

    Args:
        root: the dataset folder.
        split: split folder name.
        frames_only: skip ``depth.npz`` in ``__getitem__`` (``depth`` is then ``None``).

    Example:
        >>> import tempfile
        >>> ds = SequenceDataset(tempfile.mkdtemp(), "val")
        >>> len(ds), ds.split
        (0, 'val')
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", frames_only: bool = False):
        self.root = Path(root)
        self.split = split
        self.frames_only = frames_only
        self.info = _dataset_or_none(self.root)
        self.ids: list[str] = list_sequences(self.root, split)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> SequenceData:
        return read_sequence(
            self.root, self.split, self._id(i), depth=not self.frames_only, dataset=self.info
        )

    def __iter__(self) -> Iterator[SequenceData]:
        for i in range(len(self)):
            yield self[i]

    def _id(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} sequences")
        return self.ids[i]

    def meta(self, i: int) -> dict[str, Any]:
        """The ``meta.json`` of sequence ``i``."""
        return read_json(sequence_dir(self.root, self.split, self._id(i)) / META_JSON)

    def load_poses(self, i: int) -> np.ndarray:
        """``(A, F, 3)`` poses of sequence ``i``."""
        meta = self.meta(i)
        a, f = int(meta["num_agents"]), int(meta["num_frames"])
        return load_npy(
            sequence_dir(self.root, self.split, self._id(i)) / POSES_FILE, np.float64, (a, f, 3)
        )

    def load_frames(
        self, i: int, agent: int, start: int = 0, stop: int | None = None
    ) -> np.ndarray:
        """Frames ``start:stop`` of ``agent`` in sequence ``i``: ``(stop - start, 2H, 2W, 3)``.

        Reads only the window, through a read-only memory map; returns an ordinary array.
        """
        folder = sequence_dir(self.root, self.split, self._id(i))
        meta = read_json(folder / META_JSON)
        a, f, h2, w2 = _shape(meta, folder / META_JSON, self.info)
        if not 0 <= agent < a:
            raise IndexError(f"agent {agent} out of range for {a} agents")
        mapped = load_npy(folder / frames_file(agent), np.uint8, (f, h2, w2, 3), mmap=True)
        return np.array(mapped[start:stop])
