"""Cache-input store: the scene-cache inputs of a dataset's chunks, rendered and encoded once.

A model with a scene-cache input needs, for every training chunk, the cache rendered into the
chunk's cameras and encoded by the VAE (:mod:`.cache_data`): about a second of CPU per chunk,
as much as a training step. ``shareverse-train encode-cache`` does it once for every chunk
start on a grid, so a CPU step costs what it cost before the cache input:

    CACHE/cache_inputs.json         manifest: VAE identity, dataset identity, stride, noise, seed,
                                    memory source, splat caps, shapes
    CACHE/<seq_id>.safetensors      states (A, S, 8, Cc, h, w) float16 for the starts 0, s, 2s, …
                                    metadata sequence, source_sha256, num_frames, start_stride

Each start's depth noise comes from ``numpy.random.default_rng([seed, sequence index, start])``:
one reproducible draw per chunk (the per-step cache drop is drawn in training). Writes are
atomic (temporary name, then rename) and the build resumes where it stopped.

Example::

    build_cache_inputs("data/town64", pipe, "data/town64_cache", start_stride=4)
    Trainer(pipe, SequenceDataset("data/town64", frames_only=True), "runs/cache", config,
            cache_inputs="data/town64_cache").run()
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from shareverse_env.models.cache_input import cache_states
from shareverse_env.models.training.batches import chunk_starts
from shareverse_env.models.training.cache_data import CacheNoise, chunk_cache_guide
from shareverse_env.models.training.latent_cache import (
    BuildReport,
    _check_dataset,
    _check_vae,
    dataset_identity,
    is_current,
    prepare_build_folder,
    sequence_hash,
    vae_identity,
)
from tqdm.auto import tqdm

from shareverse_env.core.files import atomic_file, exclusive_writer
from shareverse_env.data.reader import SequenceDataset
from shareverse_env.scene.cache import MAX_FOOTPRINT, footprint_caps

FORMAT_NAME = "shareverse-cache-inputs"
FORMAT_VERSION = 1
MANIFEST = "cache_inputs.json"


LEGACY_MAX_FOOTPRINT = [3, 3]
"""The splat caps read for a store whose manifest does not record them: such stores were
rendered with 3 × 3 splats."""


def _manifest(
    pipe: Any,
    data: SequenceDataset,
    stride: int,
    noise: CacheNoise,
    seed: int,
    source: str,
    caps: tuple[int, int],
) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "vae": vae_identity(pipe.vae),
        "dataset": dataset_identity(data.root, data.split),
        "start_stride": stride,
        "noise": asdict(noise),
        "seed": seed,
        "memory_source": source,
        "max_footprint": list(caps),
        "channels": int(pipe.vae.config.latent_channels) + 3,
        "latent_hw": list(pipe.latent_hw),
    }


def _read_manifest(folder: Path) -> dict[str, Any]:
    from shareverse_env.data.format import read_json

    manifest = dict(read_json(folder / MANIFEST))
    if manifest.get("format") != FORMAT_NAME or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{folder / MANIFEST} is not a {FORMAT_NAME} v{FORMAT_VERSION} manifest")
    manifest.setdefault("max_footprint", LEGACY_MAX_FOOTPRINT)
    return manifest


def sequence_cache_states(
    pipe: Any,
    frames: np.ndarray,
    depth: np.ndarray,
    poses: np.ndarray,
    starts: range,
    seed: int,
    index: int,
    noise: CacheNoise,
    source: str = "all",
    max_footprint: int | tuple[int, int] = MAX_FOOTPRINT,
) -> torch.Tensor:
    """``(A, S, 8, Cc, h, w)`` float32 cache inputs of one sequence at ``starts``."""
    out = []
    for start in starts:
        rng = np.random.default_rng([seed, index, start])
        guide = chunk_cache_guide(
            frames, depth, poses, start, pipe.rig, pipe.view_hw, rng, noise, source, max_footprint
        )
        with torch.no_grad():
            out.append(cache_states(guide, pipe.encode_frames).float().cpu())
    return torch.stack(out, dim=1)


def build_cache_inputs(
    data_root: str | os.PathLike,
    pipe: Any,
    out: str | os.PathLike,
    *,
    split: str = "train",
    start_stride: int = 4,
    noise: CacheNoise | None = None,
    seed: int = 0,
    memory_source: str = "all",
    max_footprint: int | tuple[int, int] = MAX_FOOTPRINT,
    progress: bool = True,
) -> BuildReport:
    """Render and encode the cache input of every chunk start of ``data_root/split`` into ``out``.

    Needs the dataset's depth. Resumable and checked like the latent cache: a folder built
    with another VAE, dataset, stride, noise, seed, memory source or splat caps
    (``max_footprint``, the env's by default) is refused.
    """
    noise = noise or CacheNoise()
    noise.validate()
    if start_stride < 1:
        raise ValueError(f"start_stride must be >= 1; got {start_stride}")
    started = time.perf_counter()
    out = Path(out)
    data = SequenceDataset(data_root, split, frames_only=False)
    if len(data) == 0:
        raise ValueError(f"no complete sequences in {Path(data_root) / split}")
    caps = footprint_caps(max_footprint)
    manifest = _manifest(pipe, data, start_stride, noise, seed, memory_source, caps)
    keys = (
        "start_stride", "noise", "seed", "memory_source", "max_footprint", "channels", "latent_hw"
    )  # fmt: skip
    with exclusive_writer(out, "cache-input store"):
        prepare_build_folder(out, MANIFEST, manifest, _read_manifest, keys, "cache-input store")
        report = BuildReport(out)
        for index in tqdm(range(len(data)), desc="encode cache inputs", disable=not progress):
            seq_id = data.ids[index]
            path = out / f"{seq_id}.safetensors"
            source = sequence_hash(data.root, split, seq_id)
            if is_current(path, source):
                report.skipped.append(seq_id)
                continue
            seq = data[index]
            starts = chunk_starts(seq.frames.shape[1], 0, start_stride)
            states = sequence_cache_states(
                pipe,
                seq.frames,
                seq.depth,
                seq.poses,
                starts,
                seed,
                index,
                noise,
                memory_source,
                caps,
            )
            metadata = {
                "sequence": seq_id,
                "source_sha256": source,
                "num_frames": str(seq.frames.shape[1]),
                "start_stride": str(start_stride),
            }
            with atomic_file(path) as tmp:
                save_file({"states": states.half().contiguous()}, tmp, metadata=metadata)
            report.encoded.append(seq_id)
    report.seconds = time.perf_counter() - started
    return report


class CacheInputStore:
    """A cache-input folder, checked against a model and a dataset before use."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            raise FileNotFoundError(
                f"{self.folder / MANIFEST}: missing; build it with `shareverse-train encode-cache`"
            )
        self.manifest = _read_manifest(self.folder)
        self.stride = int(self.manifest["start_stride"])

    def path(self, seq_id: str) -> Path:
        return self.folder / f"{seq_id}.safetensors"

    def check(self, pipe: Any, data: Any) -> None:
        """Raise ``ValueError`` unless the store was built with ``pipe``'s VAE from ``data``
        and every sequence of ``data`` is in it, built from the same sequence data."""
        _check_vae(self.folder, self.manifest["vae"], vae_identity(pipe.vae))
        _check_dataset(
            self.folder, self.manifest["dataset"], dataset_identity(data.root, data.split)
        )
        channels = pipe.transformer.config.cache_in_channels
        if self.manifest["channels"] != channels:
            raise ValueError(
                f"cache-input store {self.folder} holds {self.manifest['channels']} channels; the "
                f"model takes {channels}"
            )
        bad = [
            seq_id
            for seq_id in data.ids
            if not is_current(self.path(seq_id), sequence_hash(data.root, data.split, seq_id))
        ]
        if bad:
            raise ValueError(
                f"cache-input store {self.folder} lacks or has stale inputs for {len(bad)} of "
                f"{len(data.ids)} sequences (e.g. {', '.join(bad[:3])}): run "
                "`shareverse-train encode-cache` again"
            )

    def states(self, seq_id: str, start: int) -> torch.Tensor:
        """``(A, 8, Cc, h, w)`` float32, the input of the chunk starting at ``start``."""
        if start % self.stride:
            raise ValueError(f"start {start} is not on the store's grid of {self.stride}")
        with safe_open(self.path(seq_id), framework="pt") as f:
            return f.get_slice("states")[:, start // self.stride].float()
