"""``shareverse-train depth``: train the monocular :class:`~shareverse_env.models.depth.DepthNet`.

Batches are random frames of one or more dataset splits (``--data`` may be given several
folders), split into their four views. The views are augmented so that the net also works on
generated frames: horizontal flips, colour jitter, sometimes a VAE-like down-up resampling,
Gaussian blur of random σ in [0, 4] px, Gaussian pixel noise and uint8 quantisation. The loss
is L1 on metric log-depth over the non-sky pixels (scale-aware: no per-image rescaling, the
camera height fixes the scale) plus binary cross-entropy on the sky mask. AdamW with warmup
and cosine decay.

The run folder holds ``checkpoint/`` (``model.safetensors``, ``optimizer.safetensors`` and
``state.json``: nothing is pickled) — rerunning the same command resumes from it, and batches
are a function of ``(seed, step)`` — and, when the run stops (``--steps`` reached or
``--max-minutes`` spent), the shipped files ``depth.safetensors`` + ``config.json`` (float16)
and ``metrics.json``: AbsRel and sky accuracy of the exported weights on the validation split,
on clean frames and on frames blurred with σ = 3 px, next to the per-pixel mean-depth baseline
of the training frames.

    shareverse-train depth --data data/eval32 --out runs/depth --steps 4000 --max-minutes 40

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> _ = write_tiny_dataset(root, "train", sequences=1, frames=2)
    >>> _ = write_tiny_dataset(root, "val", sequences=1, frames=2)
    >>> run = Path(tempfile.mkdtemp()) / "run"
    >>> config = DepthTrainConfig(steps=2, batch_size=1, widths=(4, 8, 8), eval_stride=1)
    >>> metrics = DepthTrainer([root], run, config, progress=False).run()
    >>> metrics["step"], sorted(p.name for p in run.iterdir())
    (2, ['checkpoint', 'config.json', 'depth.safetensors', 'metrics.json'])
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from shareverse_env.models.depth import (
    MAX_DEPTH,
    MIN_DEPTH,
    DepthNet,
    absrel,
    frames_to_views,
    load_depth_model,
    predict_depth,
    save_depth_model,
    sky_accuracy,
    views_to_frames,
)

from shareverse_env.core.files import atomic_folder

EVAL_BLUR_SIGMA = 3.0
"""σ (pixels) of the blurred-frame evaluation: roughly the softness of generated frames."""


@dataclass
class DepthTrainConfig:
    """Settings of a depth training run (stored in ``checkpoint/state.json``)."""

    steps: int = 4000
    batch_size: int = 8  # frames per step; the net sees 4x as many views
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    seed: int = 0
    device: str = "cpu"
    split: str = "train"
    val_split: str = "val"
    widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    sky_weight: float = 0.5
    max_minutes: float = 0.0  # 0: no deadline
    checkpoint_every: int = 250
    eval_every: int = 0  # 0: only at the end
    eval_stride: int = 1  # evaluate every k-th validation frame
    frame_stride: int = 1  # train on every k-th frame (consecutive frames are near-duplicates)
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_frames_and_depth(
    roots: Sequence[str | os.PathLike], split: str, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All agents' frames of ``split`` in every root, every ``stride``-th frame: uint8
    ``(M, 2H, 2W, 3)`` and float16 depth ``(M, 2H, 2W)`` (the stored precision; ``inf`` = sky).

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> _ = write_tiny_dataset(root, "train", sequences=2, frames=3)
        >>> frames, depth = load_frames_and_depth([root], "train", stride=2)
        >>> frames.shape, depth.dtype
        ((8, 128, 192, 3), dtype('float16'))
    """
    from shareverse_env.data import SequenceDataset

    frames, depth = [], []
    for root in roots:
        data = SequenceDataset(root, split)
        for seq in data:
            frames.append(seq.frames[:, ::stride].reshape(-1, *seq.frames.shape[2:]))
            depth.append(
                seq.depth[:, ::stride].reshape(-1, *seq.depth.shape[2:]).astype(np.float16)
            )
    if not frames:
        raise ValueError(
            f"no complete sequences in split {split!r} of {', '.join(map(str, roots))}"
        )
    return np.concatenate(frames), np.concatenate(depth)


def write_tiny_dataset(
    root: str | os.PathLike, split: str, sequences: int = 1, frames: int = 2, seed: int = 0
) -> Path:
    """A small synthetic dataset for tests and examples (random boxes on a ground plane is
    overkill: a sky band over a floor whose depth grows towards the horizon, plus noise).

    Example:
        >>> import tempfile
        >>> from shareverse_env.data import SequenceDataset
        >>> root = write_tiny_dataset(tempfile.mkdtemp(), "train", sequences=2)
        >>> len(SequenceDataset(root, "train"))
        2
    """
    from shareverse_env.data.format import SequenceData, write_sequence

    rng = np.random.default_rng(seed)
    h, w = 64, 96
    rows = np.arange(h, dtype=np.float32)[:, None].repeat(w, 1)
    view_depth = np.where(rows > h / 2, 48.0 * 1.9 / np.maximum(rows - h / 2 + 0.5, 1e-3), np.inf)
    view_depth = view_depth.astype(np.float32)
    for s in range(sequences):
        depth = np.tile(view_depth, (2, 2))[None, None].repeat(2, 0).repeat(frames, 1)
        shade = np.where(np.isfinite(depth), np.clip(255 - 4 * depth, 0, 255), 200.0)
        rgb = shade[..., None] + rng.normal(0, 8, (*depth.shape, 3))
        data = SequenceData(
            np.clip(rgb, 0, 255).astype(np.uint8),
            depth.astype(np.float32),
            np.zeros((2, frames, 3)),
            {"scenario": "tiny"},
        )
        write_sequence(root, split, s, data)
    return Path(root)


def draw_batch(
    frames: np.ndarray, depth: np.ndarray, batch_size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random frames as views ``(4B, 3, H, W)`` in [0, 1] and depth ``(4B, H, W)``."""
    index = np.sort(rng.choice(len(frames), size=batch_size, replace=len(frames) < batch_size))
    views = frames_to_views(frames[index])
    d = frames_to_views(np.repeat(depth[index, :, :, None], 3, axis=-1))[:, 0]
    return views, d * 255.0  # frames_to_views divides by 255; undo it for depth


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


def gaussian_blur(views: torch.Tensor, sigma: torch.Tensor, radius: int = 12) -> torch.Tensor:
    """Blur each view ``(B, C, H, W)`` with its own σ ``(B,)`` (pixels; σ ≤ 0.05 leaves it as is).

    Separable, with reflected borders. Example:
        >>> x = torch.zeros(2, 1, 15, 15); x[:, :, 7, 7] = 1.0
        >>> y = gaussian_blur(x, torch.tensor([0.0, 1.0]), radius=4)
        >>> bool(torch.equal(y[0], x[0])), round(float(y[1].sum()), 4), float(y[1].max()) < 1
        (True, 1.0, True)
    """
    b, c, h, w = views.shape
    offsets = torch.arange(-radius, radius + 1, dtype=views.dtype, device=views.device)
    s = sigma.to(views).clamp_min(0.05)[:, None]
    kernel = torch.exp(-0.5 * (offsets[None] / s) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)
    kernel = torch.where(
        sigma.to(views.device)[:, None] <= 0.05, (offsets == 0).to(views)[None], kernel
    )
    k = kernel.repeat_interleave(c, 0)  # (B*C, 2r+1)
    x = views.reshape(1, b * c, h, w)
    pad_r = min(radius, h - 1, w - 1)
    if pad_r < radius:  # tiny images: crop the kernel (renormalised) to what reflection allows
        k = k[:, radius - pad_r : radius + pad_r + 1]
        k = k / k.sum(1, keepdim=True)
    x = F.pad(x, (pad_r, pad_r, 0, 0), mode="reflect")
    x = F.conv2d(x, k[:, None, None, :], groups=b * c)
    x = F.pad(x, (0, 0, pad_r, pad_r), mode="reflect")
    x = F.conv2d(x, k[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


def augment(
    views: torch.Tensor, depth: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Make rendered views look like generated ones (see the module docstring); ``depth`` is
    flipped along with them. About a fifth of the views stay clean apart from flips."""
    b = views.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=gen)

    def coin(p: float) -> torch.Tensor:
        return torch.rand(b, generator=gen) < p

    flip = coin(0.5)
    views = torch.where(flip[:, None, None, None], views.flip(-1), views)
    depth = torch.where(flip[:, None, None], depth.flip(-1), depth)
    degrade = coin(0.8)
    # Colour jitter: brightness, contrast, saturation and per-channel gain.
    jitter = degrade & coin(0.8)
    grey = views.mean(1, keepdim=True)
    sat = u(0.7, 1.3, 1, 1, 1)
    x = grey + sat * (views - grey)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + u(0.75, 1.25, 1, 1, 1) * (x - mean)
    x = x * u(0.75, 1.25, 1, 1, 1) * u(0.93, 1.07, 3, 1, 1)
    views = torch.where(jitter[:, None, None, None], x.clamp(0, 1), views)
    # VAE-like resampling: area down by 2 or 4, bilinear back up.
    h, w = views.shape[-2:]
    for factor, p in ((2, 0.2), (4, 0.15)):
        pick = degrade & coin(p)
        if pick.any() and h % factor == 0 and w % factor == 0:
            small = F.avg_pool2d(views[pick], factor)
            views[pick] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    # Gaussian blur σ ~ U(0, 4) px.
    sigma = torch.where(degrade & coin(0.7), u(0.0, 4.0), torch.zeros(b))
    views = gaussian_blur(views, sigma)
    # Gaussian pixel noise, then uint8 quantisation (generated frames are uint8 too).
    noise = torch.where(degrade & coin(0.5), u(0.0, 0.06), torch.zeros(b))
    views = views + noise[:, None, None, None] * torch.randn(views.shape, generator=gen)
    views = (views.clamp(0, 1) * 255).round() / 255
    return views, depth


def blur_frames(frames: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 tiled frames ``(N, 2H, 2W, 3)`` blurred view by view with σ ``sigma`` px.

    Example:
        >>> blur_frames(np.zeros((1, 128, 192, 3), np.uint8), 3.0).shape
        (1, 128, 192, 3)
    """
    out = np.empty_like(frames)
    for start in range(0, len(frames), 64):
        views = frames_to_views(frames[start : start + 64])
        blurred = gaussian_blur(views, torch.full((len(views),), float(sigma)))
        tiled = views_to_frames(blurred)  # (n, 2H, 2W, 3)
        out[start : start + 64] = (tiled.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return out


# --------------------------------------------------------------------------------------------
# Loss, evaluation, checkpoints
# --------------------------------------------------------------------------------------------


def depth_loss(
    log_depth: torch.Tensor, sky_logit: torch.Tensor, depth: torch.Tensor, sky_weight: float = 0.5
) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 on log-depth over non-sky pixels + ``sky_weight`` × BCE on the sky mask.

    Example:
        >>> d = torch.tensor([[[10.0, math.inf]]])
        >>> loss, parts = depth_loss(torch.log(d.clamp(max=10)), torch.tensor([[[-9.0, 9.0]]]), d)
        >>> parts["log_l1"], round(parts["sky_bce"], 4)
        (0.0, 0.0001)
    """
    sky = ~torch.isfinite(depth)
    target = torch.log(depth.clamp(MIN_DEPTH, MAX_DEPTH))
    ground = ~sky
    log_l1 = (log_depth - target).abs()[ground].mean() if ground.any() else log_depth.sum() * 0
    sky_bce = F.binary_cross_entropy_with_logits(sky_logit, sky.float())
    loss = log_l1 + sky_weight * sky_bce
    return loss, {
        k: float(v.detach()) for k, v in (("loss", loss), ("log_l1", log_l1), ("sky_bce", sky_bce))
    }


def evaluate(
    model: DepthNet, frames: np.ndarray, depth: np.ndarray, blur_sigma: float = 0.0
) -> dict[str, float]:
    """AbsRel and sky accuracy of ``model`` on ``frames`` (blurred first when ``blur_sigma``).

    Example:
        >>> import tempfile
        >>> root = write_tiny_dataset(tempfile.mkdtemp(), "val")
        >>> frames, depth = load_frames_and_depth([root], "val")
        >>> sorted(evaluate(DepthNet(widths=(4, 8, 8)), frames, depth, blur_sigma=3.0))
        ['absrel', 'frames', 'sky_accuracy']
    """
    if blur_sigma > 0:
        frames = blur_frames(frames, blur_sigma)
    errors, sky, count = 0.0, 0.0, 0
    for start in range(0, len(frames), 64):
        pred = predict_depth(model, frames[start : start + 64])
        truth = depth[start : start + 64].astype(np.float32)
        weight = int(np.isfinite(truth).sum())
        errors += absrel(pred, truth) * weight if weight else 0.0
        sky += sky_accuracy(pred, truth) * truth.size
        count += weight
    total = depth.size
    return {
        "absrel": errors / max(count, 1),
        "sky_accuracy": sky / max(total, 1),
        "frames": len(frames),
    }


def mean_depth_baseline(depth: np.ndarray) -> np.ndarray:
    """Per-pixel mean of the finite depth of ``depth (M, 2H, 2W)`` (float32, finite
    everywhere: pixels never finite get the overall mean) — the trivial baseline.

    Example:
        >>> mean_depth_baseline(np.array([[[1.0, np.inf]], [[3.0, np.inf]]], np.float16))
        array([[2., 2.]], dtype=float32)
    """
    total = np.zeros(depth.shape[1:], np.float64)
    count = np.zeros(depth.shape[1:], np.int64)
    for start in range(0, len(depth), 256):
        chunk = depth[start : start + 256].astype(np.float64)
        finite = np.isfinite(chunk)
        total += np.where(finite, chunk, 0.0).sum(0)
        count += finite.sum(0)
    overall = total.sum() / max(count.sum(), 1)
    return np.where(count > 0, total / np.maximum(count, 1), overall).astype(np.float32)


def _save_checkpoint(
    folder: Path, model: DepthNet, opt: torch.optim.Optimizer, state: dict
) -> None:
    """Model and AdamW state as safetensors, the rest as JSON (nothing pickled)."""
    from safetensors.torch import save_file

    opt_state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, entry in opt_state["state"].items():
        for key, value in entry.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    with atomic_folder(folder) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(tmp / "model.safetensors"),
        )
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {**state, "param_groups": opt_state["param_groups"]}
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def _load_checkpoint(folder: Path, model: DepthNet, opt: torch.optim.Optimizer) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        state = json.loads((folder / "state.json").read_text())
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except Exception as err:  # any decoding failure means the checkpoint is damaged
        raise ValueError(f"checkpoint {folder} is damaged: {err}") from err
    entries: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        entries.setdefault(int(index), {})[key] = value
    opt.load_state_dict({"state": entries, "param_groups": state.pop("param_groups")})
    return state


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


class DepthTrainer:
    """Train a :class:`DepthNet` on ``roots``' training split; evaluate on the validation split
    of ``val_roots`` (default: ``roots``). Resumes from ``out/checkpoint`` when it exists."""

    def __init__(
        self,
        roots: Sequence[str | os.PathLike],
        out: str | os.PathLike,
        config: DepthTrainConfig,
        *,
        val_roots: Sequence[str | os.PathLike] | None = None,
        progress: bool = True,
    ):
        self.roots = [Path(r) for r in roots]
        self.val_roots = [Path(r) for r in (val_roots or roots)]
        self.out = Path(out)
        self.config = config
        self.progress = progress
        self.frames, self.depth = load_frames_and_depth(
            self.roots, config.split, config.frame_stride
        )
        with torch.random.fork_rng(devices=[]):  # the initial weights follow the run's seed
            torch.manual_seed(config.seed)
            self.model = DepthNet(config.widths, log_depth_bias=self._typical_log_depth())
        self.model.to(config.device)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.step = 0
        self.history: list[dict[str, float]] = []
        checkpoint = self.out / "checkpoint"
        if (checkpoint / "state.json").is_file():
            state = _load_checkpoint(checkpoint, self.model, self.opt)
            self.step = int(state["step"])
            self.history = list(state.get("history", []))

    def _typical_log_depth(self) -> float:
        """Median log-depth of a sample of training pixels (the head's initial bias)."""
        sample = self.depth[:: max(1, len(self.depth) // 64)].astype(np.float32)
        finite = sample[np.isfinite(sample)]
        return (
            float(np.median(np.log(np.clip(finite, MIN_DEPTH, MAX_DEPTH)))) if finite.size else 3.0
        )

    def _step_progress(self, step: int) -> float:
        c = self.config
        return min(1.0, max(0.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)))

    def lr_at(self, step: int) -> float:
        """Linear warmup, then cosine decay to 5 % of ``lr`` at ``steps``.

        With a ``max_minutes`` deadline the decay also follows the clock: its progress is the
        larger of the step-based one and the share of this invocation's time spent (counted
        from where the steps had got to), so that a run the deadline cuts short still ends
        annealed. That makes the schedule — and so resumed runs — depend on the machine's
        speed; without a deadline it is a function of the step alone.
        """
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        t = self._step_progress(step)
        clock = getattr(self, "_clock", None)
        if clock is not None:
            t0, start, budget = clock
            t = max(t, min(1.0, t0 + (1.0 - t0) * (time.monotonic() - start) / budget))
        return c.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    def train_step(self) -> dict[str, float]:
        """One optimiser step on the batch of ``(seed, step)``."""
        c = self.config
        rng = np.random.default_rng([c.seed, self.step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        views, depth = draw_batch(self.frames, self.depth, c.batch_size, rng)
        views, depth = augment(views, depth, gen)
        self.model.train()
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.step)
        log_depth, sky_logit = self.model(views.to(c.device))
        loss, parts = depth_loss(log_depth, sky_logit, depth.to(c.device), c.sky_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        return parts

    def save(self) -> None:
        """Write ``out/checkpoint`` (resumable state)."""
        state = {"step": self.step, "config": asdict(self.config), "history": self.history[-200:]}
        _save_checkpoint(self.out / "checkpoint", self.model, self.opt, state)

    def run(self) -> dict[str, Any]:
        """Train until ``steps`` or the deadline, then export and evaluate; the metrics dict."""
        from tqdm.auto import tqdm

        c = self.config
        start = time.monotonic()
        deadline = start + 60 * c.max_minutes if c.max_minutes > 0 else math.inf
        if c.max_minutes > 0:
            self._clock = (self._step_progress(self.step), start, 60 * c.max_minutes)
        bar = tqdm(total=c.steps, initial=self.step, disable=not self.progress, desc="depth")
        recent: list[float] = []
        while self.step < c.steps and time.monotonic() < deadline:
            parts = self.train_step()
            recent.append(parts["loss"])
            if not math.isfinite(parts["loss"]):
                raise FloatingPointError(f"loss is {parts['loss']} at step {self.step}")
            bar.update(1)
            if self.step % 25 == 0 or self.step == c.steps:
                row = {
                    "step": self.step,
                    "loss": float(np.mean(recent)),
                    "lr": self.lr_at(self.step - 1),
                }
                row.update({k: v for k, v in parts.items() if k != "loss"})
                self.history.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                recent = []
            if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                self.save()
            if c.eval_every and self.step % c.eval_every == 0:
                quick = self.evaluate(stride=max(8, c.eval_stride), blur=False)
                bar.write(f"step {self.step}: val AbsRel {quick['clean']['absrel']:.4f}")
        bar.close()
        self.save()
        return self.export()

    def evaluate(
        self, stride: int | None = None, blur: bool = True, model: DepthNet | None = None
    ) -> dict[str, Any]:
        """Validation metrics (clean and, with ``blur``, σ = 3 px frames) of ``model`` (default:
        the trained one)."""
        stride = self.config.eval_stride if stride is None else stride
        frames, depth = self._val_data(stride)
        model = self.model if model is None else model
        result = {"clean": evaluate(model, frames, depth)}
        if blur:
            result[f"blur{EVAL_BLUR_SIGMA:g}"] = evaluate(model, frames, depth, EVAL_BLUR_SIGMA)
        return result

    def _val_data(self, stride: int) -> tuple[np.ndarray, np.ndarray]:
        cache = getattr(self, "_val_cache", {})
        if stride not in cache:
            cache[stride] = load_frames_and_depth(self.val_roots, self.config.val_split, stride)
            self._val_cache = cache
        return cache[stride]

    def baseline(self, stride: int | None = None) -> dict[str, float]:
        """AbsRel of predicting the training set's per-pixel mean depth on the val frames."""
        stride = self.config.eval_stride if stride is None else stride
        _, depth = self._val_data(stride)
        mean = mean_depth_baseline(self.depth)
        errors, count = 0.0, 0
        for start in range(0, len(depth), 256):
            truth = depth[start : start + 256].astype(np.float32)
            weight = int(np.isfinite(truth).sum())
            if weight:
                errors += absrel(np.broadcast_to(mean, truth.shape), truth) * weight
                count += weight
        return {"absrel": errors / max(count, 1)}

    def export(self) -> dict[str, Any]:
        """Write ``depth.safetensors`` + ``config.json`` (float16) and ``metrics.json`` (the
        exported weights' validation metrics, read back from disk)."""
        save_depth_model(self.model, self.out)
        shipped = load_depth_model(self.out, device=self.config.device)
        metrics: dict[str, Any] = {
            "step": self.step,
            "steps": self.config.steps,
            "train_frames": len(self.frames),
            "train_data": [str(r) for r in self.roots],
            "val_data": [str(r) for r in self.val_roots],
            "weights_bytes": (self.out / "depth.safetensors").stat().st_size,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "last_loss": self.history[-1]["loss"] if self.history else None,
        }
        try:
            metrics["val"] = self.evaluate(model=shipped)
            metrics["baseline_mean_depth"] = self.baseline()
        except ValueError as err:  # no validation split: export anyway
            metrics["val"] = None
            metrics["val_error"] = str(err)
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def parse_depth_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="shareverse-train depth",
        description="Train the monocular DepthNet on a dataset's exact depth "
        "(rerun the same command to resume).",
    )
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="dataset folder(s)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--steps", type=int, required=True, help="total optimiser steps")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per step (x4 views)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--max-minutes", type=float, default=0.0, help="training deadline (0: none)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--split", default="train", help="training split of every --data")
    parser.add_argument("--val-data", type=Path, nargs="+", default=None, help="default: --data")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--eval-stride", type=int, default=1, help="evaluate every k-th val frame")
    parser.add_argument("--eval-every", type=int, default=0, help="quick val AbsRel every N steps")
    parser.add_argument("--frame-stride", type=int, default=1, help="train on every k-th frame")
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 96, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def depth_main(argv: list[str] | None = None) -> None:
    """``shareverse-train depth``: train (or resume), export and evaluate a DepthNet."""
    args = parse_depth_args(argv)
    config = DepthTrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        split=args.split,
        val_split=args.val_split,
        widths=tuple(args.widths),
        max_minutes=args.max_minutes,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        eval_stride=args.eval_stride,
        frame_stride=args.frame_stride,
    )
    try:
        trainer = DepthTrainer(
            args.data, args.out, config, val_roots=args.val_data, progress=not args.no_progress
        )
    except ValueError as err:
        raise SystemExit(str(err)) from err
    metrics = trainer.run()
    val = metrics.get("val") or {}
    summary = ", ".join(f"{name} AbsRel {m['absrel']:.4f}" for name, m in val.items())
    print(
        f"depth: step {metrics['step']}/{args.steps}; {summary or 'no validation split'}; "
        f"weights at {args.out / 'depth.safetensors'}"
    )
