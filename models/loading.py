"""Saving and loading pipelines, and building the full-size model from a CogVideoX folder.

A pipeline folder holds ``transformer/`` and ``vae/`` (diffusers ``config.json`` +
``diffusion_pytorch_model.safetensors``), ``scheduler/scheduler_config.json`` and
``pipeline.json`` (view size, rig, sampler defaults). Nothing here unpickles: weights are read
only from safetensors, and a folder without them is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from safetensors import SafetensorError
from safetensors.torch import load_file

from shareverse_env.files import atomic_folder
from shareverse_env.geometry import CameraRig

from .configs import SCHEDULER_CONFIG, get_spec
from .pipeline import ShareVersePipeline
from .transformer import ShareVerseTransformer

PIPELINE_FILE = "pipeline.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
SHARDED_INDEX = "diffusion_pytorch_model.safetensors.index.json"


def save_pipeline(pipe: ShareVersePipeline, folder: str | os.PathLike[str]) -> None:
    """Write ``pipe`` to ``folder`` atomically (a sibling temporary folder, then a rename)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; refusing to replace it")
    with atomic_folder(folder) as tmp:
        pipe.transformer.save_pretrained(tmp / "transformer", safe_serialization=True)
        pipe.vae.save_pretrained(tmp / "vae", safe_serialization=True)
        pipe.scheduler.save_pretrained(tmp / "scheduler")
        meta = {
            "format": "shareverse-pipeline",
            "version": 1,
            "view_hw": list(pipe.view_hw),
            "rig": {
                "mount_height": pipe.rig.mount_height,
                "offsets": [list(o) for o in pipe.rig.offsets],
                "hfov_deg": pipe.rig.hfov_deg,
            },
            "num_inference_steps": pipe.num_inference_steps,
            "guidance_scale": pipe.guidance_scale,
        }
        (tmp / PIPELINE_FILE).write_text(json.dumps(meta, indent=2) + "\n")


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
    meta = _read_json(folder / PIPELINE_FILE)
    if meta.get("format") != "shareverse-pipeline":
        raise ValueError(f"{folder / PIPELINE_FILE} is not a ShareVerse pipeline description")
    missing_keys = [k for k in ("view_hw", "num_inference_steps") if k not in meta]
    rig_meta = meta.get("rig", {})
    missing_keys += [
        f"rig.{k}"
        for k in ("mount_height", "offsets", "hfov_deg")
        if rig_meta and k not in rig_meta
    ]
    if missing_keys:
        raise ValueError(f"{folder / PIPELINE_FILE} lacks {', '.join(missing_keys)}")
    transformer = _load_component(ShareVerseTransformer, folder / "transformer")
    vae = _load_component(AutoencoderKLCogVideoX, folder / "vae")
    try:
        scheduler = CogVideoXDDIMScheduler.from_pretrained(folder / "scheduler")
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load {folder / 'scheduler'}: {err}") from err
    rig = CameraRig()
    if rig_meta:
        rig = CameraRig(
            mount_height=float(rig_meta["mount_height"]),
            offsets=tuple(tuple(float(v) for v in o) for o in rig_meta["offsets"]),
            hfov_deg=float(rig_meta["hfov_deg"]),
        )
    pipe = ShareVersePipeline(
        transformer,
        vae,
        scheduler,
        tuple(meta["view_hw"]),
        rig=rig,
        num_inference_steps=int(meta.get("num_inference_steps", 8)),
        guidance_scale=float(meta.get("guidance_scale", 1.0)),
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


def load_model(
    model: str | os.PathLike[str] | ShareVersePipeline | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> ShareVersePipeline:
    """Resolve the env's ``model=`` keyword to a pipeline.

    ``None``: the trained weights shipped in the package. A config name (``"tiny"``,
    ``"small"``, …): a randomly initialised model of that size (seeded by ``seed``; useful for
    tests and benchmarks, its frames are noise). A folder: :func:`load_pipeline`. A
    :class:`ShareVersePipeline`: used as is.
    """
    from .configs import MODEL_SPECS

    if isinstance(model, ShareVersePipeline):
        return model.to(device)
    if model is None:
        if not (SHIPPED_WEIGHTS / PIPELINE_FILE).is_file():
            raise FileNotFoundError(
                "this install has no trained ShareVerse weights (expected at "
                f"{SHIPPED_WEIGHTS}); pass model='tiny' or 'small' for a random model, or the "
                "folder of a trained pipeline"
            )
        return load_pipeline(SHIPPED_WEIGHTS, device=device)
    if isinstance(model, str) and model in MODEL_SPECS:
        return ShareVersePipeline.from_config_name(model, seed=seed).to(device)
    path = Path(model)
    if path.is_dir():
        return load_pipeline(path, device=device)
    raise ValueError(
        f"model={model!r} is neither a config name {sorted(MODEL_SPECS)}, a pipeline folder, "
        "nor a ShareVersePipeline"
    )
