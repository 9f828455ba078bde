"""The long-horizon protocol (``evaluation.long_horizon``) on the tiny random model, and its
outputs (``evaluation.long_horizon_report``, ``scripts/evaluate_long_horizon.py``)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import shareverse_env
from shareverse_env.core.tiling import untile_views
from shareverse_env.evaluation.floors import blur_views
from shareverse_env.evaluation.long_horizon import (
    METHODS,
    METRICS,
    LongHorizonConfig,
    LongHorizonResult,
    WorldMismatchError,
    best_floor,
    episode_specs,
    floor_frames,
    make_env_pair,
    run_long_horizon,
    score_chunk,
)
from shareverse_env.evaluation.long_horizon_report import write_outputs
from shareverse_env.evaluation.metrics import PSNR_CAP_DB, psnr
from shareverse_env.policies import make_policy

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "evaluate_long_horizon.py"
CHUNKS = 2
TINY = {"backend": "shareverse", "model": "tiny"}


def expert(env):
    return make_policy("expert", env)


def fake_lpips(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """A stand-in for LPIPS: the mean absolute difference / 255 of each frame."""
    diff = np.abs(generated.astype(np.float64) - truth.astype(np.float64))
    return diff.mean(axis=(-3, -2, -1)) / 255.0


def record_steps(env, log: list) -> None:
    """Keep every reset's and step's observations and infos of ``env`` in ``log``."""
    reset, step = env.reset, env.step

    def recording_reset(*args, **kwargs):
        out = reset(*args, **kwargs)
        log.append(("reset", out[0], out[1]))
        return out

    def recording_step(actions):
        out = step(actions)
        log.append(("step", out[0], out[4]))
        return out

    env.reset, env.step = recording_reset, recording_step


@pytest.fixture(scope="module")
def tiny_run():
    """One episode of 2 chunks on the tiny model, every reset and step of both envs recorded."""
    config = LongHorizonConfig(episodes=1, chunks=CHUNKS, town_seed=2, model_env=TINY)
    model_env, world_env = make_env_pair(config, shareverse_env.parallel_env)
    logs: dict[str, list] = {"model": [], "world": []}
    record_steps(model_env, logs["model"])
    record_steps(world_env, logs["world"])
    result = run_long_horizon(
        config,
        shareverse_env.parallel_env,
        expert,
        progress=False,
        lpips_fn=fake_lpips,
        envs=(model_env, world_env),
    )
    return result, logs


def test_floors_are_what_they_claim() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    last = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert np.array_equal(floor_frames("repeat", first, last, 5), np.repeat(first[None], 28, 0))
    assert np.array_equal(floor_frames("previous_truth", first, last, 5)[17], last)
    assert np.array_equal(floor_frames("blurred_repeat", first, last, 1)[0], blur_views(first, 6))
    assert np.array_equal(floor_frames("blurred_repeat", first, last, 2)[0], blur_views(first, 16))
    with pytest.raises(ValueError, match="unknown floor"):
        floor_frames("model", first, last, 1)
    # Against a truth that is the first frame itself (a "chunk 0"), the repeat floor is perfect.
    truth = np.repeat(first[None], 28, 0)
    scores = score_chunk({"repeat": floor_frames("repeat", first, last, 1)}, truth, fake_lpips)
    assert scores["repeat"]["psnr"] == PSNR_CAP_DB  # inf, capped
    assert scores["repeat"]["colour_drift"] == 0.0 and scores["repeat"]["lpips"] == 0.0
    assert scores["repeat"]["ssim"] == pytest.approx(1.0) and scores["repeat"]["detail"] == 1.0
    assert np.isinf(psnr(truth, floor_frames("repeat", first, last, 1))).all()


def test_episodes_cycle_scenarios_and_weathers_in_held_out_towns() -> None:
    specs = episode_specs(6)
    assert len({s.scenario for s in specs}) == 6 and len({s.weather for s in specs}) == 5
    assert all(s.town_seed >= 10_000_000 for s in specs)
    assert [s.seed for s in episode_specs(3, seed=7)] == [7, 8, 9]


def test_both_envs_drive_the_same_world(tiny_run) -> None:
    result, logs = tiny_run
    assert len(logs["model"]) == len(logs["world"]) == 1 + CHUNKS
    for (kind, _, model_infos), (_, _, world_infos) in zip(
        logs["model"], logs["world"], strict=True
    ):
        assert set(model_infos) == set(world_infos) == {"agent_0", "agent_1"}
        for agent in model_infos:
            assert np.array_equal(model_infos[agent]["poses"], world_infos[agent]["poses"])
            if kind == "step":  # the cars drive (the expert at town speed)
                assert model_infos[agent]["frames"].shape == (28, 64, 96, 3)
    start = logs["model"][0][2]["agent_0"]["poses"][0]
    end = logs["model"][-1][2]["agent_0"]["poses"][-1]
    assert np.hypot(*(end[:2] - start[:2])) > 20.0
    assert result.live.all() and result.n().tolist() == [2] * CHUNKS


def test_a_world_that_drifts_apart_is_an_error() -> None:
    fast = {"backend": "world", "view_hw": (16, 16)}
    config = LongHorizonConfig(episodes=1, chunks=2, town_seed=2, lpips=False, model_env=fast)
    model_env, world_env = make_env_pair(config, shareverse_env.parallel_env)
    step = world_env.step
    world_env.step = lambda actions: step({a: np.asarray(x) * 0.5 for a, x in actions.items()})
    with pytest.raises(WorldMismatchError, match="chunk 1: poses of agent_0 differ"):
        run_long_horizon(config, None, expert, progress=False, envs=(model_env, world_env))
    other_town = shareverse_env.parallel_env(**fast, town_blocks=(5, 5), **config.env_keywords())
    with pytest.raises(WorldMismatchError, match="reset"):
        run_long_horizon(config, None, expert, progress=False, envs=(model_env, other_town))


def test_scores_match_a_hand_computation(tiny_run) -> None:
    result, logs = tiny_run
    first_truth = logs["world"][0][1]  # reset observations
    chunk_truth = [infos for kind, _, infos in logs["world"] if kind == "step"]
    chunk_model = [infos for kind, _, infos in logs["model"] if kind == "step"]
    # PSNR of the model's chunk 1, agent_0: per frame (capped), then over the 28 frames.
    gen, truth = chunk_model[0]["agent_0"]["frames"], chunk_truth[0]["agent_0"]["frames"]
    per_frame = [
        min(10 * np.log10(255.0**2 / np.mean((g.astype(float) - t) ** 2)), 60.0)
        for g, t in zip(gen, truth, strict=True)
    ]
    assert result.values["model"]["psnr"][0, 0, 0] == pytest.approx(np.mean(per_frame))
    # Colour drift of chunk 2, agent_1, with explicit view loops.
    gen, truth = chunk_model[1]["agent_1"]["frames"], chunk_truth[1]["agent_1"]["frames"]
    drift = []
    for g, t in zip(gen, truth, strict=True):
        views_g, views_t = untile_views(g), untile_views(t)
        diffs = [
            abs(views_g[v][..., c].astype(float).mean() - views_t[v][..., c].astype(float).mean())
            for v in range(4)
            for c in range(3)
        ]
        drift.append(np.mean(diffs))
    assert result.values["model"]["colour_drift"][0, 1, 1] == pytest.approx(np.mean(drift))
    # The floors: the first true frame; the previous chunk's last true frame.
    truth = chunk_truth[1]["agent_0"]["frames"]
    repeat = np.repeat(first_truth["agent_0"][None], 28, 0)
    assert result.values["repeat"]["psnr"][0, 0, 1] == pytest.approx(
        psnr(repeat, truth, max_db=60.0).mean()
    )
    previous = np.repeat(chunk_truth[0]["agent_0"]["frames"][-1][None], 28, 0)
    assert not np.array_equal(previous, repeat)
    assert result.values["previous_truth"]["psnr"][0, 0, 1] == pytest.approx(
        psnr(previous, truth, max_db=60.0).mean()
    )
    for k, sigma in ((0, 6.0), (1, 16.0)):  # the blurred floor: σ 6 px in chunk 1, 16 after
        blurred = np.repeat(blur_views(first_truth["agent_1"], sigma)[None], 28, 0)
        truth = chunk_truth[k]["agent_1"]["frames"]
        assert result.values["blurred_repeat"]["psnr"][0, 1, k] == pytest.approx(
            psnr(blurred, truth, max_db=60.0).mean()
        )
    # In chunk 1 the previous true frame is the first one: the oracle equals the repeat floor.
    for metric in METRICS:
        assert result.values["previous_truth"][metric][0, :, 0] == pytest.approx(
            result.values["repeat"][metric][0, :, 0]
        )
    # LPIPS (a stand-in here) on every 4th frame, ending on the last.
    gen, truth = chunk_model[0]["agent_1"]["frames"], chunk_truth[0]["agent_1"]["frames"]
    pick = [3, 7, 11, 15, 19, 23, 27]
    assert result.values["model"]["lpips"][0, 1, 0] == pytest.approx(
        fake_lpips(gen[pick], truth[pick]).mean()
    )
    # The filmstrip holds agent_0's last frames.
    assert np.array_equal(result.filmstrip["generated"][1], chunk_model[1]["agent_0"]["frames"][-1])
    assert np.array_equal(result.filmstrip["truth"][0], chunk_truth[0]["agent_0"]["frames"][-1])
    assert result.filmstrip["chunks"].tolist() == [1, 2]


def test_cars_at_their_goal_drop_out_and_only_live_chunks_count() -> None:
    # The renderer as the model; goals 60 m away: reached in the third chunk at town speed.
    fast = {"backend": "world", "view_hw": (16, 16)}
    config = LongHorizonConfig(
        episodes=1, chunks=4, town_seed=2, lpips=False, model_env=fast, goal_distance=(60.0, 60.0)
    )
    result = run_long_horizon(config, shareverse_env.parallel_env, expert, progress=False)
    n = result.n()
    assert n[0] == 2 and n[-1] < 2 and (np.diff(n) <= 0).all()
    v = result.values["model"]["psnr"]
    assert np.array_equal(np.isfinite(v), result.live)
    assert np.all(v[result.live] == 60.0)  # the renderer is its own truth
    assert result.mean("model", "colour_drift")[n > 0].max() == 0.0
    assert np.isnan(result.mean("model", "psnr")[n == 0]).all()


def test_outputs_are_written_and_read_back(tiny_run, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    result, _ = tiny_run
    written = write_outputs(result, tmp_path, command="python scripts/evaluate_long_horizon.py")
    names = {"results.csv", "summary.md", "curves.png", "filmstrip.png", "values.npz", "run.json"}
    assert names == {p.name for p in written} == {p.name for p in tmp_path.iterdir()}
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == len(METHODS) * len(METRICS) * CHUNKS
    row = next(r for r in rows if (r["chunk"], r["method"], r["metric"]) == ("2", "model", "ssim"))
    assert float(row["mean"]) == pytest.approx(result.mean("model", "ssim")[1], rel=1e-5)
    assert row["n"] == "2"
    summary = (tmp_path / "summary.md").read_text()
    assert "python scripts/evaluate_long_horizon.py" in summary
    assert "| PSNR (dB) ↑ | `blurred_repeat` |" in summary and "| LPIPS ↓ | model |" in summary
    loaded = LongHorizonResult.load(tmp_path)
    assert loaded.config == result.config and loaded.specs == result.specs
    for method in METHODS:
        np.testing.assert_array_equal(loaded.values[method]["psnr"], result.values[method]["psnr"])
    assert loaded.median_step_seconds() == result.median_step_seconds()
    floor, names = best_floor(loaded, "psnr")
    assert floor[0] == max(
        loaded.mean("repeat", "psnr")[0], loaded.mean("blurred_repeat", "psnr")[0]
    )
    for png in ("curves.png", "filmstrip.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_the_script_runs_end_to_end(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("evaluate_long_horizon_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "run"
    args = ["--weights", "tiny", "--episodes", "1", "--chunks", "1", "--town-seed", "2"]
    args += ["--backend-options", '{"scene_cache": false}', "--no-lpips", "--no-progress"]
    assert script.main([*args, "--out", str(out)]) == 0
    assert "| PSNR (dB) ↑ | model |" in capsys.readouterr().out
    assert '"scene_cache": false' in (out / "run.json").read_text()
    (out / "summary.md").unlink()
    assert script.main(["--out", str(out), "--report-only"]) == 0
    assert "--backend-options" in (out / "summary.md").read_text()
