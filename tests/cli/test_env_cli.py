"""``shareverse-env``: rollouts to MP4, info, checkpoints as policies, and usage errors."""

from __future__ import annotations

import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest

import shareverse_env
from shareverse_env.cli.env import main
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK
from shareverse_env.policies.actor_critic import ActorCritic, ActorCriticConfig, save_policy


def count_frames(path) -> tuple[int, tuple[int, ...]]:
    with imageio.get_reader(path, format="FFMPEG") as reader:
        frames = [np.asarray(f) for f in reader]
    return len(frames), frames[0].shape


def test_rollout_world_writes_a_playable_mp4_with_every_frame(tmp_path, capsys):
    out = tmp_path / "videos" / "episode.mp4"
    args = ["rollout", "--backend", "world", "--agents", "1", "--chunks", "2"]
    code = main([*args, "--policy", "still", "--scenario", "following", "--out", str(out)])
    assert code == 0
    frames, shape = count_frames(out)
    assert frames == 1 + 2 * NEW_FRAMES_PER_CHUNK  # the start frame, then 28 per chunk
    assert shape[0] == 128  # one car's 2×2 tiles (128×192) plus the 128×128 minimap
    line = capsys.readouterr().out.strip()
    assert line.startswith("episode 1/1 (seed 0, following, ")
    assert "agent_0 return -0.10 goal no collision -" in line
    assert f"{frames} frames in " in line and str(out) in line
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_rollout_several_episodes_numbers_the_files(tmp_path, capsys):
    out = tmp_path / "ep.mp4"
    args = ["rollout", "--backend", "world", "--agents", "2", "--chunks", "1"]
    code = main([*args, "--episodes", "2", "--seed", "7", "--policy", "expert", "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep-0.mp4", "ep-1.mp4"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["episode 1/2", "episode 2/2"]
    assert "seed 7," in lines[0] and "seed 8," in lines[1]
    assert all("agent_0 return" in line and "agent_1 return" in line for line in lines)


def test_info_prints_spaces_config_and_weights(capsys):
    assert main(["info", "--backend", "world", "--agents", "3"]) == 0
    out = capsys.readouterr().out
    assert "observation space (each agent): Box(0, 255, (128, 192, 3), uint8)" in out
    assert "action space (each agent): Box(" in out and "forward in [-5, 28]" in out
    assert "state space: Box(-inf, inf, (3, 8), float32)" in out
    assert "agents: agent_0, agent_1, agent_2" in out
    assert "weights: none" in out
    assert "  num_agents: 3" in out and "  scenario: None  (drawn per reset)" in out


def test_info_of_the_generative_backend_names_the_model(capsys):
    assert main(["info", "--backend", "shareverse", "--model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "backend: shareverse" in out
    assert "model: config 'tiny' with random weights" in out and "M parameters" in out
    assert "Box(0, 255, (64, 96, 3), uint8)" in out  # tiny generates 32×48 views


def test_info_lists_the_shipped_weight_files(capsys):
    if shareverse_env.backends.shipped_weights_folder() is None:
        pytest.skip("this install ships no trained weights")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backend: shareverse (auto: shareverse)" in out
    assert "model: shipped weights at " in out
    assert "transformer/diffusion_pytorch_model.safetensors" in out and " MB" in out


def test_rollout_with_the_tiny_generative_model(tmp_path, capsys):
    out = tmp_path / "gen.mp4"
    args = ["rollout", "--backend", "shareverse", "--model", "tiny", "--agents", "1"]
    assert main([*args, "--chunks", "1", "--policy", "random", "--out", str(out)]) == 0
    frames, shape = count_frames(out)
    assert frames == 1 + NEW_FRAMES_PER_CHUNK and shape[0] == 64
    assert "29 frames in" in capsys.readouterr().out


def world_checkpoint(tmp_path):
    env = shareverse_env.parallel_env(backend="world")
    path = tmp_path / "policy.safetensors"
    save_policy(path, ActorCritic.for_env(env), {"note": "untrained"})
    return path


def test_rollout_with_a_checkpoint_as_the_policy(tmp_path, capsys):
    path = world_checkpoint(tmp_path)
    args = ["rollout", "--backend", "world", "--chunks", "1", "--policy", str(path)]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert "agent_0 return" in line and "agent_1 return" in line
    assert main(["info", "--backend", "world", "--policy", str(path)]) == 0
    assert "fits this env's spaces: yes" in capsys.readouterr().out


def usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["rollout", "--agents", "0"], "argument --agents: must be ≥ 1; got 0"),
        (["rollout", "--chunks", "-1"], "argument --chunks: must be ≥ 1; got -1"),
        (["rollout", "--episodes", "two"], "argument --episodes: expected an integer ≥ 1"),
        (["rollout", "--seed", "-3"], "argument --seed: must be ≥ 0; got -3"),
        (["rollout", "--scenario", "roundabout"], "argument --scenario: invalid choice"),
        (["info", "--weather", "rain"], "argument --weather: invalid choice"),
        (["rollout", "--backend", "carla"], "argument --backend: invalid choice"),
        (["rollout", "--out", "episode.avi"], "must be a file name ending in .mp4"),
        (["rollout", "--policy", "greedy"], "--policy must be one of random, expert, still"),
        (["rollout", "--policy", "missing.safetensors"], "no checkpoint file missing"),
        (["rollout", "--backend", "world", "--model", "tiny"], "--model is only used by"),
        (["rollout", "--backend", "shareverse", "--model", "huge"], "cannot build the env"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
    assert message in usage_error(argv, capsys)


def test_checkpoint_for_other_spaces_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "small.safetensors"
    config = ActorCriticConfig((64, 96, 3), (-5.0, -3.0, -np.pi / 2), (28.0, 3.0, np.pi / 2))
    save_policy(path, ActorCritic(config))
    err = usage_error(["rollout", "--backend", "world", "--policy", str(path)], capsys)
    assert "--policy: policy checkpoint" in err
    assert "(64, 96, 3)" in err and "(128, 192, 3)" in err


def test_console_script_help_has_examples():
    result = subprocess.run(
        [sys.executable, "-m", "shareverse_env.cli.env", "rollout", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--policy random|expert|still|PATH" in result.stdout


def test_rollout_rebuilds_the_observation_wrappers_of_a_checkpoint(tmp_path, capsys):
    from shareverse_env.wrappers import DictObservation

    env = DictObservation(shareverse_env.parallel_env(backend="world"), route_points=4)
    path = tmp_path / "dict_policy.safetensors"
    wrappers = [{"name": "DictObservation", "route_points": 4}]
    save_policy(path, ActorCritic.for_env(env), {"note": "untrained"}, wrappers)
    args = ["rollout", "--backend", "world", "--chunks", "1", "--policy", str(path)]
    assert main(args) == 0
    assert "agent_0 return" in capsys.readouterr().out
    assert main(["info", "--backend", "world", "--policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert "observation wrapper: {'name': 'DictObservation'" in out
    assert "fits this env's spaces: yes" in out


def test_goal_distance_flag(tmp_path, capsys):
    args = ["rollout", "--backend", "world", "--chunks", "1", "--policy", "still"]
    assert main([*args, "--goal-distance", "60", "90", "--seed", "3"]) == 0
    assert "agent_0 return" in capsys.readouterr().out
    err = usage_error([*args, "--goal-distance", "20", "90"], capsys)
    assert "cannot build the env" in err and "goal_distance" in err
