"""Saving and loading pipelines, and building the full-size model from a CogVideoX folder.

This module owns the pipeline folder format. A pipeline folder holds ``transformer/`` and
``vae/`` (diffusers ``config.json`` + ``diffusion_pytorch_model.safetensors``),
``scheduler/scheduler_config.json`` and ``pipeline.json`` (:class:`PipelineMeta`: view size,
rig, sampler defaults). Nothing here unpickles: weights are read only from safetensors, and a
folder without them is refused. :meth:`ShareVersePipeline.save_pretrained
<shareverse_env.models.pipeline.ShareVersePipeline.save_pretrained>` and ``from_pretrained`` are
:func:`save_pipeline` and :func:`load_pipeline`.

Example (the description of a tiny pipeline, as ``pipeline.json`` stores it):

>>> meta = PipelineMeta.of(ShareVersePipeline.from_config_name("tiny"))
>>> data = meta.to_json()
>>> data["format"], data["view_hw"], data["num_inference_steps"]
('shareverse-pipeline', [32, 48], 2)
>>> PipelineMeta.from_json(data) == meta
True
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from safetensors import SafetensorError
from safetensors.torch import load_file
from shareverse_env.models.configs import SCHEDULER_CONFIG, get_spec
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.transformer import ShareVerseTransformer

from shareverse_env.core.files import atomic_folder
from shareverse_env.core.geometry import CameraRig

PIPELINE_FILE = "pipeline.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
SHARDED_INDEX = "diffusion_pytorch_model.safetensors.index.json"


def is_pipeline_folder(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` looks like a pipeline folder (it has a ``pipeline.json``)."""
    return (Path(folder) / PIPELINE_FILE).is_file()


@dataclass(frozen=True)
class PipelineMeta:
    """``pipeline.json``: what a pipeline holds besides its diffusers components.

    ``view_hw`` one camera view's size, ``rig`` the camera rig its raymaps describe,
    ``num_inference_steps`` and ``guidance_scale`` the sampler defaults.
    """

    view_hw: tuple[int, int]
    rig: CameraRig = field(default_factory=CameraRig)
    num_inference_steps: int = 8
    guidance_scale: float = 1.0

    FORMAT: ClassVar[str] = "shareverse-pipeline"
    VERSION: ClassVar[int] = 1

    @classmethod
    def of(cls, pipe: ShareVersePipeline) -> PipelineMeta:
        """The description of ``pipe``."""
        return cls(pipe.view_hw, pipe.rig, pipe.num_inference_steps, pipe.guidance_scale)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``pipeline.json``."""
        return {
            "format": self.FORMAT,
            "version": self.VERSION,
            "view_hw": list(self.view_hw),
            "rig": {
                "mount_height": self.rig.mount_height,
                "offsets": [list(o) for o in self.rig.offsets],
                "hfov_deg": self.rig.hfov_deg,
            },
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
        }

    @classmethod
    def from_json(
        cls, data: dict[str, Any], path: str | os.PathLike[str] = PIPELINE_FILE
    ) -> PipelineMeta:
        """Parse a ``pipeline.json`` object; errors name ``path``. A missing ``rig`` is the
        default rig; a missing ``guidance_scale`` is 1."""
        if data.get("format") != cls.FORMAT:
            raise ValueError(f"{path} is not a ShareVerse pipeline description")
        missing_keys = [k for k in ("view_hw", "num_inference_steps") if k not in data]
        rig_meta = data.get("rig", {})
        missing_keys += [
            f"rig.{k}"
            for k in ("mount_height", "offsets", "hfov_deg")
            if rig_meta and k not in rig_meta
        ]
        if missing_keys:
            raise ValueError(f"{path} lacks {', '.join(missing_keys)}")
        rig = CameraRig()
        if rig_meta:
            rig = CameraRig(
                mount_height=float(rig_meta["mount_height"]),
                offsets=tuple(tuple(float(v) for v in o) for o in rig_meta["offsets"]),
                hfov_deg=float(rig_meta["hfov_deg"]),
            )
        return cls(
            view_hw=tuple(data["view_hw"]),
            rig=rig,
            num_inference_steps=int(data["num_inference_steps"]),
            guidance_scale=float(data.get("guidance_scale", 1.0)),
        )

    def write(self, folder: str | os.PathLike[str]) -> None:
        """Write ``folder/pipeline.json`` (inside :func:`save_pipeline`'s temporary folder)."""
        (Path(folder) / PIPELINE_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> PipelineMeta:
        """Read and check ``folder/pipeline.json``."""
        path = Path(folder) / PIPELINE_FILE
        return cls.from_json(_read_json(path), path)


def save_pipeline(pipe: ShareVersePipeline, folder: str | os.PathLike[str]) -> None:
    """Write ``pipe`` to ``folder`` atomically (a sibling temporary folder, then a rename)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; refusing to replace it")
    with atomic_folder(folder) as tmp:
        pipe.transformer.save_pretrained(tmp / "transformer", safe_serialization=True)
        pipe.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        pipe.scheduler.save_pretrained(tmp / "scheduler")
        PipelineMeta.of(pipe).write(tmp)


def _require(folder: Path, relative: list[str]) -> None:
    missing = [r for r in relative if not (folder / r).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint folder {folder} is missing: {', '.join(missing)}")


def _weights_present(component: Path) -> None:
    if not ((component / WEIGHTS).is_file() or (component / SHARDED_INDEX).is_file()):
        raise FileNotFoundError(
            f"{component} has no {WEIGHTS} (or sharded index); only safetensors weights are loaded"
        )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt JSON file {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _load_component(cls: Any, component: Path, **kwargs: Any) -> Any:
    _require(component, ["config.json"])
    _weights_present(component)
    try:
        return cls.from_pretrained(
            component, use_safetensors=True, low_cpu_mem_usage=False, **kwargs
        )
    except (OSError, ValueError, RuntimeError, SafetensorError, json.JSONDecodeError) as err:
        raise ValueError(
            f"could not load {component}: corrupt or mismatched files ({err})"
        ) from err


def load_pipeline(
    folder: str | os.PathLike[str],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> ShareVersePipeline:
    """Load a pipeline folder written by :func:`save_pipeline`, checking every file first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no pipeline folder at {folder}")
    _require(
        folder,
        [
            PIPELINE_FILE,
            "transformer/config.json",
            "vae/config.json",
            "scheduler/scheduler_config.json",
        ],
    )
    meta = PipelineMeta.read(folder)
    transformer = _load_component(ShareVerseTransformer, folder / "transformer")
    vae = _load_component(AutoencoderKLCogVideoX, folder / "vae")
    try:
        scheduler = CogVideoXDDIMScheduler.from_pretrained(folder / "scheduler")
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load {folder / 'scheduler'}: {err}") from err
    pipe = ShareVersePipeline(
        transformer,
        vae,
        scheduler,
        meta.view_hw,
        rig=meta.rig,
        num_inference_steps=meta.num_inference_steps,
        guidance_scale=meta.guidance_scale,
    )
    return pipe.to(device, dtype)


def _load_state_dict(component: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors checkpoint."""
    if (component / WEIGHTS).is_file():
        files = [component / WEIGHTS]
    else:
        index = _read_json(component / SHARDED_INDEX)
        files = [component / shard for shard in sorted(set(index.get("weight_map", {}).values()))]
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(file))
        except (OSError, SafetensorError) as err:
            raise ValueError(f"corrupt or unreadable safetensors file {file}: {err}") from err
    return state


def from_cogvideox(
    path: str | os.PathLike[str],
    view_hw: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
    num_inference_steps: int | None = None,
    **shareverse_options: Any,
) -> ShareVersePipeline:
    """Build a ShareVerse pipeline from a local diffusers CogVideoX-I2V folder, offline.

    Reads ``transformer/`` and ``vae/`` (safetensors) and ``scheduler/``; text encoder and
    tokenizer are not needed (pass precomputed ``prompt_embeds`` to the pipeline). The DiT keeps
    every base weight; each cross-agent block starts from its DiT block's norm and attention;
    raymap encoder outputs and cross-agent projections start at zero, so the model initially
    generates what the base model would. ``shareverse_options`` set the ShareVerse keywords of
    :class:`ShareVerseTransformer` (e.g. ``cross_agent_every``).
    """
    path = Path(path)
    _require(path, ["transformer/config.json", "vae/config.json"])
    _weights_present(path / "transformer")
    base = _read_json(path / "transformer" / "config.json")
    config = {k: v for k, v in base.items() if not k.startswith("_")}
    config.update(shareverse_options)
    transformer = ShareVerseTransformer(**config)
    state = _load_state_dict(path / "transformer")
    missing, unexpected = transformer.load_state_dict(state, strict=False)
    additions = set(transformer.shareverse_parameter_names())
    really_missing = sorted(set(missing) - additions)
    if really_missing or unexpected:
        raise ValueError(
            f"{path / 'transformer'} is not a CogVideoX transformer this model can use: "
            f"missing {really_missing[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    transformer.init_shareverse_additions()
    vae = _load_component(AutoencoderKLCogVideoX, path / "vae")
    scheduler_dir = path / "scheduler"
    if (scheduler_dir / "scheduler_config.json").is_file():
        scheduler = CogVideoXDDIMScheduler.from_pretrained(scheduler_dir)
    else:
        scheduler = CogVideoXDDIMScheduler(**SCHEDULER_CONFIG)
    if view_hw is None:
        # Tiled frames are the latent sample size × 8; each view is half of that.
        view_hw = (config["sample_height"] * 4, config["sample_width"] * 4)
    steps = num_inference_steps or get_spec("cogvideox-5b-i2v").num_inference_steps
    pipe = ShareVersePipeline(transformer, vae, scheduler, view_hw, num_inference_steps=steps)
    return pipe.to(dtype=dtype)


SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "small"
"""Where the trained small model ships inside the package (added by the training work)."""


FULL_SIZE_CONFIGS: tuple[str, ...] = ("cogvideox-5b-i2v",)
"""Config names too large to build with random weights on a CPU unless asked for explicitly."""


def load_model(
    model: str | os.PathLike[str] | ShareVersePipeline | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    allow_random_full_size: bool = False,
) -> ShareVersePipeline:
    """Resolve the env's ``model=`` keyword to a pipeline.

    ``None``: the trained weights shipped in the package. A config name (``"tiny"``,
    ``"small"``, …): a randomly initialised model of that size (seeded by ``seed``; useful for
    tests and benchmarks, its frames are noise); a full-size one (:data:`FULL_SIZE_CONFIGS`) on
    the CPU only with ``allow_random_full_size=True``, as it needs tens of GB and its frames are
    noise. A pipeline folder: :func:`load_pipeline`; a diffusers CogVideoX-I2V folder (with
    ``transformer/`` and ``vae/`` but no ``pipeline.json``): :func:`from_cogvideox`. A
    :class:`ShareVersePipeline`: used as is.

    >>> load_model("cogvideox-5b-i2v", device="cpu")
    Traceback (most recent call last):
    ValueError: model='cogvideox-5b-i2v' would build a randomly initialised ...
    """
    from shareverse_env.models.configs import MODEL_SPECS

    if isinstance(model, ShareVersePipeline):
        return model.to(device)
    if model is None:
        if not is_pipeline_folder(SHIPPED_WEIGHTS):
            raise FileNotFoundError(
                "this install has no trained ShareVerse weights (expected at "
                f"{SHIPPED_WEIGHTS}); pass model='tiny' or 'small' for a random model, or the "
                "folder of a trained pipeline"
            )
        return load_pipeline(SHIPPED_WEIGHTS, device=device)
    if isinstance(model, str) and model in MODEL_SPECS:
        on_cpu = torch.device(device).type == "cpu" if device is not None else True
        if model in FULL_SIZE_CONFIGS and on_cpu and not allow_random_full_size:
            raise ValueError(
                f"model={model!r} would build a randomly initialised full-size model on the CPU "
                "(billions of parameters, tens of GB, frames of noise); pass the folder of a "
                "local CogVideoX-5B-I2V download (model='/path/to/CogVideoX-5b-I2V') or of a "
                "trained pipeline, or allow_random_full_size=True (backend option) to build it"
            )
        return ShareVersePipeline.from_config_name(model, seed=seed).to(device)
    path = Path(model)
    if path.is_dir():
        if not is_pipeline_folder(path) and (path / "transformer" / "config.json").is_file():
            return from_cogvideox(path).to(device)
        return load_pipeline(path, device=device)
    raise ValueError(
        f"model={model!r} is neither a config name {sorted(MODEL_SPECS)}, a pipeline folder, "
        "nor a ShareVersePipeline"
    )
