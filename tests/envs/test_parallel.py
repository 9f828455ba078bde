"""The ParallelEnv on the ground-truth backend: PettingZoo conformance, determinism, bad input."""

import copy
import sys

import numpy as np
import pettingzoo
import pytest
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, render_test
from pettingzoo.utils.conversions import parallel_to_aec

import shareverse_env
from shareverse_env.backends import WorldBackend
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK
from shareverse_env.envs.vector import ShareVerseVectorEnv
from shareverse_env.world.scenarios import END_SHIFT, SCENARIOS, TRAVEL_RANGE

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)


def make(**kwargs):
    kwargs.setdefault("max_cycles", 3)
    kwargs.setdefault("backend", "world")  # the default would be the (slow) generative model
    return shareverse_env.parallel_env(**kwargs)


def drive_actions(env, action=DRIVE):
    return {a: action.copy() for a in env.agents}


def test_parallel_api():
    env = make(terminate_on_collision=True)
    parallel_api_test(env, num_cycles=4)


def test_aec_api_checks_observations_in_space():
    # parallel_api_test never checks observation_space membership; the AEC api_test does.
    api_test(parallel_to_aec(make()), num_cycles=6)


def test_render():
    def env_fn(render_mode=None):
        # render_test opens the env with render_mode="human" only to read its metadata; this
        # env has no window, so "human" is refused by design and mapped to None here.
        return shareverse_env.env(
            render_mode=None if render_mode == "human" else render_mode,
            max_cycles=3,
            backend="world",
        )

    render_test(env_fn)


def test_max_cycles():
    # With termination on collision, random actions end episodes before max_cycles; this module
    # shim keeps the cars going so the test measures truncation, not crashes.
    class Module:
        @staticmethod
        def parallel_env(**kw):
            return shareverse_env.parallel_env(backend="world", terminate_on_collision=False, **kw)

        @staticmethod
        def env(**kw):
            return shareverse_env.env(backend="world", terminate_on_collision=False, **kw)

    max_cycles_test(Module)


def test_registry():
    par = pettingzoo.make("parallel", shareverse_env.ENV_ID, backend="world", num_agents=1)
    assert isinstance(par, shareverse_env.ShareVerseParallelEnv)
    aec = pettingzoo.make("aec", shareverse_env.ENV_ID, backend="world", num_agents=1)
    aec.reset(seed=0)
    assert aec.agents == ["agent_0"]


def test_spaces_cached_and_shapes():
    env = make()
    assert env.observation_space("agent_0") is env.observation_space("agent_0")
    assert env.action_space("agent_1") is env.action_space("agent_1")
    assert env.observation_space("agent_0").shape == (128, 192, 3)
    obs, _infos = env.reset(seed=1)
    for agent, o in obs.items():
        assert env.observation_space(agent).contains(o)


def test_step_infos_and_observation_is_last_frame():
    env = make()
    env.reset(seed=2)
    obs, rewards, _terms, _truncs, infos = env.step(drive_actions(env))
    for agent in obs:
        info = infos[agent]
        assert info["frames"].shape == (NEW_FRAMES_PER_CHUNK, 128, 192, 3)
        assert info["frames"].dtype == np.uint8
        assert info["poses"].shape == (NEW_FRAMES_PER_CHUNK, 3)
        np.testing.assert_array_equal(obs[agent], info["frames"][-1])
        assert env.observation_space(agent).contains(obs[agent])
        assert isinstance(rewards[agent], float)
        assert set(info["reward_terms"]) and info["scenario"]["name"]
        # Frames differ over the chunk: the car moved.
        assert np.abs(info["frames"][0].astype(int) - info["frames"][-1]).mean() > 1.0


def run_episode(seed, steps=3, **kwargs):
    env = make(max_cycles=steps, terminate_on_collision=False, **kwargs)
    obs, infos = env.reset(seed=seed)
    trace = [(copy.deepcopy(obs), copy.deepcopy(infos))]
    rng = np.random.default_rng(123)
    for _ in range(steps):
        actions = {
            a: np.array([rng.uniform(3, 12), rng.uniform(-0.3, 0.3), rng.uniform(-0.1, 0.1)])
            for a in env.agents
        }
        out = env.step(actions)
        trace.append(copy.deepcopy(out))
    return trace, env.state()


def assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_multi_step_determinism():
    (trace_a, state_a), (trace_b, state_b) = run_episode(7), run_episode(7)
    assert len(trace_a) == 4
    assert_same(trace_a, trace_b)
    np.testing.assert_array_equal(state_a, state_b)
    trace_c, _ = run_episode(8)
    assert not np.array_equal(trace_a[0][0]["agent_0"], trace_c[0][0]["agent_0"])


def test_reset_options():
    env = make(num_agents=2)
    starts = None
    _obs, infos = env.reset(
        seed=0, options={"scenario": "head_on", "weather": "fog", "town_seed": 5}
    )
    assert infos["agent_0"]["scenario"]["name"] == "head_on"
    assert infos["agent_0"]["weather"] == "fog" and infos["agent_0"]["town_seed"] == 5
    starts = env.state()[:, :2].copy()
    moved = np.array([[p[0] + 0.5, p[1], 0.0] for p in starts])
    env.reset(seed=0, options={"scenario": "head_on", "town_seed": 5, "start_poses": moved})
    np.testing.assert_allclose(env.state()[:, :2], moved[:, :2], atol=1e-5)
    with pytest.raises(ValueError, match="start_poses"):
        env.reset(options={"start_poses": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="scenario"):
        env.reset(options={"scenario": "drag_race"})


def test_too_many_agents_are_refused_up_front_in_one_line():
    from shareverse_env.envs.parallel import MAX_AGENTS

    with pytest.raises(ValueError, match=rf"^num_agents=100 .* at most {MAX_AGENTS} cars") as err:
        make(num_agents=100)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200
    env = make(num_agents=MAX_AGENTS, town_seed=0)
    env.reset(seed=0)
    assert len(env.agents) == MAX_AGENTS


def test_a_town_too_small_for_every_scenario_says_so_in_one_line():
    env = make(num_agents=8, town_blocks=(1, 1))
    with pytest.raises(ValueError, match=r"cannot host any of the 6 scenarios with 8") as err:
        env.reset(seed=0)
    assert "\n" not in str(err.value)


def test_unknown_reset_options_are_refused_with_the_known_ones():
    env = make(num_agents=2)
    env.reset(seed=0)
    before = env.state().copy()
    with pytest.raises(ValueError, match=r"unknown 'wether'.*known options: scenario, weather"):
        env.reset(seed=1, options={"wether": "fog"})
    # images are the generative backend's option: the world backend renders its own frames.
    with pytest.raises(ValueError, match=r"unknown 'images' for backend 'world'"):
        env.reset(seed=1, options={"images": np.zeros((2, 128, 192, 3), np.uint8)})
    np.testing.assert_array_equal(env.state(), before)  # refused resets changed nothing


@pytest.mark.parametrize(
    "where, call",
    [
        ("town_seed", lambda: make(town_seed="abc")),
        ("town_seed", lambda: make(town_seed=-2)),
        (r"reset\(seed=...\)", lambda: make().reset(seed=-1)),
        (r"reset\(seed=...\)", lambda: make().reset(seed=1.5)),
        (r"options\['town_seed'\]", lambda: make().reset(options={"town_seed": "abc"})),
    ],
)
def test_bad_seeds_name_their_field(where, call):
    with pytest.raises(ValueError, match=rf"^{where} must be None or an integer ≥ 0; got"):
        call()


def test_a_refused_reset_leaves_the_seed_stream_alone():
    """A reset refused for a bad option must not reseed or advance the reset draw."""
    env, twin = make(), make()
    env.reset(seed=3)
    twin.reset(seed=3)
    with pytest.raises(ValueError):
        env.reset(seed=7, options={"weather": "hail"})
    env.reset()
    twin.reset()
    np.testing.assert_array_equal(env.state(), twin.state())


def test_state_documented_columns():
    env = make()
    env.reset(seed=4)
    state = env.state()
    assert state.shape == (2, 8) and state.dtype == np.float32
    np.testing.assert_allclose(state[:, 2] ** 2 + state[:, 3] ** 2, 1.0, atol=1e-5)
    assert np.all(state[:, 7] == 1.0)
    assert env.state_space.contains(state)


def test_render_layout():
    env = make(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (128, 2 * 192 + 128, 3) and frame.dtype == np.uint8
    env.step(drive_actions(env))
    chunk = env.render_chunk()
    assert chunk.shape == (NEW_FRAMES_PER_CHUNK, 128, 2 * 192 + 128, 3)
    np.testing.assert_array_equal(chunk[-1], env.render())
    no_map = make(render_mode="rgb_array", minimap=False)
    no_map.reset(seed=0)
    assert no_map.render().shape == (128, 384, 3)


def test_single_and_three_agents():
    for n in (1, 3):
        env = make(num_agents=n)
        obs, _ = env.reset(seed=0)
        assert sorted(obs) == [f"agent_{k}" for k in range(n)]
        obs, *_ = env.step(drive_actions(env))
        assert len(obs) == n


def test_truncation_at_max_cycles():
    env = make(max_cycles=2, terminate_on_collision=False)
    env.reset(seed=0)
    _, _, _, truncs, _ = env.step(drive_actions(env, np.zeros(3, dtype=np.float32)))
    assert not any(truncs.values())
    _, _, _, truncs, _ = env.step(drive_actions(env, np.zeros(3, dtype=np.float32)))
    assert all(truncs.values()) and env.agents == []


def test_collision_terminates():
    env = make(max_cycles=5)
    env.reset(seed=0)
    # Full lateral slide off the lane and a sharp turn: leaves the road within the chunk.
    hard = np.array([28.0, 3.0, np.pi / 2], dtype=np.float32)
    done = False
    for _ in range(4):
        if not env.agents:
            break
        _, rewards, terms, _, infos = env.step(drive_actions(env, hard))
        for agent, ended in terms.items():
            if ended and infos[agent]["collision"] is not None:
                done = True
                assert rewards[agent] < 0
    assert done


@pytest.mark.parametrize("terminate", [True, False])
def test_car_behind_a_stopped_car_hits_it(terminate):
    # agent_0 leaves the road inside the chunk and stops there; agent_1, 5 m behind with the
    # same action, must hit where agent_0 actually stands, not where its plan would have gone.
    from shareverse_env.world.vehicles import CAR_LENGTH

    env = make(scenario="following", terminate_on_collision=terminate, max_cycles=4)
    starts = np.array([[0.0, 155.25, np.pi], [5.0, 155.25, np.pi]])
    env.reset(seed=0, options={"start_poses": starts})
    _, rewards, terms, _, infos = env.step(drive_actions(env))
    assert infos["agent_0"]["collision"] == "off_road"
    assert infos["agent_1"]["collision"] == "car"
    assert rewards["agent_1"] < 0 and terms["agent_1"] == terminate
    gaps = np.linalg.norm(
        infos["agent_0"]["poses"][:, :2] - infos["agent_1"]["poses"][:, :2], axis=1
    )
    assert gaps.min() >= CAR_LENGTH
    if not terminate:  # cars that keep driving into each other never pass through each other
        for _ in range(3):
            _, _, _, _, infos = env.step(drive_actions(env))
            p0, p1 = infos["agent_0"]["poses"][:, :2], infos["agent_1"]["poses"][:, :2]
            assert np.linalg.norm(p0 - p1, axis=1).min() >= CAR_LENGTH


# ---------------------------------------------------------------------- bad input


def snapshot(env):
    return (env._poses.copy(), list(env.agents), env._cycles, env.state().copy())


def assert_unchanged(env, before):
    after = snapshot(env)
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1] and before[2] == after[2]
    np.testing.assert_array_equal(before[3], after[3])


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.array([np.nan, 0, 0]), ValueError, "agent_1.*non-finite forward"),
        (np.array([5.0, np.inf, 0]), ValueError, "agent_1.*non-finite lateral"),
        (np.array([5.0, 0.0]), ValueError, "agent_1.*shape \\(3,\\)"),
        (np.array(["a", "b", "c"]), TypeError, "agent_1.*dtype"),
        (np.array([50.0, 0.0, 0.0]), ValueError, "agent_1 out of bounds: forward=50"),
        (np.array([5.0, 0.0, 3.0]), ValueError, "agent_1 out of bounds: yaw=3"),
    ],
)
def test_bad_action_values_leave_state_unchanged(bad, error, match):
    env = make()
    env.reset(seed=0)
    before = snapshot(env)
    actions = drive_actions(env)
    actions["agent_1"] = bad
    with pytest.raises(error, match=match):
        env.step(actions)
    assert_unchanged(env, before)
    env.step(drive_actions(env))  # still usable


def test_clip_option():
    env = make(invalid_action="clip")
    env.reset(seed=0)
    actions = drive_actions(env)
    actions["agent_0"] = np.array([100.0, 0.0, 0.0])
    _, _, _, _, infos = env.step(actions)
    start = infos["agent_0"]["poses"][0]
    assert np.linalg.norm(infos["agent_0"]["poses"][-1, :2] - start[:2]) <= 28.5
    with pytest.raises(ValueError, match="non-finite"):
        env.step({a: np.array([np.nan, 0.0, 0.0]) for a in env.agents})


def test_missing_unknown_and_done_agent_keys():
    env = make()
    env.reset(seed=0)
    before = snapshot(env)
    with pytest.raises(KeyError, match=r"missing.*agent_1"):
        env.step({"agent_0": DRIVE})
    with pytest.raises(KeyError, match=r"unknown.*agent_9"):
        env.step({**drive_actions(env), "agent_9": DRIVE})
    with pytest.raises(TypeError, match="dict"):
        env.step([DRIVE, DRIVE])
    assert_unchanged(env, before)


def test_step_before_reset_and_after_done():
    env = make(max_cycles=1, terminate_on_collision=False)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step({"agent_0": DRIVE, "agent_1": DRIVE})
    env.reset(seed=0)
    env.step(drive_actions(env))
    assert env.agents == []
    with pytest.raises(RuntimeError, match="every agent is done"):
        env.step({"agent_0": DRIVE})
    with pytest.raises(KeyError, match="already done"):
        env._validate_actions({"agent_0": DRIVE})


def test_bad_config():
    with pytest.raises(ValueError, match="num_agents"):
        shareverse_env.parallel_env(num_agents=0)
    with pytest.raises(ValueError, match="backend"):
        shareverse_env.parallel_env(backend="unreal")
    with pytest.raises(ValueError, match="render_mode 'human'"):
        shareverse_env.parallel_env(render_mode="human")
    with pytest.raises(ValueError, match="weather"):
        shareverse_env.parallel_env(weather="hail")
    with pytest.raises(ValueError, match="multiples of 16"):
        shareverse_env.parallel_env(backend="world", view_hw=(60, 90))
    with pytest.raises(ValueError, match=r"chunk_frames.*'all', 'last'"):
        make(chunk_frames="every")


# ---------------------------------------------------------------------- goal_distance

SMALL = {
    "view_hw": (16, 16),
    "backend_options": {"max_distance": 40.0},
    "town_seed": 0,
}
"""A fast env: tiny views, short draw distance, one cached town."""


def route_lengths(**kwargs):
    env = make(**SMALL, **kwargs)
    lengths = []
    for name in SCENARIOS:
        for seed in range(3):
            _obs, infos = env.reset(seed=seed, options={"scenario": name})
            assert infos["agent_0"]["scenario"]["name"] == name
            lengths += [infos[a]["scenario"]["route_length"] for a in env.agents]
    return np.array(lengths)


def test_goal_distance_gives_short_routes():
    short = route_lengths(goal_distance=(60, 90))
    # _stop_before_parked_goals may shorten a route, never lengthen it: the upper bound is strict.
    assert short.max() <= 90.0 + 1e-6
    assert short.min() >= 60.0 - END_SHIFT - 1e-6
    default = route_lengths()
    assert short.mean() < 0.6 * default.mean(), (short.mean(), default.mean())
    # The default range is TRAVEL_RANGE: passing it explicitly changes nothing.
    np.testing.assert_array_equal(route_lengths(goal_distance=TRAVEL_RANGE), default)


@pytest.mark.parametrize(
    "bad", [(30, 90), (90, 60), (float("nan"), 90), (60, float("inf")), (60,), "far", 70.0]
)
def test_bad_goal_distance(bad):
    with pytest.raises(ValueError, match="goal_distance"):
        make(goal_distance=bad)


@pytest.mark.parametrize("name", ["following", "head_on"])
@pytest.mark.parametrize("distance", [60.0, 1000.0])
def test_goal_distance_is_met(name, distance):
    # (60, 60) used to fail every reset ("route too short": the end shift took goals under
    # 60 m), and (1000, 1000) gave goals 324–437 m away (routes ended 300 m past the interaction).
    env = make(**SMALL, goal_distance=(distance, distance))
    for seed in range(3):
        _obs, infos = env.reset(seed=seed, options={"scenario": name})
        for agent in env.agents:
            info = infos[agent]["scenario"]
            assert info["name"] == name
            assert info["goal_s"] == pytest.approx(distance, abs=1e-3)
            assert info["route_length"] == pytest.approx(distance, abs=1e-3)


def test_goal_distance_beyond_the_town_says_what_it_allows():
    env = make(**SMALL, goal_distance=(5000, 5000))
    for options in ({"scenario": "following"}, {}):
        with pytest.raises(ValueError) as err:
            env.reset(seed=0, options=options)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith("town 0 cannot host ")
        assert "goal_distance=(5000, 5000) is out of reach" in message
        assert int(message.split("at most ")[1].split(" m")[0]) < 5000


# ---------------------------------------------------------------------- chunk_frames


def chunk_trace(chunk_frames, backend="world", steps=3):
    """Everything an episode gives out, with agent_0 crashing early and agent_1 driving on."""
    env = make(
        max_cycles=steps,
        render_mode="rgb_array",
        chunk_frames=chunk_frames,
        backend=backend,
        **SMALL,
    )
    calls = []
    generate = env.backend.generate

    def spy(poses, active):
        calls.append(np.asarray(poses).shape)
        return generate(poses, active)

    env.backend.generate = spy
    obs, infos = env.reset(seed=5, options={"scenario": "following"})
    trace = [(obs, infos, env.render_chunk(), env.state())]
    rng = np.random.default_rng(0)
    for _ in range(steps):
        actions = {
            a: np.array([rng.uniform(3, 12), rng.uniform(-0.3, 0.3), rng.uniform(-0.1, 0.1)])
            for a in env.agents
        }
        if "agent_0" in actions:
            actions["agent_0"] = np.array([28.0, 3.0, np.pi / 2])  # off the road
        out = copy.deepcopy(env.step(actions))
        trace.append((*out, env.render_chunk(), env.state()))
    return trace, calls


def split_frames(trace):
    """``trace`` without infos' frames and render_chunk (compared separately), and those."""
    rest, frames, chunks = [], [], []
    for entry in trace:
        *outputs, infos, chunk, state = entry
        frames.append({a: info.pop("frames") for a, info in infos.items()})
        chunks.append(chunk)
        rest.append((*outputs, infos, state))
    return rest, frames, chunks


@pytest.mark.parametrize("independent", [True, False])
def test_chunk_frames_last_keeps_the_last_frame_only(independent):
    class WholeChunk(WorldBackend):
        """Stands in for a generative backend: must be given the whole chunk."""

        renders_frames_independently = False

    def backend():
        return "world" if independent else WholeChunk(view_hw=(16, 16), max_distance=40.0)

    full, full_calls = chunk_trace("all", backend=backend())
    last, last_calls = chunk_trace("last", backend=backend())
    assert all(shape[1] == NEW_FRAMES_PER_CHUNK + 1 for shape in full_calls)
    # Only the final frame is rendered where the backend allows it.
    assert all(shape[1] == (2 if independent else NEW_FRAMES_PER_CHUNK + 1) for shape in last_calls)
    assert len(full_calls) == len(last_calls) == 3

    full_rest, full_frames, full_chunks = split_frames(full)
    last_rest, last_frames, last_chunks = split_frames(last)
    # Observations, rewards, ends, poses, scenario, state: identical, bit for bit.
    assert_same(full_rest, last_rest)
    ended = [a for a, done in full[1][2].items() if done]
    assert ended == ["agent_0"]  # one agent is done while the other drives on
    for step, (a, b) in enumerate(zip(full_frames, last_frames, strict=True)):
        for agent in a:
            assert b[agent].shape == (1, 32, 32, 3)
            np.testing.assert_array_equal(b[agent], a[agent][-1:])
            if step:
                assert a[agent].shape == (NEW_FRAMES_PER_CHUNK, 32, 32, 3)
    for step, (a, b) in enumerate(zip(full_chunks, last_chunks, strict=True)):
        assert b.shape == (1, *a.shape[1:])
        assert a.shape[0] == (NEW_FRAMES_PER_CHUNK if step else 1)
        np.testing.assert_array_equal(b, a[-1:])  # the minimap too: the last poses


def test_chunk_frames_last_in_a_vector_env():
    def run(mode):
        envs = ShareVerseVectorEnv(2, backend="world", max_cycles=2, chunk_frames=mode, **SMALL)
        out = [envs.reset(seed=3)]
        actions = np.tile(np.float32([8.0, 0.0, 0.05]), (2, 2, 1))
        out += [envs.step(actions) for _ in range(2)]
        return out

    full, last = run("all"), run("last")
    for a, b in zip(full, last, strict=True):
        assert_same(a[:-1], b[:-1])  # observations, rewards, ends
    for a, b in zip(full[1:], last[1:], strict=True):
        for info_a, info_b in zip(a[-1], b[-1], strict=True):
            for agent in info_a:
                frames_a, frames_b = info_a[agent].pop("frames"), info_b[agent].pop("frames")
                assert frames_b.shape == (1, 32, 32, 3)
                np.testing.assert_array_equal(frames_b, frames_a[-1:])
            assert_same(info_a, info_b)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_an_env_in_one_town_keeps_it_across_resets():
    # Training pools hold more one-town envs than the shared town cache: each env must keep
    # its own town (and renderer) instead of regenerating it (0.4 s) at every reset.
    from shareverse_env.envs.parallel import _cached_town

    env = shareverse_env.parallel_env(
        backend="world",
        view_hw=(16, 16),
        town_seed=5,
        weather="fog",
        backend_options={"max_distance": 40.0},
    )
    env.reset(seed=0)
    town, renderer = env.unwrapped.town, env.unwrapped.backend.renderer
    for seed in range(100, 106):  # evict town 5 from the cache
        _cached_town(seed, (4, 4))
    env.reset(seed=1)
    assert env.unwrapped.town is town
    assert env.unwrapped.backend.renderer is renderer
    env.reset(seed=2, options={"town_seed": 6})
    assert env.unwrapped.town.seed == 6
