"""The trained small model shipped in the package: present, small, the env's default, better
than an untrained model; the default env (the model with the scene cache) beats the best trivial
floor and follows the action, which the model alone does not (a strict expected failure: it
turns red the day the model alone passes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from shareverse_env.models.loading import load_model

import shareverse_env
from shareverse_env.backends import default_backend_name, shipped_weights_folder
from shareverse_env.backends.generative import ShareVerseBackend
from shareverse_env.evaluation.floors import blur_sigma, blur_views, mean_colour_views
from shareverse_env.evaluation.quality import autoencode_image
from shareverse_env.evaluation.variants import FLOORS

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)

STILL = np.zeros(3, dtype=np.float32)

# Measured on seeds 0 and 1 (first chunk, 2 agents, the default 1 sampler step), PSNR of the
# chunk against the renderer's (`pytest -s` prints them), with the cache-conditioned v4 weights
# shipped on 2026-12-06: the default (the model reading the scene cache, splats capped at 6 × 3)
# 25.17 dB (25.29 with the 3 × 3 splats of before; 25.06 with the colour anchor on, the default
# since 2026-12-08, response 1.08; v5's decoder: 24.95, response 1.08, model alone 20.16,
# autoencoded floor 19.17), the shipped model alone (the paper's mode, no cache, no
# anchor) 21.12; floors: the first frame blurred (σ = 6 px) 20.16, autoencoded 20.07,
# repeated 19.51, mean colour 16.85; so the default leads the best floor by +5.0 ± 0.27 dB
# (v3: 25.25 and 21.05 dB; v2: 25.14 and 21.04; v1: 25.02 and 20.97; v0: 24.53 and 20.51, all
# with 3 × 3 splats). The untrained small model scores 12.03 dB. Action response: default
# 1.09 of the truth's (1.06 at 3 × 3), the model alone 0.02 (see the expected failure below).
UNTRAINED_MARGIN_DB = 4.0
FLOOR_MARGIN_DB = 0.3
"""A default must beat the best trivial floor (the first frame repeated, blurred, autoencoded
or averaged, whichever scores highest) by this much, and by two standard errors of the paired
differences over the four (seed, agent) chunks, the evaluation's rule for a clear lead."""
RESPONSE_MIN = 0.3
"""... and its chunk must change with the action by at least this fraction of the truth's."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def first_chunk(seed: int, action: np.ndarray = DRIVE, **kwargs) -> tuple[dict, dict]:
    env = shareverse_env.parallel_env(max_cycles=2, terminate_on_collision=False, **kwargs)
    obs, _ = env.reset(seed=seed)
    _, _, _, _, infos = env.step({a: action for a in env.agents})
    return obs, {a: info["frames"] for a, info in infos.items()}


def test_weights_ship_as_safetensors_under_40_mb() -> None:
    folder = shipped_weights_folder()
    assert folder is not None, "models/weights/small is missing from this install"
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 40e6
    assert {p.suffix for p in files} == {".json", ".safetensors"}  # nothing that unpickles


def drive_one_chunk(env, seed: int) -> tuple[dict, dict]:
    """Reset ``env`` with ``seed``, drive every agent 8 m ahead for one chunk: (reset
    observations, each agent's 28 new frames)."""
    obs, _ = env.reset(seed=seed)
    _, _, _, _, infos = env.step({a: DRIVE for a in env.agents})
    return obs, {a: info["frames"] for a, info in infos.items()}


def test_default_env_runs_the_shipped_model() -> None:
    assert default_backend_name() == "shareverse"
    folder = shipped_weights_folder()
    assert folder is not None, "models/weights/small is missing from this install"
    options = {"max_cycles": 2, "terminate_on_collision": False}
    env = shareverse_env.parallel_env(**options)
    assert isinstance(env.backend, ShareVerseBackend)
    # The default backend holds the shipped tensors (stored as float16, run as float32) exactly.
    for component in ("transformer", "vae"):
        shipped = load_file(Path(folder) / component / "diffusion_pytorch_model.safetensors")
        state = getattr(env.backend.pipeline, component).state_dict()
        assert state.keys() == shipped.keys(), component
        different = [k for k, v in shipped.items() if not torch.equal(state[k], v.to(state[k]))]
        assert not different, f"{component} differs from the shipped file in {different[:5]}"

    first, generated = drive_one_chunk(env, seed=5)
    truth, _ = shareverse_env.parallel_env(backend="world", max_cycles=1).reset(seed=5)
    for agent in env.possible_agents:  # an episode starts from the renderer's frame
        np.testing.assert_array_equal(first[agent], truth[agent])
    # The model's chunk is the one the shipped folder gives when named explicitly ...
    _, explicit = drive_one_chunk(
        shareverse_env.parallel_env(backend="shareverse", model=str(folder), **options), seed=5
    )
    # ... and not what random weights of the same architecture ("small") give.
    _, untrained = drive_one_chunk(
        shareverse_env.parallel_env(backend="shareverse", model="small", **options), seed=5
    )
    assert generated.keys() == explicit.keys() == untrained.keys() == set(env.possible_agents)
    # Compared where the model draws: the cache's composite (the exact first frames) and the
    # colour anchor make both chunks alike elsewhere.
    renders = env.backend.last_cache_renders  # one per agent, in agent order
    for row, (agent, frames) in enumerate(generated.items()):
        assert frames.shape == (28, *env.backend.frame_shape)
        np.testing.assert_array_equal(frames, explicit[agent])
        holes = ~renders[row].valid
        assert holes.mean() > 0.05, agent
        # Measured on seed 5, in the holes (12-14 % of the pixels): 15.6 and 16.1 dB between
        # the trained (v5) and the random chunk (whole frames: 24.0 and 25.0 dB, colour-anchored
        # since 2026-12-08; v4 without the anchor: 14.5 and 13.7 dB).
        assert psnr(frames[holes], untrained[agent][holes]) < 20.0, agent


MODEL_ALONE = {"backend_options": {"scene_cache": False, "colour_anchor": 0.0}}
"""The paper's mechanism alone: the shipped model's own frames, no scene cache and no colour
anchor (which moves even random frames to the first frame's palette: the untrained model
scores 16.0 dB with it, 12.0 without)."""


@pytest.fixture(scope="module")
def measured() -> dict[str, float]:
    """Mean PSNR (dB, of the chunk's pooled MSE) against the renderer's chunk over seeds 0 and
    1 and both agents, for the default env (the shipped model with the scene cache), the model
    alone, an untrained one and every floor; and the action sensitivity: how much the default's,
    the model alone's and the true chunks change from "drive 8 m" to "stand still" (mean
    absolute difference, grey levels), as fractions of the truth's."""
    scores: dict[str, list[float]] = {}
    changes: dict[str, list[float]] = {"default": [], "model": [], "truth": []}
    pipeline = load_model(shipped_weights_folder())
    for seed in (0, 1):
        first, generated = first_chunk(seed)
        _, still = first_chunk(seed, action=STILL)
        _, alone = first_chunk(seed, **MODEL_ALONE)
        _, alone_still = first_chunk(seed, action=STILL, **MODEL_ALONE)
        _, truth = first_chunk(seed, backend="world")
        _, truth_still = first_chunk(seed, backend="world", action=STILL)
        _, noise = first_chunk(seed, backend="shareverse", model="small", **MODEL_ALONE)
        for agent, frames in truth.items():
            start = first[agent][None]
            floors = {
                "repeat": start,
                "repeat_blur": blur_views(start, blur_sigma(0)),
                "repeat_autoencoded": autoencode_image(pipeline, start),
                "mean_colour": mean_colour_views(start),
            }
            outputs = {"default": generated[agent], "model": alone[agent]}
            outputs |= {"untrained": noise[agent]}
            outputs |= {name: np.broadcast_to(f, frames.shape) for name, f in floors.items()}
            for name, output in outputs.items():
                scores.setdefault(name, []).append(psnr(output, frames))
            pairs = {
                "default": (generated, still),
                "model": (alone, alone_still),
                "truth": (truth, truth_still),
            }
            for name, (drive, stand) in pairs.items():
                changes[name].append(np.abs(drive[agent].astype(int) - stand[agent]).mean())
    out = {name: float(np.mean(v)) for name, v in scores.items()}
    best = max(FLOORS, key=out.__getitem__)
    out["best_floor"] = out[best]
    lead = np.subtract(scores["default"], scores[best])  # paired, per (seed, agent)
    out["lead_se"] = float(lead.std(ddof=1) / np.sqrt(len(lead)))
    for name in ("default", "model"):
        out[f"response_{name}"] = float(np.sum(changes[name]) / np.sum(changes["truth"]))
    out["true_change"] = float(np.mean(changes["truth"]))
    return out


def _summary(m: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in m.items())


@pytest.mark.slow
def test_shipped_model_beats_an_untrained_model(measured) -> None:
    print(_summary(measured))  # the figures behind the margins (pytest -s)
    assert measured["model"] > measured["untrained"] + UNTRAINED_MARGIN_DB, _summary(measured)
    assert measured["true_change"] > 5.0  # the truth does change with the action


@pytest.mark.slow
def test_default_beats_the_best_floor(measured) -> None:
    lead = measured["default"] - measured["best_floor"]
    assert lead > max(FLOOR_MARGIN_DB, 2 * measured["lead_se"]), _summary(measured)


@pytest.mark.slow
def test_default_follows_the_action(measured) -> None:
    assert measured["response_default"] > RESPONSE_MIN, _summary(measured)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the shipped model alone ignores the action: measured on seeds 0 and 1, its chunk "
    "changes by 0.1-0.3 grey levels on average from 'drive 8 m' to 'stand still', where the "
    "true chunk changes by 14.3 (response 0.01-0.02, RESPONSE_MIN 0.3); the scene cache "
    "supplies it",
)
def test_model_alone_follows_the_action(measured) -> None:
    assert measured["response_model"] > RESPONSE_MIN, _summary(measured)
