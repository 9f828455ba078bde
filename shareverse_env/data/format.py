"""The on-disk dataset format: layout, metadata and safe, atomic writes.

A dataset is a folder of plain ``.npy``/``.npz`` arrays and JSON; nothing in it is ever
unpickled (see ``docs/dataset.md`` for the full specification)::

    DIR/dataset.json               format, version, view size, fps, rig, intrinsics, splits
    DIR/<split>/<seq_id>/          seq_id = f"{index:06d}"
        meta.json                  per-sequence metadata
        poses.npy                  (A, F, 3) float64 ego poses (x, y, yaw)
        frames_agent{k}.npy        (F, 2H, 2W, 3) uint8 tiled views [[front, rear], [left, right]]
        depth.npz                  key "depth": (A, F, 2H, 2W) float16 z-depth, metres, sky = inf
        COMPLETE                   empty marker, written last

Every sequence is written into ``<split>/.<seq_id>.tmp/`` and renamed to ``<seq_id>/`` in one
step, so a sequence folder either is complete or does not exist.

Example:
    >>> import tempfile
    >>> import numpy as np
    >>> data = SequenceData(
    ...     frames=np.zeros((2, 3, 32, 48, 3), np.uint8),
    ...     depth=np.full((2, 3, 32, 48), 5.0, np.float32),
    ...     poses=np.zeros((2, 3, 3)),
    ...     meta={"num_agents": 2, "num_frames": 3, "view_hw": [16, 24]},
    ... )
    >>> root = tempfile.mkdtemp()
    >>> write_sequence(root, "train", 0, data).name
    '000000'
    >>> sorted(p.name for p in (Path(root) / "train" / "000000").iterdir())
    ['COMPLETE', 'depth.npz', 'frames_agent0.npy', 'frames_agent1.npy', 'meta.json', 'poses.npy']
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shareverse_env.core.geometry import FPS, VIEW_NAMES, CameraRig

FORMAT_NAME = "shareverse-dataset"
FORMAT_VERSION = 1
DATASET_JSON = "dataset.json"
META_JSON = "meta.json"
POSES_FILE = "poses.npy"
DEPTH_FILE = "depth.npz"
COMPLETE_MARKER = "COMPLETE"
SPLITS: tuple[str, ...] = ("train", "val")
"""Split folders written by the generator (readers accept any folder name)."""

DEPTH_DTYPE = np.float16
"""Depth is stored as float16: ~0.03 m resolution at 50 m, ~0.1 m at 200 m; sky is ``inf``."""


def frames_file(agent: int) -> str:
    """Name of agent ``agent``'s frames file inside a sequence folder."""
    return f"frames_agent{int(agent)}.npy"


def seq_id(index: int) -> str:
    """Folder name of sequence ``index`` of a split: six zero-padded digits."""
    if index < 0:
        raise ValueError(f"sequence index must be ≥ 0; got {index}")
    return f"{int(index):06d}"


@dataclass
class SequenceData:
    """One synchronised multi-agent sequence.

    Attributes:
        frames: ``(A, F, 2H, 2W, 3)`` uint8 tiled RGB views ``[[front, rear], [left, right]]``.
        depth: ``(A, F, 2H, 2W)`` float z-depth along each camera's optical axis in metres,
            ``inf`` where the sky is seen; ``None`` when not loaded.
        poses: ``(A, F, 3)`` float64 ego poses ``(x, y, yaw)`` in the world frame.
        meta: JSON-friendly metadata (scenario, weather, town seed, ``num_agents``,
            ``num_frames``, ``view_hw``, ...).

    Example:
        >>> import numpy as np
        >>> data = SequenceData(np.zeros((2, 4, 32, 48, 3), np.uint8), None, np.zeros((2, 4, 3)),
        ...                     {"num_agents": 2, "num_frames": 4, "view_hw": [16, 24]})
        >>> data.num_agents, data.num_frames, data.view_hw
        (2, 4, (16, 24))
    """

    frames: np.ndarray
    depth: np.ndarray | None
    poses: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_agents(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])

    @property
    def view_hw(self) -> tuple[int, int]:
        return (int(self.frames.shape[2]) // 2, int(self.frames.shape[3]) // 2)

    def validate(self) -> None:
        """Raise ``ValueError`` unless the arrays agree with each other and with ``meta``."""
        a, f, h2, w2 = self.frames.shape[:4]
        _expect("frames", self.frames, np.uint8, (a, f, h2, w2, 3))
        _expect("poses", self.poses, None, (a, f, 3))
        if self.depth is not None:
            _expect("depth", self.depth, None, (a, f, h2, w2))
        if h2 % 2 or w2 % 2:
            raise ValueError(f"tiled frames need even height and width; got {(h2, w2)}")
        for key, want in (("num_agents", a), ("num_frames", f)):
            if key in self.meta and int(self.meta[key]) != want:
                raise ValueError(f"meta[{key!r}] = {self.meta[key]} but the arrays have {want}")
        if "view_hw" in self.meta and tuple(self.meta["view_hw"]) != self.view_hw:
            raise ValueError(f"meta['view_hw'] = {self.meta['view_hw']} but frames are {h2}×{w2}")


def _expect(name: str, array: np.ndarray, dtype: Any, shape: tuple[int, ...]) -> None:
    if dtype is not None and array.dtype != dtype:
        raise ValueError(f"{name} must be {np.dtype(dtype)}; got {array.dtype}")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(array.shape)}")


# --------------------------------------------------------------------------------------------
# JSON and dataset.json
# --------------------------------------------------------------------------------------------


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (expected a JSON file)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def rig_info(rig: CameraRig) -> dict[str, Any]:
    """JSON-friendly parameters of a camera rig."""
    info = asdict(rig)
    info["offsets"] = [list(map(float, o)) for o in rig.offsets]
    info["views"] = list(VIEW_NAMES)
    return info


def rig_from_info(info: dict[str, Any]) -> CameraRig:
    """The :class:`CameraRig` described by :func:`rig_info`."""
    return CameraRig(
        mount_height=float(info["mount_height"]),
        offsets=tuple(tuple(float(v) for v in o) for o in info["offsets"]),
        hfov_deg=float(info["hfov_deg"]),
    )


def dataset_info(
    *,
    num_agents: int,
    num_frames: int,
    view_hw: tuple[int, int],
    splits: dict[str, dict[str, Any]],
    generator: dict[str, Any],
    rig: CameraRig | None = None,
    fps: int = FPS,
) -> dict[str, Any]:
    """The contents of ``dataset.json``.

    Args:
        num_agents, num_frames, view_hw: shape of every sequence (``view_hw`` is one view).
        splits: per split, at least ``{"sequences": N}`` (the generator adds ``town_seeds``).
        generator: the settings that produced the data (compared when resuming).
        rig: the camera rig (default :class:`CameraRig`); stored with K and camera-to-ego.
        fps: frames per second.
    """
    rig = rig or CameraRig()
    height, width = (int(v) for v in view_hw)
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "view_hw": [height, width],
        "frame_hw": [2 * height, 2 * width],
        "fps": int(fps),
        "num_agents": int(num_agents),
        "num_frames": int(num_frames),
        "views": list(VIEW_NAMES),
        "tile_layout": [["front", "rear"], ["left", "right"]],
        "depth": {"dtype": "float16", "units": "metres", "kind": "z", "sky": "inf"},
        "rig": rig_info(rig),
        "intrinsics": rig.intrinsics(height, width).tolist(),
        "camera_to_ego": rig.camera_to_ego().tolist(),
        "splits": splits,
        "generator": generator,
    }


def write_dataset_info(root: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write ``dataset.json`` into ``root`` (atomically); returns its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / DATASET_JSON
    write_json_atomic(path, info)
    return path


def read_dataset_info(root: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``root/dataset.json`` (format name and version)."""
    path = Path(root) / DATASET_JSON
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a {FORMAT_NAME} file (format = {info.get('format')!r})")
    if info.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {info.get('version')!r}; this reader reads {FORMAT_VERSION}"
        )
    return info


# --------------------------------------------------------------------------------------------
# Safe .npy reading
# --------------------------------------------------------------------------------------------


def npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """``(shape, dtype, fortran_order, data_offset)`` from an ``.npy`` header, without loading.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the header is unreadable or describes Python objects (pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        except Exception as err:
            raise ValueError(f"{path}: not a valid .npy file ({err})") from err
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(
            f"{path}: holds Python objects ({dtype}); loading it would unpickle code, refused"
        )
    return tuple(int(s) for s in shape), dtype, bool(fortran), offset


def load_npy(
    path: str | os.PathLike,
    dtype: Any,
    shape: tuple[int, ...],
    *,
    mmap: bool = False,
) -> np.ndarray:
    """Load an ``.npy`` file with ``allow_pickle=False`` after checking its header and size.

    Args:
        path: the file.
        dtype: the dtype it must have.
        shape: the shape it must have.
        mmap: memory-map it read-only instead of reading it.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: wrong dtype or shape, truncated data, or pickled objects; the message names
            the file and what was expected.
    """
    path = Path(path)
    want = f"{np.dtype(dtype)} {tuple(shape)}"
    got_shape, got_dtype, _, offset = npy_header(path)
    if got_dtype != np.dtype(dtype) or got_shape != tuple(shape):
        raise ValueError(f"{path}: expected {want}; the file holds {got_dtype} {got_shape}")
    need = offset + math.prod(shape) * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size < need:
        raise ValueError(
            f"{path}: truncated: expected {want} ({need} bytes with the header), "
            f"the file has {size} bytes"
        )
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except ValueError as err:
        raise ValueError(f"{path}: cannot be loaded without pickle ({err})") from err


def load_npz_array(path: str | os.PathLike, key: str, dtype: Any, shape: tuple[int, ...]):
    """Array ``key`` of an ``.npz`` archive, loaded with ``allow_pickle=False`` and checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    want = f"{np.dtype(dtype)} {tuple(shape)}"
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise ValueError(f"{path}: no array {key!r} (has {archive.files}); expected {want}")
            array = archive[key]
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: unreadable, expected {key!r} {want} ({err})") from err
    except Exception as err:  # zipfile.BadZipFile, EOFError, zlib errors of a truncated file
        raise ValueError(
            f"{path}: unreadable or truncated, expected {key!r} {want} ({err})"
        ) from err
    if array.dtype != np.dtype(dtype) or tuple(array.shape) != tuple(shape):
        raise ValueError(f"{path}: expected {key!r} {want}; got {array.dtype} {array.shape}")
    return array


# --------------------------------------------------------------------------------------------
# Writing sequences
# --------------------------------------------------------------------------------------------


def sequence_dir(root: str | os.PathLike, split: str, index_or_id: int | str) -> Path:
    """Folder of one sequence."""
    name = index_or_id if isinstance(index_or_id, str) else seq_id(index_or_id)
    return Path(root) / split / name


def is_complete(path: str | os.PathLike) -> bool:
    """Whether a sequence folder carries its ``COMPLETE`` marker."""
    return (Path(path) / COMPLETE_MARKER).is_file()


def write_sequence(root: str | os.PathLike, split: str, index: int, data: SequenceData) -> Path:
    """Write one sequence atomically; returns its folder.

    The files go into ``<split>/.<seq_id>.tmp/`` (removed first if a crashed run left it), the
    ``COMPLETE`` marker last, then the folder is renamed to ``<split>/<seq_id>/``, replacing an
    existing sequence of that index.
    """
    data.validate()
    if data.depth is None:
        raise ValueError("write_sequence needs depth; SequenceData.depth is None")
    name = seq_id(index)
    split_dir = Path(root) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    tmp = split_dir / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    meta = dict(data.meta)
    meta.setdefault("num_agents", data.num_agents)
    meta.setdefault("num_frames", data.num_frames)
    meta.setdefault("view_hw", list(data.view_hw))
    (tmp / META_JSON).write_text(json.dumps(meta, indent=2) + "\n")
    np.save(tmp / POSES_FILE, np.ascontiguousarray(data.poses, dtype=np.float64))
    for k in range(data.num_agents):
        np.save(tmp / frames_file(k), np.ascontiguousarray(data.frames[k]))
    np.savez_compressed(tmp / DEPTH_FILE, depth=data.depth.astype(DEPTH_DTYPE))
    (tmp / COMPLETE_MARKER).touch()
    final = split_dir / name
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def remove_stale_tmp(root: str | os.PathLike) -> list[Path]:
    """Delete the ``.<seq_id>.tmp`` folders that interrupted writes left; returns them."""
    removed = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for tmp in sorted(split_dir.glob(".*.tmp")):
            if tmp.is_dir():
                shutil.rmtree(tmp)
                removed.append(tmp)
    return removed
