"""The shared CNN actor-critic: bounds, checkpoints (round trip, refusals), the Policy wrapper,
and the PPO example end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from shareverse_env.wrappers import wrap_for_policy

from shareverse_env.policies import Policy, run_episode
from shareverse_env.policies.actor_critic import (
    ActorCritic,
    ActorCriticConfig,
    LearnedPolicy,
    load_network,
    load_policy,
    save_policy,
    select_observations,
    sidecar_path,
    stack_observations,
)

ROOT = Path(__file__).resolve().parents[2]
# 32×48 views: tiled 64×96 frames, the smallest sizes that keep the renderer cheap while the
# frames stay above the network's 36×36 minimum.
VIEW = (32, 48)


@pytest.fixture
def env(make_env):
    return make_env(view_hw=VIEW)


@pytest.fixture
def net(env):
    torch.manual_seed(0)
    return ActorCritic.for_env(env)


def random_obs(space: gymnasium.spaces.Box, batch: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (batch, *space.shape), dtype=np.uint8))


@torch.no_grad()
def test_actions_stay_within_bounds_even_with_wide_noise(env):
    space = env.action_space("agent_0")
    # A huge std makes most samples fall outside [-1, 1]: they must be clipped, not passed on.
    net = ActorCritic.for_env(env, init_log_std=2.0)
    obs = random_obs(env.observation_space("agent_0"), 64)
    for deterministic in (True, False):
        u, log_prob, _, value = net.act(obs, deterministic=deterministic)
        actions = net.to_env_action(u).numpy()
        assert actions.shape == (64, 3)
        assert np.all(actions >= space.low) and np.all(actions <= space.high)
        assert torch.isfinite(log_prob).all() and torch.isfinite(value).all()
    assert (np.isclose(actions, space.low) | np.isclose(actions, space.high)).any()


@torch.no_grad()
def test_untrained_mean_is_the_centre_of_the_bounds(env, net):
    space = env.action_space("agent_0")
    u, *_ = net.act(random_obs(env.observation_space("agent_0"), 4), deterministic=True)
    centre = (space.low + space.high) / 2
    np.testing.assert_allclose(net.to_env_action(u).numpy(), np.tile(centre, (4, 1)), atol=1.0)


def test_evaluate_matches_act(env, net):
    obs = random_obs(env.observation_space("agent_0"), 8)
    gen = torch.Generator().manual_seed(1)
    u, log_prob, entropy, value = net.act(obs, generator=gen)
    log_prob2, entropy2, value2 = net.evaluate(obs, u)
    torch.testing.assert_close(entropy, entropy2)
    torch.testing.assert_close(log_prob, log_prob2)
    torch.testing.assert_close(value, value2)


@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 1), (4, 48, 64, 3)])
def test_other_image_shapes(shape):
    net = ActorCritic(ActorCriticConfig(shape, (-1.0, -2.0), (1.0, 2.0)))
    obs = torch.zeros((3, *shape), dtype=torch.uint8)
    u, log_prob, _, value = net.act(obs)
    assert u.shape == (3, 2) and log_prob.shape == (3,) and value.shape == (3,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"obs_shape": (16, 16, 3)}, "at least 36×36"),
        ({"obs_shape": (0, 64, 3)}, "positive sizes"),
        ({"action_low": (1.0,), "action_high": (0.0,)}, "high > low"),
        ({"action_low": (0.0, 0.0), "action_high": (1.0,)}, "equal-length"),
    ],
)
def test_bad_configs_are_refused(kwargs, match):
    base = {"obs_shape": (64, 96, 3), "action_low": (-1.0,), "action_high": (1.0,)}
    with pytest.raises(ValueError, match=match):
        ActorCriticConfig(**{**base, **kwargs})


def test_spaces_that_are_not_images_or_boxes_are_refused():
    image = gymnasium.spaces.Box(0, 255, (64, 96, 3), np.uint8)
    box = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
    with pytest.raises(ValueError, match="uint8 image"):
        ActorCriticConfig.for_spaces(gymnasium.spaces.Box(0.0, 1.0, (64, 96, 3)), box)
    with pytest.raises(ValueError, match="1-D Box action"):
        ActorCriticConfig.for_spaces(image, gymnasium.spaces.Discrete(5))


def test_save_load_round_trip_gives_identical_actions(env, net, tmp_path):
    path = tmp_path / "ckpt" / "policy.safetensors"
    save_policy(path, net, {"note": "round trip", "steps": 3})
    assert sorted(p.name for p in path.parent.iterdir()) == ["policy.json", "policy.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert all((p.stat().st_mode & 0o777) == 0o666 & ~umask for p in path.parent.iterdir())
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["meta"] == {"note": "round trip", "steps": 3}
    assert sidecar["observation"]["shape"] == list(env.observation_space("agent_0").shape)

    loaded = load_network(path)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)

    obs, _ = env.reset(seed=0)
    original = LearnedPolicy(net, env)(obs)
    for given in (path, sidecar_path(path)):  # either file names the checkpoint
        again = load_policy(given, env)(obs)
        for agent in original:
            np.testing.assert_array_equal(original[agent], again[agent])
    # Sampled actions replay too, from the same seed.
    sampled = LearnedPolicy(net, env, deterministic=False, seed=5)(obs)
    resampled = load_policy(path, env, deterministic=False, seed=5)(obs)
    for agent in sampled:
        np.testing.assert_array_equal(sampled[agent], resampled[agent])


def test_checkpoint_for_other_spaces_is_refused_naming_both(make_env, net, tmp_path):
    path = tmp_path / "policy.safetensors"
    save_policy(path, net)
    other = make_env(view_hw=(48, 48))
    with pytest.raises(ValueError) as err:
        load_policy(path, other)
    message = str(err.value)
    assert "(64, 96, 3)" in message and "(96, 96, 3)" in message


def test_checkpoint_for_other_action_bounds_is_refused(env, tmp_path):
    config = ActorCriticConfig(env.observation_space("agent_0").shape, (-1.0,) * 3, (1.0,) * 3)
    path = tmp_path / "policy.safetensors"
    save_policy(path, ActorCritic(config))
    with pytest.raises(ValueError, match=r"low=\[-1, -1, -1\].*low=\[-5, -3, -1.571\]"):
        load_policy(path, env)


def test_corrupt_or_incomplete_checkpoints_are_refused(env, net, tmp_path):
    path = tmp_path / "policy.safetensors"
    with pytest.raises(FileNotFoundError, match="no file"):
        load_policy(path, env)
    save_policy(path, net)
    with pytest.raises(ValueError, match=r"end in \.safetensors"):
        load_policy(tmp_path / "policy.pt", env)

    sidecar = sidecar_path(path)
    good = sidecar.read_text()
    sidecar.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt JSON"):
        load_policy(path, env)
    sidecar.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a 'shareverse-actor-critic'"):
        load_policy(path, env)
    sidecar.write_text(good)

    save_file({"unexpected": torch.zeros(2)}, str(path))  # weights that do not fit the sidecar
    with pytest.raises(ValueError, match="does not match"):
        load_policy(path, env)
    path.write_bytes(b"\x80\x04 pickled bytes are never unpickled")
    with pytest.raises(ValueError, match="corrupt safetensors"):
        load_policy(path, env)


def test_save_refuses_other_suffixes_and_non_json_meta(net, tmp_path):
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_policy(tmp_path / "policy.bin", net)
    with pytest.raises(TypeError):
        save_policy(tmp_path / "policy.safetensors", net, {"bad": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_learned_policy_is_a_policy_and_drives_only_live_agents(env, net):
    policy = LearnedPolicy(net, env)
    assert isinstance(policy, Policy)
    outcomes = run_episode(env, policy, seed=3)  # raises if it acted for done agents
    assert sorted(outcomes) == env.possible_agents
    assert policy({}) == {}  # after the episode no agent is live


@pytest.mark.slow
def test_train_ppo_quick_runs_end_to_end(tmp_path):
    out = tmp_path / "ppo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_ppo.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("policy.safetensors", "policy.json", "learning_curve.png", "results.md"):
        assert (out / name).is_file(), name
    table = (out / "results.md").read_text()
    for policy in ("ppo", "random", "still", "expert"):
        assert f"| {policy} | world |" in table
        assert f"| {policy} | generative" in table
    assert "| untrained | world |" in table  # the network before training, for reference
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "policy.json").read_text())["meta"]
    assert meta["env_steps"] == 24 and "ppo/world" in meta["results"]


# ------------------------------------------------------------------ Dict observations


@pytest.fixture
def dict_env(make_env):
    from shareverse_env.wrappers import DictObservation

    return DictObservation(make_env(view_hw=VIEW), route_points=4)


DICT_WRAPPERS = [{"name": "DictObservation", "route_points": 4}]


def test_dict_observations_use_the_image_and_the_ego_vectors(dict_env):
    torch.manual_seed(0)
    net = ActorCritic.for_env(dict_env)
    assert net.config.image_key == "image"
    # The world-frame pose is left out: it differs between towns and does not generalise.
    assert net.config.vectors == (("goal", 2), ("route", 8), ("speed", 1))
    obs, _ = dict_env.reset(seed=0)
    batch = stack_observations([obs[a] for a in dict_env.agents])
    u, log_prob, _, value = net.act(batch, deterministic=True)
    assert u.shape == (2, 3) and value.shape == (2,)
    # The vectors reach the heads: moving the goal changes the value.
    moved = dict(batch, goal=batch["goal"] + 50.0)
    assert not torch.allclose(net.value(moved), net.value(batch))
    log_prob2, _, value2 = net.evaluate(select_observations(batch, [1]), u[1:])
    assert torch.allclose(log_prob2, log_prob[1:]) and torch.allclose(value2, value[1:])


def test_dict_checkpoint_round_trip_and_wrap_for_policy(dict_env, make_env, tmp_path):
    torch.manual_seed(1)
    net = ActorCritic.for_env(dict_env)
    path = tmp_path / "dict.safetensors"
    save_policy(path, net, {"note": "dict"}, DICT_WRAPPERS)
    bare = make_env(view_hw=VIEW)
    with pytest.raises(ValueError, match="wrap_for_policy"):
        load_policy(path, bare)  # made for a Dict observation, given the bare image
    wrapped = wrap_for_policy(bare, path)
    assert sorted(wrapped.observation_space("agent_0")) == [
        "goal",
        "image",
        "pose",
        "route",
        "speed",
    ]
    policy = load_policy(path, wrapped)
    obs, _ = dict_env.reset(seed=2)
    expected = LearnedPolicy(net, dict_env)(obs)
    got = policy(obs)
    for agent in expected:
        np.testing.assert_array_equal(got[agent], expected[agent])
    assert wrap_for_policy(bare, world_checkpoint(bare, tmp_path)) is bare


def world_checkpoint(env, tmp_path):
    path = tmp_path / "image.safetensors"
    save_policy(path, ActorCritic.for_env(env))
    return path


def test_dict_checkpoint_with_other_route_points_is_refused(dict_env, make_env, tmp_path):
    from shareverse_env.wrappers import DictObservation

    path = tmp_path / "dict.safetensors"
    save_policy(path, ActorCritic.for_env(dict_env), None, DICT_WRAPPERS)
    other = DictObservation(make_env(view_hw=VIEW), route_points=6)
    with pytest.raises(ValueError, match="'route': 8 floats"):
        load_policy(path, other)


def test_bad_wrapper_records_are_refused(dict_env, tmp_path):
    path = tmp_path / "p.safetensors"
    with pytest.raises(ValueError, match="observation wrapper"):
        save_policy(path, ActorCritic.for_env(dict_env), None, [{"name": "os.system"}])
    save_policy(path, ActorCritic.for_env(dict_env), None, DICT_WRAPPERS)
    data = json.loads(path.with_suffix(".json").read_text())
    data["observation_wrappers"] = [{"name": "DictObservation", "route_points": -1}]
    path.with_suffix(".json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="cannot rebuild wrapper"):
        wrap_for_policy(dict_env.unwrapped, path)


def test_make_policy_loads_a_checkpoint_path(env, net, tmp_path):
    from shareverse_env.policies import make_policy

    path = tmp_path / "p.safetensors"
    save_policy(path, net)
    policy = make_policy(str(path), env)
    assert isinstance(policy, LearnedPolicy)
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        make_policy("greedy", env)
