"""The trained small model shipped in the package: present, small, the env's default, better
than an untrained model and than the best trivial floor; and following the action, which
today's weights do not (a strict expected failure: it turns red the day a default passes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from shareverse_env.models.loading import load_model

import shareverse_env
from shareverse_env.backends import default_backend_name, shipped_weights_folder
from shareverse_env.evaluation.floors import blur_sigma, blur_views, mean_colour_views
from shareverse_env.evaluation.quality import autoencode_image
from shareverse_env.evaluation.variants import FLOORS
from shareverse_env.generative_backend import ShareVerseBackend

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)

STILL = np.zeros(3, dtype=np.float32)

# Measured on seeds 0 and 1 (first chunk, 2 agents, the default 1 sampler step), PSNR of the
# chunk against the renderer's (`pytest -s` prints them): shipped model 20.51 dB; floors: the
# first frame blurred (σ = 6 px) 20.16, autoencoded 20.07, repeated 19.51, mean colour 16.85;
# so a lead of +0.35 ± 0.13 dB over the best floor. The untrained small model scores 12.03 dB.
# The model ignores the action (see the expected failure below).
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
    for agent, frames in generated.items():
        assert frames.shape == (28, *env.backend.frame_shape)
        np.testing.assert_array_equal(frames, explicit[agent])
        # Measured on seed 5: 14.5 and 13.7 dB between the trained and the random chunk.
        assert psnr(frames, untrained[agent]) < 25.0, agent


@pytest.fixture(scope="module")
def measured() -> dict[str, float]:
    """Mean PSNR (dB, of the chunk's pooled MSE) against the renderer's chunk over seeds 0 and
    1 and both agents, for the shipped model, an untrained one and every floor; and the
    action sensitivity: how much the model's and the true chunks change from "drive 8 m" to
    "stand still" (mean absolute difference, grey levels)."""
    scores: dict[str, list[float]] = {}
    model_change, true_change = [], []
    pipeline = load_model(shipped_weights_folder())
    for seed in (0, 1):
        first, generated = first_chunk(seed)
        _, still = first_chunk(seed, action=STILL)
        _, truth = first_chunk(seed, backend="world")
        _, truth_still = first_chunk(seed, backend="world", action=STILL)
        _, noise = first_chunk(seed, backend="shareverse", model="small")
        for agent, frames in truth.items():
            start = first[agent][None]
            floors = {
                "repeat": start,
                "repeat_blur": blur_views(start, blur_sigma(0)),
                "repeat_autoencoded": autoencode_image(pipeline, start),
                "mean_colour": mean_colour_views(start),
            }
            outputs = {"model": generated[agent], "untrained": noise[agent]}
            outputs |= {name: np.broadcast_to(f, frames.shape) for name, f in floors.items()}
            for name, output in outputs.items():
                scores.setdefault(name, []).append(psnr(output, frames))
            model_change.append(np.abs(generated[agent].astype(int) - still[agent]).mean())
            true_change.append(np.abs(frames.astype(int) - truth_still[agent]).mean())
    out = {name: float(np.mean(v)) for name, v in scores.items()}
    best = max(FLOORS, key=out.__getitem__)
    out["best_floor"] = out[best]
    lead = np.subtract(scores["model"], scores[best])  # paired, per (seed, agent)
    out["lead_se"] = float(lead.std(ddof=1) / np.sqrt(len(lead)))
    out["response"] = float(np.sum(model_change) / np.sum(true_change))
    out["true_change"] = float(np.mean(true_change))
    return out


def _summary(m: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in m.items())


@pytest.mark.slow
def test_shipped_model_beats_an_untrained_model(measured) -> None:
    print(_summary(measured))  # the figures behind the margins (pytest -s)
    assert measured["model"] > measured["untrained"] + UNTRAINED_MARGIN_DB, _summary(measured)
    assert measured["true_change"] > 5.0  # the truth does change with the action


@pytest.mark.slow
def test_shipped_model_beats_the_best_floor(measured) -> None:
    lead = measured["model"] - measured["best_floor"]
    assert lead > max(FLOOR_MARGIN_DB, 2 * measured["lead_se"]), _summary(measured)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="the shipped model ignores the action: measured on seeds 0 and 1, its chunk changes "
    "by 0.3 grey levels on average from 'drive 8 m' to 'stand still', where the true chunk "
    "changes by 14.3 (response 0.02, RESPONSE_MIN 0.3)",
)
def test_shipped_model_follows_the_action(measured) -> None:
    assert measured["response"] > RESPONSE_MIN, _summary(measured)
