"""Loading models by name, folder or object, and building the full-size model from a CogVideoX
folder. The folder format itself is :mod:`shareverse_env.models.pipeline_folder`;
:func:`load_pipeline` and :func:`save_pipeline` are the pipeline's ``from_pretrained`` and
``save_pretrained``.

Example:

>>> pipe = load_model("tiny")
>>> pipe.view_hw
(32, 48)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from shareverse_env.models.configs import SCHEDULER_CONFIG, get_spec
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.pipeline_folder import (
    PIPELINE_FILE,
    PipelineMeta,
    is_pipeline_folder,
    load_component,
    load_state_dict,
    read_json,
    require_files,
    require_weights,
)
from shareverse_env.models.transformer import ShareVerseTransformer

from shareverse_env.core.geometry import VAE_SPATIAL_FACTOR
from shareverse_env.core.weights import SHIPPED_PIPELINE, shipped_weights

__all__ = [
    "PIPELINE_FILE",
    "PipelineMeta",
    "from_cogvideox",
    "is_pipeline_folder",
    "load_model",
    "load_pipeline",
    "save_pipeline",
]


def save_pipeline(pipe: ShareVersePipeline, folder: str | os.PathLike[str]) -> None:
    """Write ``pipe`` to ``folder`` atomically (:meth:`ShareVersePipeline.save_pretrained`)."""
    pipe.save_pretrained(folder)


def load_pipeline(
    folder: str | os.PathLike[str],
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> ShareVersePipeline:
    """Load a pipeline folder, checking every file first (:meth:`ShareVersePipeline.
    from_pretrained`)."""
    return ShareVersePipeline.from_pretrained(folder, device=device, dtype=dtype)


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
    require_files(path, ["transformer/config.json", "vae/config.json"])
    require_weights(path / "transformer")
    base = read_json(path / "transformer" / "config.json")
    config = {k: v for k, v in base.items() if not k.startswith("_")}
    config.update(shareverse_options)
    transformer = ShareVerseTransformer(**config)
    state = load_state_dict(path / "transformer")
    missing, unexpected = transformer.load_state_dict(state, strict=False)
    additions = set(transformer.shareverse_parameter_names())
    really_missing = sorted(set(missing) - additions)
    if really_missing or unexpected:
        raise ValueError(
            f"{path / 'transformer'} is not a CogVideoX transformer this model can use: "
            f"missing {really_missing[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    transformer.init_shareverse_additions()
    vae = load_component(AutoencoderKLCogVideoX, path / "vae")
    scheduler_dir = path / "scheduler"
    if (scheduler_dir / "scheduler_config.json").is_file():
        scheduler = CogVideoXDDIMScheduler.from_pretrained(scheduler_dir)
    else:
        scheduler = CogVideoXDDIMScheduler(**SCHEDULER_CONFIG)
    if view_hw is None:
        # Tiled frames are the latent sample size × the VAE's factor; each view is half of that.
        view_hw = (
            config["sample_height"] * VAE_SPATIAL_FACTOR // 2,
            config["sample_width"] * VAE_SPATIAL_FACTOR // 2,
        )
    steps = num_inference_steps or get_spec("cogvideox-5b-i2v").num_inference_steps
    pipe = ShareVersePipeline(transformer, vae, scheduler, view_hw, num_inference_steps=steps)
    return pipe.to(dtype=dtype)


SHIPPED_WEIGHTS = shipped_weights(SHIPPED_PIPELINE)
"""Where the trained small model ships inside the package (:mod:`shareverse_env.core.weights`)."""


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
