"""The quality runner: generate every evaluation sequence chunk by chunk and score it.

For each sequence of a dataset split and each variant (:mod:`.variants`), an episode starts from
the sequence's true first frames and poses. Chunk ``k`` plans the true poses
``poses[:, 28k : 28k + 29]`` (row 0 is the conditioning frame) and its 28 new frames are
compared with the true ``frames[:, 28k + 1 : 28k + 29]``. Generation is autoregressive: chunk
``k > 0`` is conditioned on the variant's own last frame, never on the ground truth (except for
the ``repeat_oracle`` reference). An 89-frame sequence gives 3 chunks.

Every (sequence, agent, chunk, variant) gets one :class:`ChunkScore`: PSNR and SSIM computed per
frame and averaged over the chunk's 28 frames, over all pixels and over the co-visibility mask
(:func:`~.overlap.covisibility_masks`, the pixels that the other agent also sees), and the
detail ratio (:func:`~.metrics.detail_ratio_tiled`, how sharp the frames are next to the
truth's), and LPIPS (:func:`~.lpips.lpips_tiled`, AlexNet, per camera view; lower is better)
where its weights are installed. PSNR of a frame is capped at :data:`PSNR_CAP_DB` (identical
frames would give ``inf``); SSIM uses :func:`~.metrics.ssim_tiled` (one map per camera view).

Example (the two baselines, which need no model, on a one-sequence dataset):
    >>> import tempfile
    >>> from shareverse_env.data.format import (SequenceData, dataset_info, write_dataset_info,
    ...                                         write_sequence)
    >>> rng = np.random.default_rng(0)
    >>> root = tempfile.mkdtemp()
    >>> data = SequenceData(rng.integers(0, 256, (2, 29, 64, 96, 3), dtype=np.uint8),
    ...                     np.full((2, 29, 64, 96), 10.0, np.float32),
    ...                     np.zeros((2, 29, 3)), {"weather": "overcast"})
    >>> _ = write_sequence(root, "val", 0, data)
    >>> _ = write_dataset_info(root, dataset_info(num_agents=2, num_frames=29, view_hw=(32, 48),
    ...                        splits={"val": {"sequences": 1}}, generator={}))
    >>> result = evaluate_quality(root, "val", variants=["repeat", "repeat_oracle"],
    ...                           progress=False, probes=())  # a random town: no probes
    >>> len(result.rows), result.variants, result.num_chunks
    (4, ['repeat', 'repeat_oracle'], 1)
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from shareverse_env.core.geometry import CHUNK_FRAMES, NEW_FRAMES_PER_CHUNK, CameraRig
from shareverse_env.data.format import SequenceData, rig_from_info
from shareverse_env.data.reader import SequenceDataset
from shareverse_env.data.synthesis import sequence_renderer
from shareverse_env.evaluation.action_probes import (
    PROBES,
    mean_abs_change,
    probe_plan,
    render_truth,
)
from shareverse_env.evaluation.consistency import cross_agent_difference
from shareverse_env.evaluation.floors import BLUR_SIGMAS, blur_sigma, blur_views, mean_colour_views
from shareverse_env.evaluation.lpips import (
    MIN_SIZE,
    NETS,
    lpips_available,
    lpips_tiled,
    weights_file,
)
from shareverse_env.evaluation.metrics import PSNR_CAP_DB, detail_ratio_tiled, psnr, ssim_tiled
from shareverse_env.evaluation.overlap import correspondences
from shareverse_env.evaluation.regions import first_frame_regions, seam_ratio
from shareverse_env.evaluation.variants import FLOORS, VARIANTS, Variant, build_pipelines
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.vae import encode_video
from shareverse_env.world.renderer import Renderer

DEFAULT_VARIANTS: tuple[str, ...] = tuple(n for n, v in VARIANTS.items() if v.default)
"""Every variant but the opt-in diagnostics (``teacher_forced``), in report order."""

METRICS: tuple[str, ...] = ("psnr", "ssim", "psnr_overlap", "ssim_overlap", "detail", "lpips")
"""The scores of every :class:`ChunkScore`."""

REGION_METRICS: tuple[str, ...] = ("psnr_holes", "psnr_cars", "seam", "hole_fraction")
"""Scores over the pixels that must be generated (:mod:`.regions`)."""

QUALITY_METRICS: tuple[str, ...] = ("psnr", "ssim", "psnr_overlap", "ssim_overlap")
"""The metrics on which higher is better, where the best floor is the one to beat."""

LOWER_IS_BETTER: tuple[str, ...] = ("lpips",)
"""The metrics on which lower is better, where the best (lowest) floor is the one to beat."""

LPIPS_NET = "alex"
"""The LPIPS backbone the runner scores with (AlexNet, the one papers report)."""


@dataclass
class ChunkScore:
    """Scores of one agent's chunk of one sequence under one variant (one CSV row).

    PSNR/SSIM are per-frame values averaged over the chunk's frames; the ``_overlap`` ones are
    computed over each frame's co-visible pixels and averaged over the frames that have any
    (``nan`` when none has). ``overlap_fraction`` is the mean fraction of co-visible pixels.
    ``detail`` is the mean :func:`~.metrics.detail_ratio_tiled` (1 = as sharp as the truth,
    below 1 = blurred); ``nan`` when read from a results file without it. ``lpips`` is the mean
    :func:`~.lpips.lpips_tiled` (AlexNet, 0 = identical, lower is better; a blurred frame
    scores worse than a sharp one slightly off); ``nan`` when it was not scored.

    For each action probe ``p`` (:mod:`.action_probes`; ``nan`` when it did not run):
    ``change_p`` is the mean absolute difference (grey levels) between this chunk and the
    variant's chunk under the probe's plan, ``true_change_p`` the same between the true chunks,
    and ``follow_p`` this chunk's PSNR against the truth minus the probe chunk's (dB).

    Cross-agent consistency (:mod:`.consistency`; ``nan`` without co-visible pixels):
    ``xagent_diff`` is the mean colour difference (grey levels) between this agent's co-visible
    pixels and their projections in the other agent's frames of the same variant,
    ``xagent_agree`` the share within :data:`~.consistency.AGREE_TOLERANCE`; ``true_`` the same
    between the true frames (the renderer's own view-dependent floor).

    Where the chunk must be generated (:mod:`.regions`, the same pixels for every variant):
    ``psnr_holes`` over the pixels the episode's exact first frames do not cover in the scene
    cache, plus the other cars; ``psnr_cars`` over the other cars' projected boxes; ``seam`` the
    fine detail along the holes' edge, generated over true (1: no seam); ``hole_fraction`` the
    share of pixels in the holes. ``nan`` where a region is empty or a results file lacks them.
    """

    sequence: str
    scenario: str
    weather: str
    agent: int
    chunk: int
    variant: str
    psnr: float
    ssim: float
    psnr_overlap: float
    ssim_overlap: float
    overlap_fraction: float
    frames: int
    detail: float = math.nan
    change_still: float = math.nan
    true_change_still: float = math.nan
    follow_still: float = math.nan
    change_lateral: float = math.nan
    true_change_lateral: float = math.nan
    follow_lateral: float = math.nan
    xagent_diff: float = math.nan
    xagent_agree: float = math.nan
    true_xagent_diff: float = math.nan
    true_xagent_agree: float = math.nan
    psnr_holes: float = math.nan
    psnr_cars: float = math.nan
    seam: float = math.nan
    hole_fraction: float = math.nan
    # Last, so that rows built positionally before LPIPS existed keep their meaning.
    lpips: float = math.nan


@dataclass
class QualityResult:
    """All scores of one evaluation run, with its settings and one sequence's sample frames.

    Attributes:
        rows: one :class:`ChunkScore` per (sequence, agent, chunk, variant).
        config: the run's settings (JSON-friendly).
        samples: ``{"variant", "sequence", "generated" (A, T, 2H, 2W, 3), "truth" (same)}`` for
            one sequence (the frames of every chunk in order), or empty; not saved to JSON.
    """

    rows: list[ChunkScore]
    config: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def variants(self) -> list[str]:
        """Variants present, in report order."""
        present = {r.variant for r in self.rows}
        order = [v for v in VARIANTS if v in present]
        return order + sorted(present - set(order))

    @property
    def num_chunks(self) -> int:
        return 1 + max((r.chunk for r in self.rows), default=-1)

    def values(self, variant: str, metric: str, chunk: int | None = None) -> np.ndarray:
        """Scores of ``variant`` (one per sequence/agent[/chunk]) in row order."""
        return np.array(
            [
                getattr(r, metric)
                for r in self.rows
                if r.variant == variant and (chunk is None or r.chunk == chunk)
            ],
            dtype=np.float64,
        )

    def summary(self) -> dict[str, dict[str, float]]:
        """Per variant: the mean of each metric over all rows, and the mean PSNR per chunk.

        Every row averages the same number of frames, so these are per-frame averages (the
        overlap means skip rows without co-visible pixels). The action sensitivity:
        ``response_p`` = mean ``change_p`` / mean ``true_change_p`` over the rows (1: responds to
        the action as the world does, 0: ignores it), ``follow_p`` the mean PSNR gain of the
        true plan over the probe's; ``response`` and ``follow`` pool every probe that ran.
        ``xagent_excess`` is ``xagent_diff`` minus ``true_xagent_diff``.
        """
        out: dict[str, dict[str, float]] = {}
        for variant in self.variants:
            stats = {m: _nanmean(self.values(variant, m)) for m in METRICS}
            changes, true_changes, follows = [], [], []
            for probe in PROBES:
                change = self.values(variant, f"change_{probe}")
                true_change = self.values(variant, f"true_change_{probe}")
                keep = ~(np.isnan(change) | np.isnan(true_change))
                changes.append(change[keep])
                true_changes.append(true_change[keep])
                stats[f"response_{probe}"] = _ratio(change[keep], true_change[keep])
                follow = self.values(variant, f"follow_{probe}")
                follows.append(follow[~np.isnan(follow)])
                stats[f"follow_{probe}"] = _nanmean(follow)
            stats["response"] = _ratio(np.concatenate(changes), np.concatenate(true_changes))
            stats["follow"] = _nanmean(np.concatenate(follows))
            for k in range(self.num_chunks):
                stats[f"psnr_chunk{k}"] = _nanmean(self.values(variant, "psnr", k))
                stats[f"ssim_chunk{k}"] = _nanmean(self.values(variant, "ssim", k))
            for name in (
                "xagent_diff",
                "xagent_agree",
                "true_xagent_diff",
                "true_xagent_agree",
                *REGION_METRICS,
            ):
                stats[name] = _nanmean(self.values(variant, name))
            # What the generator adds to the truth's own disagreement.
            stats["xagent_excess"] = stats["xagent_diff"] - stats["true_xagent_diff"]
            stats["overlap_fraction"] = _nanmean(self.values(variant, "overlap_fraction"))
            stats["rows"] = float(len(self.values(variant, "psnr")))
            out[variant] = stats
        return out

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per score (``nan`` as an empty cell); returns the path."""
        path = Path(path)
        names = [f.name for f in fields(ChunkScore)]
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: _csv_cell(v) for k, v in asdict(row).items()})
        os.replace(tmp, path)
        return path

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write settings, rows and summary as strict JSON (``nan`` → ``null``); returns the path."""
        path = Path(path)
        doc = {
            "config": self.config,
            "summary": self.summary(),
            "rows": [asdict(r) for r in self.rows],
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(_json_safe(doc), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)
        return path

    def save_samples(self, path: str | os.PathLike) -> Path | None:
        """Write :attr:`samples` to an ``.npz`` (no pickle); ``None`` when there are none."""
        if not self.samples:
            return None
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(
            tmp,
            generated=self.samples["generated"],
            truth=self.samples["truth"],
            variant=np.array(self.samples["variant"]),
            sequence=np.array(self.samples["sequence"]),
        )
        os.replace(tmp, path)
        return path

    def load_samples(self, path: str | os.PathLike) -> None:
        """Read :attr:`samples` back from :meth:`save_samples`' file (``allow_pickle=False``)."""
        with np.load(path, allow_pickle=False) as f:
            self.samples = {
                "generated": f["generated"],
                "truth": f["truth"],
                "variant": str(f["variant"]),
                "sequence": str(f["sequence"]),
            }

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> QualityResult:
        """Read a file written by :meth:`to_json` (samples are not stored there)."""
        doc = json.loads(Path(path).read_text())
        rows = [
            ChunkScore(**{k: (math.nan if v is None else v) for k, v in r.items()})
            for r in doc["rows"]
        ]
        return cls(rows=rows, config=doc.get("config", {}))


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else math.nan


def _ratio(num: np.ndarray, den: np.ndarray) -> float:
    return float(num.sum() / den.sum()) if len(den) and den.sum() > 0 else math.nan


def best_floor(result: QualityResult, metric: str) -> str | None:
    """The floor (:data:`~.variants.FLOORS`) with the best mean ``metric`` in ``result`` (the
    highest; the lowest for :data:`LOWER_IS_BETTER`), or ``None`` when no floor scored it."""
    summary = result.summary()
    scored = [
        (summary[f][metric], f)
        for f in FLOORS
        if f in summary and not math.isnan(summary[f][metric])
    ]
    if not scored:
        return None
    return (min if metric in LOWER_IS_BETTER else max)(scored)[1]


def _csv_cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return v


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def frame_scores(
    generated: np.ndarray, truth: np.ndarray, mask: np.ndarray, lpips: bool = False
) -> dict[str, np.ndarray]:
    """Per-frame PSNR (capped) and SSIM of tiled frames ``(T, 2H, 2W, 3)``, all and masked.

    Returns ``{"psnr", "ssim", "psnr_overlap", "ssim_overlap", "detail"}``, each ``(T,)``, and
    ``"lpips"`` with ``lpips=True`` (:data:`LPIPS_NET`; needs the weights); the masked scores
    are ``nan`` for frames with an empty mask.
    """
    scores = {
        "psnr": psnr(generated, truth, max_db=PSNR_CAP_DB),
        "ssim": ssim_tiled(generated, truth),
        "psnr_overlap": psnr(generated, truth, mask=mask, max_db=PSNR_CAP_DB),
        "ssim_overlap": ssim_tiled(generated, truth, mask=mask),
        "detail": detail_ratio_tiled(generated, truth),
    }
    if lpips:
        scores["lpips"] = lpips_tiled(generated, truth, net=LPIPS_NET)
    return scores


def use_lpips(lpips: bool | None, view_hw: tuple[int, int]) -> bool:
    """Whether the runner scores LPIPS: ``lpips`` if given, else whenever the weights are
    installed and the views are large enough for :data:`LPIPS_NET`.

    Raises:
        LPIPSUnavailableError: ``lpips=True`` and the weights are not installed.
        ValueError: ``lpips=True`` and the views are too small.
    """
    smallest = MIN_SIZE[NETS[LPIPS_NET]]
    if lpips is None:
        return min(view_hw) >= smallest and lpips_available(LPIPS_NET)
    if lpips:
        weights_file(LPIPS_NET)  # raises now, before any chunk is generated
        if min(view_hw) < smallest:
            raise ValueError(f"LPIPS needs views of at least {smallest}×{smallest}; got {view_hw}")
    return bool(lpips)


def _chunk_means(scores: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: _nanmean(np.atleast_1d(v)) for k, v in scores.items()}


# --------------------------------------------------------------------------------------------
# Rollouts


@torch.no_grad()
def autoencode_chunk(pipeline: ShareVersePipeline, frames: np.ndarray) -> np.ndarray:
    """A true chunk ``(A, 1 + 4k, 2H, 2W, 3)`` passed through the VAE: its ``4k`` new frames.

    Encodes the whole chunk as one causal video, exactly as training encodes chunks, and
    decodes it with the sampler's decoder; returns ``(A, 4k, 2H, 2W, 3)`` uint8 (28 frames for
    a 29-frame chunk): the conditioning frame is dropped, as for generated chunks.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(pipeline.device)
    x = x.permute(0, 4, 1, 2, 3).to(pipeline.vae.dtype) / 127.5 - 1.0  # (A, 3, 1 + 4k, 2H, 2W)
    latents = encode_video(pipeline.vae, x) * pipeline.scaling_factor  # (A, C, 1 + k, h, w)
    return pipeline.decode_latents(latents.permute(0, 2, 1, 3, 4))[:, 1:]


@torch.no_grad()
def autoencode_image(pipeline: ShareVersePipeline, frames: np.ndarray) -> np.ndarray:
    """Tiled frames ``(A, 2H, 2W, 3)`` encoded as one image latent each and decoded again, as
    the pipeline encodes a conditioning frame: uint8 ``(A, 2H, 2W, 3)``."""
    return pipeline.decode_latents(pipeline.encode_frames(frames)[:, None])[:, 0]


# --------------------------------------------------------------------------------------------
# Episodes: one variant's run over one sequence


class Episode:
    """One variant's run over one sequence, chunk by chunk.

    :meth:`chunk` returns the variant's ``(A, 28, 2H, 2W, 3)`` frames of chunk ``k`` under a
    plan ``(A, 29, 3)``, given the true chunk under that plan ``(A, 29, 2H, 2W, 3)`` (row 0 is
    the true frame at the chunk's start; only the references given the truth read it). With
    ``commit=False`` the chunk is a probe: the episode's state afterwards is as before it, so
    the committed chunk that follows sees the same state (and, for a model, the same noise).
    """

    def chunk(self, k: int, plan: np.ndarray, truth: np.ndarray, commit: bool = True) -> np.ndarray:
        raise NotImplementedError


class _ConstantEpisode(Episode):
    """A floor: the same frame (one per agent) for every frame of every chunk, whatever the plan."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames

    def chunk(self, k, plan, truth, commit=True):
        return np.repeat(self.frames[:, None], NEW_FRAMES_PER_CHUNK, axis=1)


class _BlurEpisode(Episode):
    """``repeat_blur``: the first frame blurred by the chunk's :func:`~.floors.blur_sigma`."""

    def __init__(self, first: np.ndarray) -> None:
        self.blurred = {s: blur_views(first, s) for s in BLUR_SIGMAS}

    def chunk(self, k, plan, truth, commit=True):
        frames = self.blurred[blur_sigma(k)]
        return np.repeat(frames[:, None], NEW_FRAMES_PER_CHUNK, axis=1)


class _OracleEpisode(Episode):
    """``repeat_oracle``: the true frame at the chunk's start, repeated."""

    def chunk(self, k, plan, truth, commit=True):
        return np.repeat(truth[:, :1], NEW_FRAMES_PER_CHUNK, axis=1)


class _AutoencoderEpisode(Episode):
    """``autoencoder``: the true chunk under the plan, through the VAE."""

    def __init__(self, pipeline: ShareVersePipeline) -> None:
        self.pipeline = pipeline

    def chunk(self, k, plan, truth, commit=True):
        return autoencode_chunk(self.pipeline, truth)


class _CacheOnlyEpisode(Episode):
    """``cache_only``: the exact first frames' scene cache rendered into the plan, holes and
    other cars filled with the agent's last output frame."""

    def __init__(self, data: SequenceData, rig: CameraRig) -> None:
        from shareverse_env.scene.composite import SceneCompositor

        first = data.frames[:, 0]
        view_hw = (first.shape[1] // 2, first.shape[2] // 2)
        self.scene = SceneCompositor(rig, view_hw, depth_estimator=None)
        depth = None if data.depth is None else data.depth[:, 0]
        self.scene.reset(first, depth, data.poses[:, 0])
        self.last = first.copy()

    def chunk(self, k, plan, truth, commit=True):
        new = np.asarray(plan, dtype=np.float64)[:, 1:]
        agents = list(range(len(new)))
        out = self._fill(self.scene.render(new, agents), new, agents)
        if commit:
            self.last = out[:, -1].copy()
        return out

    def _fill(self, renders, new: np.ndarray, agents: list[int]) -> np.ndarray:
        """The new frames from the cache ``renders``: holes and cars from the last frame."""
        filler = np.repeat(self.last[:, None], new.shape[1], axis=1)
        return self.scene.composite(filler, renders, new, agents)


class _CacheFillEpisode(_CacheOnlyEpisode):
    """``cache_fill``: the same render, holes and other cars push-pull filled around them."""

    def _fill(self, renders, new: np.ndarray, agents: list[int]) -> np.ndarray:
        from shareverse_env.scene.hole_fill import push_pull_fill

        return np.stack(
            [
                push_pull_fill(r.rgb, r.valid & ~self.scene.car_masks(new, a))
                for a, r in zip(agents, renders, strict=True)
            ]
        )


class _ModelEpisode(Episode):
    """A model variant: a :class:`~shareverse_env.backends.generative.ShareVerseBackend` started
    from the true first frames; probes run inside :meth:`~shareverse_env.backends.generative.
    ShareVerseBackend.branch`."""

    def __init__(self, variant: Variant, data: SequenceData, backend: Any) -> None:
        self.variant = variant
        self.backend = backend
        self.active = np.ones(data.num_agents, dtype=bool)

    def _generate(self, plan: np.ndarray, truth: np.ndarray) -> np.ndarray:
        if self.variant.teacher_forced:
            self.backend.condition_on(truth[:, 0])
        return self.backend.generate(plan, self.active)

    def chunk(self, k, plan, truth, commit=True):
        if commit:
            return self._generate(plan, truth)
        with self.backend.branch():
            return self._generate(plan, truth)


VARIANT_OPTIONS = ("scene_cache", "depth_model", "memory_source", "seed", "num_inference_steps")
"""Generative-backend options that the quality runner sets itself, per variant and sequence."""


def check_backend_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` as a dict, checked as the env checks ``backend_options``.

    Raises:
        ValueError: a key the runner sets itself (:data:`VARIANT_OPTIONS`: the variants differ
            by them, and ``--steps``/``--seed`` set the sampler), an unknown key or a value out
            of range.
        TypeError: ``options`` not a mapping, or a value of the wrong type (a
            ``BackendOptionTypeError``, naming the option).

    Example:
        >>> check_backend_options({"colour_anchor": 1.0})
        {'colour_anchor': 1.0}
        >>> try:
        ...     check_backend_options({"scene_cache": False})
        ... except ValueError as err:
        ...     print(err)
        backend_options['scene_cache'] is set by the quality runner per variant; leave it out
    """
    from shareverse_env.backends.generative.config import GenerativeConfig

    if options is not None and not isinstance(options, Mapping):
        raise TypeError(
            f"backend_options must be a mapping of option names to values (a JSON object); "
            f"got {type(options).__name__} {options!r}"
        )
    options = dict(options or {})
    for key in options:
        if key in VARIANT_OPTIONS:
            raise ValueError(
                f"backend_options[{key!r}] is set by the quality runner per variant; leave it out"
            )
    GenerativeConfig.from_options(options)
    return options


def start_episode(
    variant: Variant,
    data: SequenceData,
    pipeline: ShareVersePipeline | None = None,
    noise_seed: int = 0,
    num_inference_steps: int | None = None,
    rig: CameraRig | None = None,
    backend_options: Mapping[str, Any] | None = None,
) -> Episode:
    """The :class:`Episode` of ``variant`` over ``data``, started from its true first frames.

    Model variants run on ``pipeline`` (``num_inference_steps`` sampler steps, default the
    pipeline's) with noise seed ``noise_seed`` and the generative backend's further
    ``backend_options`` (:func:`check_backend_options`); the floors are made from the first
    frame; the autoencoders use ``pipeline``'s VAE; ``cache_only`` splats with the dataset's
    ``rig`` (default :class:`~shareverse_env.core.geometry.CameraRig`); see :mod:`.variants`.
    """
    first = data.frames[:, 0]
    kind = variant.baseline
    if kind == "repeat":
        return _ConstantEpisode(first)
    if kind == "repeat_blur":
        return _BlurEpisode(first)
    if kind == "mean_colour":
        return _ConstantEpisode(mean_colour_views(first))
    if kind == "repeat_oracle":
        return _OracleEpisode()
    if kind == "cache_only":
        return _CacheOnlyEpisode(data, rig or CameraRig())
    if kind == "cache_fill":
        return _CacheFillEpisode(data, rig or CameraRig())
    if pipeline is None:
        raise ValueError(f"variant {variant.name!r} needs a pipeline")
    if kind == "repeat_autoencoded":
        return _ConstantEpisode(autoencode_image(pipeline, first))
    if kind == "autoencoder":
        return _AutoencoderEpisode(pipeline)
    if kind is not None:
        raise ValueError(f"variant {variant.name!r}: unknown baseline kind {kind!r}")
    from shareverse_env.backends import FirstFrames
    from shareverse_env.backends.generative import ShareVerseBackend

    backend = ShareVerseBackend(
        model=pipeline,
        memory_source=variant.memory_source,
        seed=noise_seed,
        num_inference_steps=num_inference_steps,
        scene_cache=variant.scene_cache,
        depth_model=None if variant.depth_model else False,
        **check_backend_options(backend_options),
    )
    weather = data.meta.get("weather", "clear_noon")
    depth = None if data.depth is None else data.depth[:, 0]
    start = FirstFrames(first, depth, None if depth is None else np.isinf(depth))
    backend.reset(None, weather, data.poses[:, 0], {"noise_seed": noise_seed}, first_frames=start)
    return _ModelEpisode(variant, data, backend)


def rollout(
    variant: Variant,
    data: SequenceData,
    num_chunks: int,
    pipeline: ShareVersePipeline | None = None,
    noise_seed: int = 0,
    num_inference_steps: int | None = None,
    rig: CameraRig | None = None,
) -> Iterator[np.ndarray]:
    """Yield the ``(A, 28, 2H, 2W, 3)`` frames of each of ``num_chunks`` chunks of ``data``
    under its true plans (:func:`start_episode`, no probes)."""
    episode = start_episode(variant, data, pipeline, noise_seed, num_inference_steps, rig)
    for k in range(num_chunks):
        window = slice(NEW_FRAMES_PER_CHUNK * k, NEW_FRAMES_PER_CHUNK * k + CHUNK_FRAMES)
        yield episode.chunk(k, data.poses[:, window], data.frames[:, window])


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


def dataset_rig(dataset: SequenceDataset) -> CameraRig:
    """The camera rig of a dataset (``dataset.json``), checked against its stored intrinsics."""
    info = dataset.info
    if not info or "rig" not in info:
        warnings.warn(
            f"{dataset.root} has no dataset.json rig; assuming the default CameraRig", stacklevel=2
        )
        return CameraRig()
    rig = rig_from_info(info["rig"])
    height, width = info["view_hw"]
    if "intrinsics" in info and not np.allclose(info["intrinsics"], rig.intrinsics(height, width)):
        raise ValueError(f"{dataset.root}: dataset.json intrinsics disagree with its rig")
    if "camera_to_ego" in info and not np.allclose(info["camera_to_ego"], rig.camera_to_ego()):
        raise ValueError(f"{dataset.root}: dataset.json camera_to_ego disagrees with its rig")
    return rig


def evaluate_quality(
    data_root: str | os.PathLike,
    split: str = "val",
    model: str | os.PathLike | ShareVersePipeline | None = None,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    sequences: int | None = None,
    seed: int = 0,
    num_chunks: int | None = None,
    sample_sequence: int | None = 0,
    progress: bool = True,
    num_inference_steps: int | None = None,
    probes: Sequence[str] = PROBES,
    renderer_for: Callable[[SequenceData], Renderer] | None = None,
    cache_model: str | os.PathLike | ShareVersePipeline | None = None,
    lpips: bool | None = None,
    backend_options: Mapping[str, Any] | None = None,
) -> QualityResult:
    """Score every variant on the first ``sequences`` sequences of ``split``.

    Args:
        data_root: a dataset folder (``shareverse-data generate``) with depth.
        split: the split to evaluate.
        model: the trained pipeline (a folder, a config name for a random model, a pipeline
            object, or ``None`` for the shipped weights); needed by the model variants only.
        variants: names from :data:`~.variants.VARIANTS`.
        sequences: how many sequences (default all).
        seed: seeds the untrained weights; sequence ``i`` uses noise seed ``seed + i`` for every
            model variant, so variants differ only by their model, never by their noise.
        num_chunks: chunks per sequence (default as many as the sequence holds).
        sample_sequence: index of the sequence whose frames go to ``result.samples`` (the
            ``trained`` variant's, else the first variant's); ``None`` keeps none.
        progress: show a tqdm bar (one step per chunk of every variant).
        num_inference_steps: sampler steps of the model variants (default: the pipeline's).
        probes: action probes (:mod:`.action_probes`) run for every chunk of every variant;
            ``()`` skips them (each costs one more chunk of every model variant).
        renderer_for: the exact renderer of a sequence's town, for the true chunks under the
            probes' plans (default: rebuilt from the sequence's ``town_seed``/``town_blocks``
            metadata, :func:`~shareverse_env.data.synthesis.sequence_renderer`).
        cache_model: the pipeline of the ``cache_conditioned`` variant (a model with a
            scene-cache input); needed by that variant only.
        lpips: score LPIPS (:func:`use_lpips`): ``True`` requires its weights, ``False`` skips
            it (``nan``), ``None`` scores it where the weights are installed and the views
            large enough. ``config["lpips"]`` records whether it was scored.
        backend_options: further generative-backend options of every model variant, such as
            ``{"colour_anchor": 1.0}`` (:func:`check_backend_options`; recorded in
            ``config["backend_options"]``).

    Raises:
        ValueError: unknown variants or probes, an empty split, sequences too short for one
            chunk, a model whose view size differs from the dataset's, or probes on a sequence
            whose town cannot be rebuilt.
        LPIPSUnavailableError: ``lpips=True`` without the LPIPS weights (raised before any
            chunk is generated).
    """
    variants = list(variants)
    probes = list(probes)
    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown action probes {unknown}; choose from {list(PROBES)}")
    if num_inference_steps is not None and num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1; got {num_inference_steps}")
    backend_options = check_backend_options(backend_options)  # before any model loads
    dataset = SequenceDataset(data_root, split)
    if len(dataset) == 0:
        raise ValueError(f"{data_root}: split {split!r} has no complete sequences")
    count = len(dataset) if sequences is None else min(int(sequences), len(dataset))
    pipelines = build_pipelines(
        model,
        variants,
        seed=seed,
        cache_model=str(cache_model) if isinstance(cache_model, os.PathLike) else cache_model,
    )
    rig = dataset_rig(dataset)
    score_lpips = use_lpips(lpips, tuple((dataset.info or {}).get("view_hw", (64, 96))))
    for name, pipe in pipelines.items():
        view_hw = tuple((dataset.info or {}).get("view_hw", pipe.view_hw))
        if view_hw != pipe.view_hw:
            raise ValueError(
                f"variant {name!r}: the model generates {pipe.view_hw} views, the dataset has "
                f"{view_hw}"
            )
    sample_variant = "trained" if "trained" in variants else variants[0]
    result = QualityResult(
        rows=[],
        config={
            "data": str(data_root),
            "split": split,
            "model": (
                "<pipeline>"
                if isinstance(model, ShareVersePipeline)
                else "shipped weights"
                if model is None
                else str(model)
            ),
            "variants": variants,
            "sequences": dataset.ids[:count],
            "seed": seed,
            "num_inference_steps": num_inference_steps,
            "psnr_cap_db": PSNR_CAP_DB,
            "chunk_frames": CHUNK_FRAMES,
            "probes": probes,
            "blur_sigmas": list(BLUR_SIGMAS),
            "lpips": score_lpips,
            "backend_options": backend_options,
        },
    )
    if renderer_for is None:
        view_hw = tuple((dataset.info or {}).get("view_hw", (64, 96)))

        def renderer_for(data: SequenceData) -> Renderer:
            return sequence_renderer(data.meta, view_hw, rig)

    chunk_counts = []
    for i in range(count):
        available = (int(dataset.meta(i)["num_frames"]) - 1) // NEW_FRAMES_PER_CHUNK
        if available < 1:
            raise ValueError(
                f"sequence {dataset.ids[i]} is shorter than one chunk ({CHUNK_FRAMES} frames)"
            )
        chunk_counts.append(available if num_chunks is None else min(available, int(num_chunks)))
    bar = tqdm(
        total=sum(chunk_counts) * len(variants) * (1 + len(probes)),
        desc="quality",
        unit="chunk",
        disable=not progress,
    )
    new = NEW_FRAMES_PER_CHUNK
    for i, chunks in enumerate(chunk_counts):
        data = dataset[i]
        if data.depth is None:
            raise ValueError(f"sequence {dataset.ids[i]} has no depth")
        used = 1 + chunks * new
        match = correspondences(data.depth[:, :used], data.poses[:, :used], rig)
        masks = match[0]
        plans = [data.poses[:, new * k : new * k + CHUNK_FRAMES] for k in range(chunks)]
        truths = [data.frames[:, new * k : new * k + CHUNK_FRAMES] for k in range(chunks)]
        # Correspondences of each chunk's new frames, and the truth's own disagreement there.
        chunk_match = [
            tuple(x[:, 1 + new * k : 1 + new * (k + 1)] for x in match) for k in range(chunks)
        ]
        true_xagent = [
            cross_agent_difference(truths[k][:, 1:], *chunk_match[k]) for k in range(chunks)
        ]
        regions = first_frame_regions(
            data.frames[:, 0], data.depth[:, 0], data.poses[:, 0], plans, rig
        )
        probe_truths = _probe_truths(data, dataset.ids[i], plans, truths, probes, renderer_for)
        for name in variants:
            keep = sample_sequence == i and name == sample_variant
            generated = []
            episode = start_episode(
                VARIANTS[name],
                data,
                pipelines.get(name),
                seed + i,
                num_inference_steps,
                rig,
                backend_options,
            )
            for k in range(chunks):
                bar.set_postfix(sequence=dataset.ids[i], variant=name, chunk=k)
                probed = {}
                for probe in probes:
                    plan = probe_plan(probe, plans[k])
                    probed[probe] = episode.chunk(k, plan, probe_truths[k][probe], commit=False)
                    bar.update(1)
                frames = episode.chunk(k, plans[k], truths[k])
                truth = truths[k][:, 1:]
                xagent = cross_agent_difference(frames, *chunk_match[k])
                for a in range(data.num_agents):
                    mask = masks[a, 1 + new * k : 1 + new * (k + 1)]
                    scores = _chunk_means(frame_scores(frames[a], truth[a], mask, score_lpips))
                    scores["xagent_diff"] = _nanmean(xagent[0][a])
                    scores["xagent_agree"] = _nanmean(xagent[1][a])
                    scores["true_xagent_diff"] = _nanmean(true_xagent[k][0][a])
                    scores["true_xagent_agree"] = _nanmean(true_xagent[k][1][a])
                    holes, cars = regions[k][0][a], regions[k][1][a]
                    scores["psnr_holes"] = _nanmean(
                        psnr(frames[a], truth[a], mask=holes, max_db=PSNR_CAP_DB)
                    )
                    scores["psnr_cars"] = _nanmean(
                        psnr(frames[a], truth[a], mask=cars, max_db=PSNR_CAP_DB)
                    )
                    scores["seam"] = _nanmean(seam_ratio(frames[a], truth[a], holes))
                    scores["hole_fraction"] = float(holes.mean())
                    own_psnr = scores["psnr"]
                    for probe, other in probed.items():
                        other_psnr = _nanmean(psnr(other[a], truth[a], max_db=PSNR_CAP_DB))
                        scores[f"change_{probe}"] = mean_abs_change(frames[a], other[a])
                        scores[f"true_change_{probe}"] = mean_abs_change(
                            truth[a], probe_truths[k][probe][a, 1:]
                        )
                        scores[f"follow_{probe}"] = own_psnr - other_psnr
                    result.rows.append(
                        ChunkScore(
                            sequence=dataset.ids[i],
                            scenario=str(data.meta.get("scenario", "")),
                            weather=str(data.meta.get("weather", "")),
                            agent=a,
                            chunk=k,
                            variant=name,
                            overlap_fraction=float(mask.mean()),
                            frames=int(mask.shape[0]),
                            **scores,
                        )
                    )
                if keep:
                    generated.append(frames)
                bar.update(1)
            if keep:
                result.samples = {
                    "variant": name,
                    "sequence": dataset.ids[i],
                    "generated": np.concatenate(generated, axis=1),
                    "truth": data.frames[:, 1:used],
                }
    bar.close()
    return result


def _probe_truths(
    data: SequenceData,
    sequence: str,
    plans: list[np.ndarray],
    truths: list[np.ndarray],
    probes: list[str],
    renderer_for: Callable[[SequenceData], Renderer],
) -> list[dict[str, np.ndarray]]:
    """Per chunk, the true chunk ``(A, 29, 2H, 2W, 3)`` under each probe's plan: the true frame
    at the chunk's start, then the renderer's frames at the probe's poses."""
    if not probes:
        return [{} for _ in plans]
    try:
        renderer = renderer_for(data)
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"sequence {sequence}: the action probes need the town of the sequence to render "
            f"the truth under other actions ({err}); pass probes=() to skip them"
        ) from err
    out = []
    for plan, truth in zip(plans, truths, strict=True):
        out.append(
            {
                p: np.concatenate(
                    [truth[:, :1], render_truth(renderer, probe_plan(p, plan)[:, 1:])], axis=1
                )
                for p in probes
            }
        )
    return out
