"""The models and baselines that the quality evaluation compares.

Model variants run the ShareVerse pipeline through :class:`~shareverse_env.backends.generative.
ShareVerseBackend`, chunk by chunk, each conditioned on its own last frame:

- ``trained``: the trained pipeline with the shared memory pooled over all agents (``"all"``);
- ``trained_cache``: the same with the shared 3D scene cache and the composite
  (``scene_cache=True``, :mod:`shareverse_env.scene.composite`): the cache's render wherever it
  is valid, the model's frame elsewhere and on other cars;
- ``trained_cache_first`` (an ablation, only when asked for): the same with no depth network,
  so only the exact first frames are ever in the cache (generated content is never archived);
- ``cache_conditioned`` (only when asked for, with a second model): a model with a scene-cache
  input (``cache_in_channels > 0``, :mod:`shareverse_env.models.cache_input`) that sees the
  cache's render while it denoises, with the same cache and composite as ``trained_cache``;
- ``no_memory``: the same weights, generated without memory (``memory_source="none"``);
- ``no_cross_agent``: a copy of the trained pipeline whose cross-agent output projections are
  zero, so every cross-agent block is the identity (exactly its state at initialisation);
- ``untrained``: a randomly initialised pipeline with the trained one's configuration;
- ``teacher_forced`` (a diagnostic, only when asked for): the trained pipeline conditioned at
  every chunk on the *true* frame at the chunk's start instead of its own last frame (memory is
  still archived from its own frames). Against ``trained`` it measures how much of the drift
  over chunks the model's own outputs cause; against ``repeat_oracle``, which gets the same true
  frame, what the model adds to it.

Trivial baselines generate nothing. The *floors* (:data:`FLOORS`) use only the episode's
conditioning frame, the information the model has; a model must beat the best of them on a
metric before it can be said to beat the baseline there (PSNR rewards blur, so a blurred copy of
the first frame is a floor, not only a sharp one):

- ``repeat``: every frame of every chunk is the episode's conditioning frame. Autoregressively
  that is the last frame the baseline "generated", so it sees exactly what the model sees;
- ``repeat_blur``: that frame blurred per camera view with a Gaussian of
  :data:`~.floors.BLUR_SIGMAS` pixels, one σ for the first chunk and one for the later
  ones (chosen on training towns to maximise PSNR);
- ``repeat_autoencoded``: that frame encoded as one image latent and decoded by the trained
  pipeline's VAE (as blurred as anything the model can decode);
- ``mean_colour``: every camera view filled with that frame's mean colour in the view.

Another trivial reference is given more than the model:

- ``repeat_oracle``: every frame of chunk ``k`` is the *true* frame at the chunk's start, a
  reference given more information than the model (the ground truth at every chunk).

One reference uses the scene cache and no model:

- ``cache_only``: both agents' exact first frames (with their true depth, as the env gives
  them) lifted into the scene cache and rendered into every planned camera; holes (and other
  cars' boxes) are filled with the agent's last output frame; nothing else enters the cache.
- ``cache_fill``: the same cache render, its holes and the other cars' boxes filled by
  push-pull from the covered pixels around them (:mod:`shareverse_env.scene.hole_fill`): the
  smooth continuation of the scene that a generator of the holes has to beat.

One more reference uses the trained pipeline's VAE only:

- ``autoencoder``: the *true* chunk encoded and decoded by the VAE. No generated chunk can be
  expected to beat it by much: it is the ceiling that the latent space sets on PSNR and SSIM.

Example:
    >>> pipe = load_model("tiny")
    >>> ablated = zero_cross_agent(pipe)
    >>> ablated is pipe, cross_agent_projection_names(ablated)[:2]
    (False, ['cross_agent_blocks.0.proj.weight', 'cross_agent_blocks.0.proj.bias'])
    >>> sorted(VARIANTS) == sorted(MODEL_VARIANTS + BASELINES)
    True
    >>> FLOORS
    ('repeat', 'repeat_blur', 'repeat_autoencoded', 'mean_colour')
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from shareverse_env.evaluation.floors import BLUR_SIGMAS
from shareverse_env.models.cross_agent import CrossAgentAttention
from shareverse_env.models.loading import load_model
from shareverse_env.models.pipeline import ShareVersePipeline

WEIGHTS: tuple[str, ...] = ("trained", "no_cross_agent", "untrained", "cache_model")
"""The pipelines a variant may run (:attr:`Variant.weights`)."""


@dataclass(frozen=True)
class Variant:
    """One row of the comparison.

    Attributes:
        name: the variant's name in results and tables.
        description: one line for the report.
        memory_source: the backend's ``memory_source`` (model variants only).
        scene_cache: run the backend with the scene cache and composite (model variants).
        depth_model: with ``scene_cache``, archive generated content with the shipped depth
            network (``False``: the cache holds the exact first frames only).
        teacher_forced: condition every chunk on the true frame at its start (model variants).
        default: part of the runner's default set (diagnostics are not).
        baseline: ``None`` for a model variant, else the kind of baseline (``"repeat"``,
            ``"repeat_blur"``, ``"repeat_autoencoded"``, ``"mean_colour"``,
            ``"repeat_oracle"``, ``"cache_only"``, ``"cache_fill"`` or ``"autoencoder"``).
        floor: a trivial floor made from the conditioning frame alone (see :data:`FLOORS`).
        weights: which pipeline the variant runs, when it needs one (:data:`WEIGHTS`):
            ``"trained"`` (the model under test, one shared object), ``"no_cross_agent"``
            (its cross-agent projections zeroed), ``"untrained"`` (random weights of the same
            configuration) or ``"cache_model"`` (the runner's ``cache_model``).
    """

    name: str
    description: str
    memory_source: str = "all"
    baseline: str | None = None
    teacher_forced: bool = False
    scene_cache: bool = False
    depth_model: bool = True
    default: bool = True
    floor: bool = False
    weights: str = "trained"

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise ValueError(f"variant {self.name!r}: weights must be one of {WEIGHTS}")

    @property
    def is_model(self) -> bool:
        """Whether the variant generates frames with the diffusion model."""
        return self.baseline is None

    @property
    def needs_pipeline(self) -> bool:
        """Whether the variant needs a pipeline (the model variants and the autoencoder)."""
        return self.baseline in (None, "autoencoder", "repeat_autoencoded")


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("trained", "trained model, shared memory (all agents)"),
        Variant(
            "trained_cache",
            "trained model + shared scene cache, composited",
            scene_cache=True,
        ),
        Variant(
            "trained_cache_first",
            "trained model + scene cache of the exact first frames only (no depth network)",
            scene_cache=True,
            depth_model=False,
            default=False,
        ),
        Variant(
            "cache_conditioned",
            "cache-conditioned model (sees the scene cache) + scene cache, composited",
            scene_cache=True,
            default=False,
            weights="cache_model",
        ),
        Variant("no_memory", "trained model, no memory retrieval", memory_source="none"),
        Variant(
            "no_cross_agent",
            "trained model, cross-agent projections zeroed",
            weights="no_cross_agent",
        ),
        Variant("untrained", "random weights, same configuration", weights="untrained"),
        Variant(
            "teacher_forced",
            "trained model conditioned on the TRUE frame at each chunk start",
            teacher_forced=True,
            default=False,
        ),
        Variant("repeat", "repeat the episode's conditioning frame", baseline="repeat", floor=True),
        Variant(
            "repeat_blur",
            f"repeat the conditioning frame blurred per view (Gaussian σ = {BLUR_SIGMAS[0]:g} px "
            f"in the first chunk, {BLUR_SIGMAS[1]:g} px after)",
            baseline="repeat_blur",
            floor=True,
        ),
        Variant(
            "repeat_autoencoded",
            "repeat the conditioning frame through the pipeline's VAE (one image latent)",
            baseline="repeat_autoencoded",
            floor=True,
        ),
        Variant(
            "mean_colour",
            "every view filled with the conditioning frame's mean colour there",
            baseline="mean_colour",
            floor=True,
        ),
        Variant(
            "repeat_oracle", "repeat the TRUE frame at each chunk start", baseline="repeat_oracle"
        ),
        Variant(
            "cache_only",
            "scene cache of the exact first frames, holes filled with the last frame (no model)",
            baseline="cache_only",
        ),
        Variant(
            "cache_fill",
            "scene cache of the exact first frames, holes and other cars push-pull filled from "
            "the cache around them (no model)",
            baseline="cache_fill",
        ),
        Variant(
            "autoencoder",
            "VAE encode + decode of the TRUE chunk (the latent space's ceiling)",
            baseline="autoencoder",
        ),
    )
}
"""Every variant the runner knows, in report order."""

MODEL_VARIANTS: list[str] = [n for n, v in VARIANTS.items() if v.is_model]
BASELINES: list[str] = [n for n, v in VARIANTS.items() if not v.is_model]
FLOORS: tuple[str, ...] = tuple(n for n, v in VARIANTS.items() if v.floor)
"""The trivial floors: baselines made from the conditioning frame alone."""


def cross_agent_projection_names(pipe: ShareVersePipeline) -> list[str]:
    """Parameter names of the cross-agent blocks' output projections (weight and bias)."""
    names = []
    for prefix, module in pipe.transformer.named_modules():
        if isinstance(module, CrossAgentAttention):
            names += [f"{prefix}.proj.{p}" for p, _ in module.proj.named_parameters()]
    return names


def zero_cross_agent(pipe: ShareVersePipeline) -> ShareVersePipeline:
    """A deep copy of ``pipe`` whose cross-agent output projections are zero.

    With a zero projection a :class:`CrossAgentAttention` block returns its input unchanged, so
    the copy is the trained model with cross-agent attention switched off; every other weight is
    shared by value with ``pipe``, which is left untouched.
    """
    ablated = copy.deepcopy(pipe)
    with torch.no_grad():
        for module in ablated.transformer.modules():
            if isinstance(module, CrossAgentAttention):
                module.proj.weight.zero_()
                module.proj.bias.zero_()
    return ablated


def random_like(pipe: ShareVersePipeline, seed: int = 0) -> ShareVersePipeline:
    """A randomly initialised pipeline with ``pipe``'s transformer and VAE configuration.

    Initialised the way the training starts (cross-agent and raymap outputs at zero); seeded by
    ``seed`` without touching the caller's global torch RNG.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = type(pipe.transformer).from_config(pipe.transformer.config)
        vae = type(pipe.vae).from_config(pipe.vae.config)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    fresh = ShareVersePipeline(
        transformer,
        vae,
        scheduler,
        pipe.view_hw,
        rig=pipe.rig,
        num_inference_steps=pipe.num_inference_steps,
        guidance_scale=pipe.guidance_scale,
    )
    # Cast only when needed: diffusers warns about any dtype cast, even a no-op one.
    return fresh.to(pipe.device, None if pipe.dtype == fresh.dtype else pipe.dtype)


def build_pipelines(
    model: str | ShareVersePipeline,
    names: list[str],
    seed: int = 0,
    cache_model: str | ShareVersePipeline | None = None,
) -> dict[str, ShareVersePipeline]:
    """The pipeline each model variant in ``names`` runs (baselines get none).

    Each variant's :attr:`Variant.weights` says which: every ``"trained"`` variant shares one
    object; the zeroed and the random copies are built only when asked for; ``"cache_model"``
    variants run ``cache_model``, which must have a scene-cache input.
    """
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    wanted = [n for n in names if VARIANTS[n].needs_pipeline]
    if not wanted:
        return {}
    trained = load_model(model, seed=seed)
    out: dict[str, ShareVersePipeline] = {}
    for name in wanted:
        weights = VARIANTS[name].weights
        if weights == "trained":
            out[name] = trained
        elif weights == "no_cross_agent":
            out[name] = zero_cross_agent(trained)
        elif weights == "cache_model":
            if cache_model is None:
                raise ValueError(
                    f"variant {name!r} needs cache_model (a pipeline with a scene-cache "
                    "input, e.g. a run of shareverse-train --cache-input)"
                )
            out[name] = load_model(cache_model, seed=seed)
            if not out[name].transformer.config.cache_in_channels:
                raise ValueError(
                    f"cache_model {cache_model} has no scene-cache input (cache_in_channels=0)"
                )
        else:  # "untrained"
            # Offset the seed: with a config name as ``model`` the "trained" weights are random
            # too, and must not be the very same draw.
            out[name] = random_like(trained, seed=seed + 1)
    return out
