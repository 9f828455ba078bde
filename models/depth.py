"""A small monocular depth network for the env's tiled frames (``shareverse_env.models.depth``).

:class:`DepthNet` is a compact conv U-Net applied to each camera view on its own: a tiled frame
``(2H, 2W, 3)`` is split into its four views ``[[front, rear], [left, right]]``, every view
goes through the net, and the outputs are tiled back. The net predicts log z-depth (metres,
along each camera's optical axis) and a sky logit per pixel; :func:`predict_depth` turns
these into depth with ``inf`` on the sky, as the dataset stores it. It is trained on the
renderer's exact depth with blur, noise and resampling augmentation (``shareverse-train
depth``, :mod:`shareverse_env.models.training.depth`) so that generated frames, which are
blurrier and noisier than rendered ones, can still be lifted to 3D;
:func:`shareverse_env.scene.depth_align.align_depth` fits a prediction to known depth (a scene
cache's reprojection) by scale and shift on inverse depth.

Example:
    >>> import numpy as np, torch
    >>> torch.manual_seed(0) and None
    >>> net = DepthNet(widths=(4, 8, 8, 8, 8)).eval()  # random tiny net, no weights needed
    >>> frames = np.zeros((2, 128, 192, 3), np.uint8)
    >>> depth = predict_depth(net, frames)
    >>> depth.shape, depth.dtype
    ((2, 128, 192), dtype('float32'))
    >>> predict_depth(net, frames[0]).shape  # a single frame
    (128, 192)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from shareverse_env.core.geometry import MAX_DEPTH
from shareverse_env.core.tiling import tile_views, untile_views
from shareverse_env.core.weights import SHIPPED_DEPTH, shipped_weights

WEIGHTS_DIR = shipped_weights(SHIPPED_DEPTH)
"""Where the trained depth network ships inside the package (:mod:`shareverse_env.core.weights`)."""
WEIGHTS_FILE = "depth.safetensors"
CONFIG_FILE = "config.json"
CONFIG_FORMAT = "shareverse-depthnet"

MIN_DEPTH = 0.1
"""Smallest depth the net outputs (metres): the log-depth head is clamped here."""


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """conv3x3 → BN → ReLU → conv3x3 → BN → ReLU (the first conv may stride down)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class DepthNet(nn.Module):
    """Per-view conv U-Net: ``(B, 3, H, W)`` views in [0, 1] → log-depth and sky logit.

    The input gets two coordinate channels (normalised row and column), because with level
    cameras at a fixed height the image row alone says much about ground depth. The encoder
    halves the resolution ``len(widths) - 1`` times; the decoder upsamples bilinearly and
    fuses the skip features. The full-resolution stage is kept thin (``widths[0]`` channels)
    so that the net stays cheap on a CPU.

    Args:
        widths: channels per resolution level, full resolution first.
        log_depth_bias: initial bias of the log-depth head (``log`` of a typical depth).

    Example:
        >>> net = DepthNet(widths=(4, 8, 8, 8, 8))
        >>> log_depth, sky_logit = net(torch.rand(2, 3, 64, 96))
        >>> tuple(log_depth.shape), tuple(sky_logit.shape)
        ((2, 64, 96), (2, 64, 96))
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 96, 128), log_depth_bias: float = 3.0):
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError(f"widths needs at least two levels, got {widths}")
        self.widths = widths
        self.log_depth_bias = float(log_depth_bias)
        self.stem = nn.Sequential(
            nn.Conv2d(5, widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.down = nn.ModuleList(
            _block(widths[i], widths[i + 1], stride=2) for i in range(len(widths) - 1)
        )
        # Decoder levels from the coarsest up to half resolution: fuse upsampled + skip.
        self.up = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 2, 0, -1)
        )
        # Full resolution: a 1x1 projection plus the stem's features, then one 3x3 conv.
        self.to_full = nn.Conv2d(widths[1], widths[0], 1)
        self.refine = nn.Sequential(
            nn.Conv2d(widths[0], widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(widths[0], 2, 1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([self.log_depth_bias, -2.0]))

    def config(self) -> dict[str, Any]:
        """What :func:`load_depth_model` needs to rebuild this net (``config.json``)."""
        return {
            "format": CONFIG_FORMAT,
            "version": 1,
            "widths": self.widths,
            "log_depth_bias": self.log_depth_bias,
            "min_depth": MIN_DEPTH,
            "max_depth": MAX_DEPTH,
        }

    def forward(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``views (B, 3, H, W)`` in [0, 1] → ``(log_depth, sky_logit)``, each ``(B, H, W)``.

        ``H`` and ``W`` must be divisible by ``2 ** (len(widths) - 1)``.
        """
        b, _, h, w = views.shape
        factor = 2 ** (len(self.widths) - 1)
        if h % factor or w % factor:
            raise ValueError(f"view size {h}x{w} must be divisible by {factor}")
        rows = torch.linspace(-1.0, 1.0, h, device=views.device, dtype=views.dtype)
        cols = torch.linspace(-1.0, 1.0, w, device=views.device, dtype=views.dtype)
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).expand(b, 2, h, w)
        x = torch.cat([(views - 0.5) / 0.25, coords], dim=1)
        skips = [self.stem(x)]
        for layer in self.down:
            skips.append(layer(skips[-1]))
        x = skips.pop()
        for layer in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = layer(torch.cat([x, skip], dim=1))
        full = skips.pop()
        x = F.interpolate(
            self.to_full(x), size=full.shape[-2:], mode="bilinear", align_corners=False
        )
        out = self.head(self.refine(x + full))
        return out[:, 0], out[:, 1]


def frames_to_views(frames: np.ndarray) -> torch.Tensor:
    """uint8 tiled frames ``(N, 2H, 2W, 3)`` → float views ``(4N, 3, H, W)`` in [0, 1].

    The four views of frame ``n`` are rows ``4n .. 4n + 3`` in
    :data:`~shareverse_env.core.geometry.VIEW_NAMES` order (:func:`~shareverse_env.core.tiling.
    untile_views`).

    Example:
        >>> frames_to_views(np.zeros((2, 128, 192, 3), np.uint8)).shape
        torch.Size([8, 3, 64, 96])
    """
    views = untile_views(torch.from_numpy(np.ascontiguousarray(frames)))  # (N, 4, H, W, 3)
    # Contiguous before the cast: the net's convolutions see the same memory layout every time.
    views = rearrange(views, "n v h w c -> (n v) c h w").contiguous()
    return views.float().div_(255.0)


def views_to_frames(views: torch.Tensor) -> torch.Tensor:
    """Per-view maps ``(4N, H, W)`` → tiled ``(N, 2H, 2W)``, or per-view images ``(4N, C, H, W)``
    → tiled ``(N, 2H, 2W, C)``: the inverse of :func:`frames_to_views`'s split (no scaling).

    Example:
        >>> views_to_frames(torch.zeros(8, 64, 96)).shape
        torch.Size([2, 128, 192])
        >>> views_to_frames(torch.zeros(8, 3, 64, 96)).shape
        torch.Size([2, 128, 192, 3])
    """
    if views.ndim == 3:
        return tile_views(rearrange(views, "(n v) h w -> n v h w", v=4)[..., None])[..., 0]
    return tile_views(rearrange(views, "(n v) c h w -> n v h w c", v=4))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON config ({err})") from err
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ValueError(f"{path}: expected a JSON object with format {CONFIG_FORMAT!r}")
    return config


def save_depth_model(
    model: DepthNet, folder: str | Path, dtype: torch.dtype = torch.float16
) -> Path:
    """Write ``folder/depth.safetensors`` (floats as ``dtype``) and ``folder/config.json``.

    Example:
        >>> import tempfile
        >>> folder = save_depth_model(DepthNet(widths=(4, 8, 8)), tempfile.mkdtemp())
        >>> sorted(p.name for p in folder.iterdir())
        ['config.json', 'depth.safetensors']
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")  # training bookkeeping only
    }
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(model.config(), indent=2) + "\n")
    return folder


def load_depth_model(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> DepthNet:
    """Load a :class:`DepthNet` in eval mode (float32) from safetensors weights.

    Args:
        path: a ``depth.safetensors`` file or the folder holding it, with ``config.json``
            beside it; ``None``: the weights shipped in the package (``models/weights/depth``).
        device: where to put the model.

    Raises:
        FileNotFoundError: the weights or the config are missing.
        ValueError: the config is malformed or the weights do not fit it.

    Example:
        >>> import tempfile
        >>> folder = save_depth_model(DepthNet(widths=(4, 8, 8)), tempfile.mkdtemp())
        >>> load_depth_model(folder).widths
        [4, 8, 8]
        >>> load_depth_model(folder / "missing")
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...missing: no depth weights (depth.safetensors) ...
    """
    from safetensors.torch import load_file

    path = WEIGHTS_DIR if path is None else Path(path)
    weights = path if path.suffix == ".safetensors" else path / WEIGHTS_FILE
    config_path = weights.parent / CONFIG_FILE
    if not weights.is_file():
        raise FileNotFoundError(
            f"{path}: no depth weights ({WEIGHTS_FILE}) there; train some with "
            "`shareverse-train depth --data DIR --out RUN --steps N` and pass RUN"
        )
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing (the DepthNet's config.json)")
    config = _read_config(config_path)
    try:
        model = DepthNet(config["widths"], config.get("log_depth_bias", 3.0))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{config_path}: bad DepthNet config ({err!r})") from err
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()
    }
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{weights}: weights do not fit {config_path}: {err}") from err
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{weights}: weights do not fit {config_path} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.to(device).eval()


def depth_from_outputs(
    log_depth: torch.Tensor, sky_logit: torch.Tensor, max_depth: float = MAX_DEPTH
) -> torch.Tensor:
    """Depth in metres from the net's outputs: ``exp`` of the clamped log-depth, ``inf`` where
    the sky probability exceeds 0.5 (logit > 0)."""
    depth = log_depth.clamp(math.log(MIN_DEPTH), math.log(max_depth)).exp()
    return torch.where(sky_logit > 0, torch.full_like(depth, math.inf), depth)


@torch.no_grad()
def predict_depth(model: DepthNet, frames: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Z-depth of uint8 tiled frames ``(N, 2H, 2W, 3)`` or ``(2H, 2W, 3)``.

    Returns float32 ``(N, 2H, 2W)`` (or ``(2H, 2W)``), metres along each camera's optical axis,
    ``inf`` where the predicted sky probability exceeds 0.5. Runs in batches of
    ``batch_size`` frames on the model's device, without gradients, in eval mode.

    Example:
        >>> net = DepthNet(widths=(4, 8, 8)).eval()
        >>> d = predict_depth(net, np.full((3, 64, 96, 3), 128, np.uint8), batch_size=2)
        >>> d.shape, bool((d > 0).all())
        ((3, 64, 96), True)
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.shape[-1] != 3 or frames.ndim not in (3, 4):
        raise ValueError(
            f"expected uint8 (N, 2H, 2W, 3) or (2H, 2W, 3) frames, got {frames.dtype} {frames.shape}"
        )
    single = frames.ndim == 3
    frames = frames[None] if single else frames
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(frames), batch_size):
        views = frames_to_views(frames[start : start + batch_size]).to(device)
        depth = depth_from_outputs(*model(views))
        out.append(views_to_frames(depth).float().cpu().numpy())
    model.train(was_training)
    result = np.concatenate(out) if out else np.zeros(frames.shape[:3], np.float32)
    return result[0] if single else result


def absrel(pred: np.ndarray, truth: np.ndarray, max_depth: float = 250.0) -> float:
    """Mean ``|pred - truth| / truth`` over the pixels where ``truth`` is finite.

    ``pred`` is clipped to ``[MIN_DEPTH, max_depth]`` first, so a pixel wrongly called sky
    (``inf``) counts as ``max_depth`` — a large but finite error — rather than making the mean
    infinite. ``nan`` when ``truth`` has no finite pixel.

    Example:
        >>> truth = np.array([10.0, 20.0, np.inf])
        >>> absrel(np.array([11.0, 18.0, np.inf]), truth)  # (0.1 + 0.1) / 2
        0.1
    """
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    valid = np.isfinite(truth) & (truth > 0)
    if not valid.any():
        return float("nan")
    p = np.clip(np.nan_to_num(pred[valid], nan=max_depth, posinf=max_depth), MIN_DEPTH, max_depth)
    t = truth[valid]
    return round(float(np.mean(np.abs(p - t) / t)), 12)


def sky_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of pixels whose sky label (``inf`` depth) agrees between ``pred`` and ``truth``.

    Example:
        >>> sky_accuracy(np.array([1.0, np.inf, 2.0, 3.0]), np.array([1.0, np.inf, np.inf, 3.0]))
        0.75
    """
    pred_sky = ~np.isfinite(np.asarray(pred))
    truth_sky = ~np.isfinite(np.asarray(truth))
    return float(np.mean(pred_sky == truth_sky))
