"""The pipeline folder format: what a saved :class:`~shareverse_env.models.pipeline.
ShareVersePipeline` is on disk, read and written component by component.

A pipeline folder holds ``transformer/`` and ``vae/`` (diffusers ``config.json`` +
``diffusion_pytorch_model.safetensors``), ``scheduler/scheduler_config.json`` and
``pipeline.json`` (:class:`PipelineMeta`: view size, rig, sampler defaults). Nothing here
unpickles: weights are read only from safetensors, and a folder without them is refused. The
pipeline's ``save_pretrained`` / ``from_pretrained`` are built on :func:`write_components` and
:func:`read_components`; this module knows nothing of the pipeline class itself.

Example (the description of a tiny pipeline, as ``pipeline.json`` stores it):

>>> from shareverse_env.models.pipeline import ShareVersePipeline
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
from typing import Any, ClassVar, Protocol

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from safetensors import SafetensorError
from safetensors.torch import load_file
from shareverse_env.models.transformer import ShareVerseTransformer

from shareverse_env.core.files import atomic_folder
from shareverse_env.core.geometry import CameraRig
from shareverse_env.core.weights import PIPELINE_FILE

WEIGHTS = "diffusion_pytorch_model.safetensors"
SHARDED_INDEX = "diffusion_pytorch_model.safetensors.index.json"


class _Described(Protocol):
    """What :meth:`PipelineMeta.of` reads of a pipeline."""

    view_hw: tuple[int, int]
    rig: CameraRig
    num_inference_steps: int
    guidance_scale: float


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
    def of(cls, pipe: _Described) -> PipelineMeta:
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
        """Write ``folder/pipeline.json`` (inside :func:`write_components`' temporary folder)."""
        (Path(folder) / PIPELINE_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> PipelineMeta:
        """Read and check ``folder/pipeline.json``."""
        path = Path(folder) / PIPELINE_FILE
        return cls.from_json(read_json(path), path)


@dataclass(frozen=True)
class PipelineComponents:
    """A pipeline folder's contents: the three diffusers components and ``pipeline.json``."""

    transformer: ShareVerseTransformer
    vae: AutoencoderKLCogVideoX
    scheduler: CogVideoXDDIMScheduler
    meta: PipelineMeta


def write_components(folder: str | os.PathLike[str], components: PipelineComponents) -> None:
    """Write a pipeline folder atomically (a sibling temporary folder, then a rename)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; refusing to replace it")
    with atomic_folder(folder) as tmp:
        components.transformer.save_pretrained(tmp / "transformer", safe_serialization=True)
        components.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        components.scheduler.save_pretrained(tmp / "scheduler")
        components.meta.write(tmp)


def require_files(folder: Path, relative: list[str]) -> None:
    missing = [r for r in relative if not (folder / r).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint folder {folder} is missing: {', '.join(missing)}")


def require_weights(component: Path) -> None:
    if not ((component / WEIGHTS).is_file() or (component / SHARDED_INDEX).is_file()):
        raise FileNotFoundError(
            f"{component} has no {WEIGHTS} (or sharded index); only safetensors weights are loaded"
        )


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt JSON file {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def load_component(cls: Any, component: Path, **kwargs: Any) -> Any:
    require_files(component, ["config.json"])
    require_weights(component)
    try:
        return cls.from_pretrained(
            component, use_safetensors=True, low_cpu_mem_usage=False, **kwargs
        )
    except (OSError, ValueError, RuntimeError, SafetensorError, json.JSONDecodeError) as err:
        raise ValueError(
            f"could not load {component}: corrupt or mismatched files ({err})"
        ) from err


def read_components(folder: str | os.PathLike[str]) -> PipelineComponents:
    """Read a pipeline folder written by :func:`write_components`, checking every file first."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no pipeline folder at {folder}")
    require_files(
        folder,
        [
            PIPELINE_FILE,
            "transformer/config.json",
            "vae/config.json",
            "scheduler/scheduler_config.json",
        ],
    )
    meta = PipelineMeta.read(folder)
    transformer = load_component(ShareVerseTransformer, folder / "transformer")
    vae = load_component(AutoencoderKLCogVideoX, folder / "vae")
    try:
        scheduler = CogVideoXDDIMScheduler.from_pretrained(folder / "scheduler")
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load {folder / 'scheduler'}: {err}") from err
    return PipelineComponents(transformer, vae, scheduler, meta)


def load_state_dict(component: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors checkpoint."""
    if (component / WEIGHTS).is_file():
        files = [component / WEIGHTS]
    else:
        index = read_json(component / SHARDED_INDEX)
        files = [component / shard for shard in sorted(set(index.get("weight_map", {}).values()))]
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            state.update(load_file(file))
        except (OSError, SafetensorError) as err:
            raise ValueError(f"corrupt or unreadable safetensors file {file}: {err}") from err
    return state
