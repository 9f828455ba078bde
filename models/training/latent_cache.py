"""Latent cache: the frozen VAE's encodings of a dataset, computed once, read by the trainer.

Stage 1 and stage 2 train the transformer with a frozen VAE, yet encoding every agent's
29-frame chunk and 4 memory frames on every step dominates a step on a GPU. The VAE's
``encode_video``/``encode_images`` return the posterior *mean* (deterministic), so their
results can be stored once and read back exactly:

- **chunk latents** per (sequence, agent, start): the causal VAE's encoding of a 29-frame
  window depends on where it starts (its first frame is encoded alone), so one entry per start
  on a grid of ``start_stride`` frames (0, 4, 8, … by default). A cached run draws chunk starts
  only on that grid;
- **image latents** per (sequence, agent, frame): every frame encoded as a single image, as the
  memory frames are.

The conditioning frame is *not* cached: it gets fresh pixel noise every step (paper Sec. 3.4)
and is still encoded from pixels (one image per agent).

Layout (nothing is pickled; every file is written to a temporary name and renamed)::

    CACHE/cache.json              manifest: VAE identity, stride, dataset identity, shapes, dtype
    CACHE/<seq_id>.safetensors    one per sequence of the split
        chunks   (A, S, C, 8, h, w)   unscaled means of the windows starting at 0, s, 2s, …
        images   (A, F, C, h, w)      unscaled means of every frame as a single image
        metadata sequence, source_sha256 (meta.json, poses.npy, frames), num_frames,
                 start_stride

Latents are stored unscaled (as ``encode_video`` returns them); the trainer multiplies them by
the pipeline's scaling factor, which the manifest records as part of the VAE's identity.

Example (build, then train from the cache)::

    build_latent_cache("data/town64", pipe, "data/town64_latents", start_stride=4)
    Trainer(pipe, SequenceDataset("data/town64", frames_only=True), "runs/r", config,
            latents="data/town64_latents").run()
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from shareverse_env.models.training.batches import (
    ChunkExample,
    chunk_starts,
    draw_start,
    retrieve_memory,
    to_video_tensor,
)
from shareverse_env.models.vae import ENCODER_SIDE, encode_images, encode_video
from tqdm.auto import tqdm

from shareverse_env.core.files import atomic_file, exclusive_writer
from shareverse_env.core.geometry import CHUNK_FRAMES
from shareverse_env.data.format import (
    DATASET_JSON,
    META_JSON,
    POSES_FILE,
    frames_file,
    read_json,
    sequence_dir,
    write_json_atomic,
)
from shareverse_env.data.reader import SequenceDataset

FORMAT_NAME = "shareverse-latent-cache"
FORMAT_VERSION = 1
MANIFEST = "cache.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------- identities
def vae_identity(vae: torch.nn.Module) -> dict[str, Any]:
    """``{"sha256", "scaling_factor"}``: a hash of the VAE's config and encoder-side weights.

    Cached latents depend on the encoder and ``quant_conv`` alone (``ENCODER_SIDE``), so a
    decoder retrained by the ``decoder`` stage keeps its cache. The config hash leaves out
    private keys (``_name_or_path``, …) and the scaling factor, which is recorded on its own;
    both must match for a cache to be used.
    """
    digest = hashlib.sha256()
    config = {
        k: v for k, v in dict(vae.config).items() if not k.startswith("_") and k != "scaling_factor"
    }
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(vae.state_dict().items()):
        if name.split(".", 1)[0] not in ENCODER_SIDE:
            continue
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"sha256": digest.hexdigest(), "scaling_factor": float(vae.config.scaling_factor)}


def dataset_identity(root: str | os.PathLike, split: str) -> dict[str, Any]:
    """``{"root", "split", "sha256"}``: the hash of ``dataset.json`` (``None`` without one).

    ``splits`` and the generator's sequence count are left out so that a dataset that grows
    keeps its identity; every sequence is also checked on its own (:func:`sequence_hash`).
    """
    root = Path(root)
    digest = None
    if (root / DATASET_JSON).is_file():
        info = dict(read_json(root / DATASET_JSON))
        info.pop("splits", None)
        if isinstance(info.get("generator"), dict):
            info["generator"] = {k: v for k, v in info["generator"].items() if k != "sequences"}
        digest = hashlib.sha256(json.dumps(info, sort_keys=True).encode()).hexdigest()
    return {"root": str(root.resolve()), "split": split, "sha256": digest}


_HASH_BLOCK = 8 << 20  # bytes read at a time while hashing frames


def sequence_hash(root: str | os.PathLike, split: str, seq_id: str) -> str:
    """sha256 of a sequence's ``meta.json``, ``poses.npy`` and every agent's frames.

    The frames count too: a sequence re-rendered from the same seeds and poses by a changed
    renderer (or converted again from another simulator) must not reuse stale latents. Hashing
    runs at about 0.5 GB/s on a loaded 2-core CPU: about 12 s for a 6 GB dataset.
    """
    folder = sequence_dir(root, split, seq_id)
    digest = hashlib.sha256()
    for name in (META_JSON, POSES_FILE):
        digest.update(name.encode())
        digest.update((folder / name).read_bytes())
    agents = np.load(folder / POSES_FILE, mmap_mode="r").shape[0]
    for agent in range(agents):
        name = frames_file(agent)
        digest.update(name.encode())
        with open(folder / name, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def _short(identity: dict[str, Any]) -> str:
    sha = identity.get("sha256")
    return f"{sha[:12]}…" if sha else "none (no dataset.json)"


# ---------------------------------------------------------------------------------- building
@dataclass
class BuildReport:
    """What :func:`build_latent_cache` did: the sequences it encoded and those already there."""

    folder: Path
    encoded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def prepare_build_folder(
    out: Path,
    manifest_name: str,
    manifest: dict[str, Any],
    read_manifest: Any,
    keys: tuple[str, ...],
    what: str,
) -> None:
    """Start or continue a build in ``out`` (under :func:`exclusive_writer`): refuse a folder
    built with another VAE, dataset or ``keys`` of ``manifest``, write the manifest of a new
    one, and remove the temporary files of an interrupted write."""
    if (out / manifest_name).is_file():
        saved = read_manifest(out)
        _check_vae(out, saved["vae"], manifest["vae"])
        _check_dataset(out, saved["dataset"], manifest["dataset"])
        for key in keys:
            if saved.get(key) != manifest[key]:
                raise ValueError(
                    f"{what} {out} holds {key} = {saved.get(key)}, this build asks for "
                    f"{manifest[key]}; use another folder"
                )
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / manifest_name, manifest)
    for stale in out.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def is_current(path: Path, source: str) -> bool:
    """Whether the sequence file ``path`` exists and was built from data of hash ``source``."""
    meta = _file_metadata(path)
    return meta is not None and meta.get("source_sha256") == source


def _manifest(pipe: Any, data: SequenceDataset, start_stride: int, dtype: str) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "vae": vae_identity(pipe.vae),
        "start_stride": int(start_stride),
        "dataset": dataset_identity(data.root, data.split),
        "frame_hw": list(pipe.frame_shape[:2]),
        "latent_hw": list(pipe.latent_hw),
        "latent_channels": int(pipe.vae.config.latent_channels),
        "chunk_frames": CHUNK_FRAMES,
        "dtype": dtype,
        "latents": "unscaled posterior means (encode_video / encode_images); multiply by "
        "vae.scaling_factor",
    }


def _check_vae(folder: Path, saved: dict[str, Any], mine: dict[str, Any]) -> None:
    if saved != mine:
        raise ValueError(
            f"latent cache {folder} was built with another VAE: the cache's VAE has weights+config "
            f"sha256 {saved.get('sha256', '?')[:12]}… and scaling factor "
            f"{saved.get('scaling_factor')}, the model's VAE {mine['sha256'][:12]}… and "
            f"{mine['scaling_factor']}; rebuild it with `shareverse-train encode` from this model "
            "(into a new folder)"
        )


def _check_dataset(folder: Path, saved: dict[str, Any], mine: dict[str, Any]) -> None:
    if saved.get("sha256") != mine["sha256"] or saved.get("split") != mine["split"]:
        raise ValueError(
            f"latent cache {folder} was built for another dataset: the cache's is "
            f"{saved.get('root')} (split {saved.get('split')}, dataset.json {_short(saved)}), the "
            f"training data is {mine['root']} (split {mine['split']}, dataset.json "
            f"{_short(mine)}); build a cache for this dataset with `shareverse-train encode`"
        )


def _read_manifest(folder: Path) -> dict[str, Any]:
    manifest = read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{folder / MANIFEST}: not a {FORMAT_NAME} manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder / MANIFEST}: version {manifest.get('version')!r}; this reader reads "
            f"{FORMAT_VERSION}"
        )
    return manifest


def _file_metadata(path: Path) -> dict[str, str] | None:
    """The metadata of a sequence file, ``None`` if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception:  # safetensors raises several types for damaged headers
        return None


@torch.no_grad()
def encode_sequence(
    vae: torch.nn.Module, frames: np.ndarray, start_stride: int, batch_size: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chunks (A, S, C, 8, h, w), images (A, F, C, h, w))`` unscaled, on the CPU.

    Each window is encoded for all agents at once — the batch the trainer encodes on the fly
    for batch size 1 — so cached and on-the-fly latents are bitwise equal there.
    """
    param = next(vae.parameters())
    device, dtype = param.device, param.dtype
    agents, count = frames.shape[:2]
    chunks = []
    for start in chunk_starts(count, 0, start_stride):
        video = to_video_tensor(frames[:, start : start + CHUNK_FRAMES], device, dtype)
        chunks.append(encode_video(vae, video).cpu())  # (A, C, 8, h, w)
    flat = frames.reshape(agents * count, *frames.shape[2:])
    images = []
    for i in range(0, len(flat), batch_size):
        x = to_video_tensor(flat[i : i + batch_size, None], device, dtype)[:, :, 0]
        images.append(encode_images(vae, x)[:, :, 0].cpu())
    return torch.stack(chunks, 1), torch.cat(images).unflatten(0, (agents, count))


def build_latent_cache(
    data_root: str | os.PathLike,
    pipe: Any,
    out: str | os.PathLike,
    *,
    split: str = "train",
    start_stride: int = 4,
    dtype: str = "float32",
    batch_size: int = 8,
    progress: bool = True,
) -> BuildReport:
    """Encode every complete sequence of ``data_root/split`` with ``pipe.vae`` into ``out``.

    Resumable: sequences whose file is already there (and was built from the same sequence
    data) are skipped, so rerunning after an interruption — or after the dataset grew — encodes
    only what is missing. A folder holding a cache of another VAE, dataset, stride or dtype is
    refused with an error naming both.

    Args:
        data_root: the dataset folder (``shareverse-data``).
        pipe: a :class:`~shareverse_env.models.pipeline.ShareVersePipeline`; only its VAE (on
            its own device and dtype) is used.
        out: the cache folder.
        split: the dataset split to encode.
        start_stride: chunk starts are cached at multiples of this.
        dtype: storage dtype (``float32``, exact; ``float16``/``bfloat16`` halve the size).
        batch_size: single images per VAE call (8, the memory batch of two agents, gave
            bitwise-equal memory latents on a CPU; larger batches may differ in the last bits).
        progress: show a tqdm bar.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}; got {dtype!r}")
    if start_stride < 1:
        raise ValueError(f"start_stride must be >= 1; got {start_stride}")
    started = time.perf_counter()
    out = Path(out)
    data = SequenceDataset(data_root, split, frames_only=True)
    if len(data) == 0:
        raise ValueError(f"no complete sequences in {Path(data_root) / split}")
    manifest = _manifest(pipe, data, start_stride, dtype)
    # One builder per folder: a second one would delete the first one's temporary files.
    with exclusive_writer(out, "latent cache"):
        prepare_build_folder(
            out,
            MANIFEST,
            manifest,
            _read_manifest,
            ("start_stride", "dtype", "frame_hw"),
            "latent cache",
        )
        frame_hw = tuple(pipe.frame_shape[:2])
        report = BuildReport(out)
        vae = pipe.vae.eval()
        for index in tqdm(range(len(data)), desc="encode", disable=not progress):
            seq_id = data.ids[index]
            path = out / f"{seq_id}.safetensors"
            source = sequence_hash(data.root, split, seq_id)
            if is_current(path, source):
                report.skipped.append(seq_id)
                continue
            frames = data[index].frames
            if tuple(frames.shape[2:4]) != frame_hw:
                raise ValueError(
                    f"sequence {seq_id} has {frames.shape[2]}x{frames.shape[3]} frames; the model "
                    f"encodes {frame_hw[0]}x{frame_hw[1]}"
                )
            chunks, images = encode_sequence(vae, frames, start_stride, batch_size)
            tensors = {
                "chunks": chunks.to(DTYPES[dtype]).contiguous(),
                "images": images.to(DTYPES[dtype]).contiguous(),
            }
            metadata = {
                "sequence": seq_id,
                "source_sha256": source,
                "num_frames": str(frames.shape[1]),
                "num_agents": str(frames.shape[0]),
                "start_stride": str(start_stride),
            }
            with atomic_file(path) as tmp:
                save_file(tensors, tmp, metadata=metadata)
            report.encoded.append(seq_id)
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------------------- reading
class LatentCache:
    """A latent cache folder, checked against a model and a dataset before use.

    ``LatentCache(folder)`` reads the manifest; :meth:`check` refuses a cache of another VAE
    (weights, config or scaling factor), of another dataset or split, one that lacks sequences
    of the dataset, or whose sequences were built from other sequence data.
    :meth:`draw_chunk` draws a training example like
    :func:`~shareverse_env.models.training.batches.draw_chunk`, with the same random draws,
    but reads latents instead of frames.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            raise FileNotFoundError(
                f"{self.folder / MANIFEST}: missing; build a cache with `shareverse-train encode`"
            )
        self.manifest = _read_manifest(self.folder)
        self.stride = int(self.manifest["start_stride"])

    def path(self, seq_id: str) -> Path:
        return self.folder / f"{seq_id}.safetensors"

    def check(self, pipe: Any, data: Any) -> None:
        """Raise ``ValueError`` unless this cache was built with ``pipe.vae`` from ``data``.

        ``data`` is a :class:`~shareverse_env.data.SequenceDataset` (its ``root``, ``split`` and
        ``ids`` name the sequences). Reads every sequence's ``meta.json`` and ``poses.npy``.
        """
        if not all(hasattr(data, k) for k in ("root", "split", "ids")):
            raise TypeError(
                "a latent cache needs a SequenceDataset (root, split, ids) as training data; got "
                f"{type(data).__name__}"
            )
        _check_vae(self.folder, self.manifest["vae"], vae_identity(pipe.vae))
        _check_dataset(
            self.folder, self.manifest["dataset"], dataset_identity(data.root, data.split)
        )
        if self.manifest["latent_hw"] != list(pipe.latent_hw):
            raise ValueError(
                f"latent cache {self.folder} holds {self.manifest['latent_hw']} latents; the model "
                f"uses {list(pipe.latent_hw)}"
            )
        missing, changed = [], []
        for seq_id in data.ids:
            meta = _file_metadata(self.path(seq_id))
            if meta is None:
                missing.append(seq_id)
            elif meta.get("source_sha256") != sequence_hash(data.root, data.split, seq_id):
                changed.append(seq_id)
        if missing:
            raise ValueError(
                f"latent cache {self.folder} lacks {len(missing)} of the {len(data.ids)} sequences "
                f"of {data.root}/{data.split} (e.g. {', '.join(missing[:3])}): run "
                "`shareverse-train encode` again to add them"
            )
        if changed:
            raise ValueError(
                f"latent cache {self.folder} was built from other data for sequences "
                f"{', '.join(changed[:3])} of {data.root}/{data.split} (meta.json, poses.npy or "
                "frames differ): run `shareverse-train encode` again to re-encode them"
            )

    def load(self, seq_id: str) -> dict[str, torch.Tensor]:
        """The whole file of one sequence: ``chunks`` and ``images`` (stored dtype)."""
        with safe_open(self.path(seq_id), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}

    def draw_chunk(
        self,
        data: Any,
        rng: np.random.Generator,
        with_memory: bool,
        min_history: int,
        source: str,
        start_stride: int | None = None,
    ) -> ChunkExample:
        """The example of ``rng``'s draw with cached latents; ``video`` is the conditioning frame.

        Consumes ``rng`` exactly as ``draw_chunk(..., start_stride=start_stride)`` does, so both
        draw the same sequence, start and memory; ``start_stride`` (default: the cache's) must
        be a multiple of the cache's stride.
        """
        stride = start_stride or self.stride
        if stride % self.stride:
            raise ValueError(
                f"start stride {stride} is not a multiple of the cache's stride {self.stride}"
            )
        index = int(rng.integers(len(data)))
        seq_id = data.ids[index]
        poses = data.load_poses(index)
        agents, frames = poses.shape[:2]
        start = draw_start(rng, frames, min_history if with_memory else 0, stride, index)
        window = slice(start, start + CHUNK_FRAMES)
        memory_poses = memory_latents = None
        with safe_open(self.path(seq_id), framework="pt") as f:
            latents = f.get_slice("chunks")[:, start // self.stride].float()
            if with_memory:
                who, when = retrieve_memory(poses, start, source)
                images = f.get_slice("images")
                memory_latents = torch.stack(
                    [
                        torch.stack([images[int(a), int(t)] for a, t in zip(wa, wt, strict=True)])
                        for wa, wt in zip(who, when, strict=True)
                    ]
                ).float()
                memory_poses = poses[who, when]
        cond = np.stack([data.load_frames(index, a, start, start + 1) for a in range(agents)])
        return ChunkExample(
            cond,
            np.asarray(poses[:, window], dtype=np.float64),
            None,
            memory_poses,
            index,
            start,
            latents=latents,
            memory_latents=memory_latents,
        )


def open_latent_cache(folder: str | os.PathLike, pipe: Any, data: Any) -> LatentCache:
    """:class:`LatentCache` of ``folder``, checked against ``pipe`` and ``data``."""
    cache = LatentCache(folder)
    cache.check(pipe, data)
    return cache
