"""The backend registry: a backend is one module and one ``register_backend`` line."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import shareverse_env
from shareverse_env.backends import (
    BACKENDS,
    Backend,
    FirstFrames,
    WorldBackend,
    backend_class,
    backend_names,
    register_backend,
    unregister_backend,
)
from shareverse_env.core.geometry import NEW_FRAMES_PER_CHUNK
from shareverse_env.envs.vector import ShareVerseVectorEnv

DRIVE = np.array([8.0, 0.0, 0.0], dtype=np.float32)

# A throwaway backend, written as a user would: its own file, imported only when first used.
CONSTANT_MODULE = textwrap.dedent(
    '''
    import numpy as np

    from shareverse_env.backends import Backend


    class ConstantBackend(Backend):
        """Every frame one grey level; counts its calls."""

        name = "constant"
        default_view_hw = (16, 16)
        renders_frames_independently = True
        batched_calls = 0

        def __init__(self, view_hw=None, rig=None, level=7):
            super().__init__(view_hw or self.default_view_hw, rig)
            self.level = level
            self.first_frames = None
            self.generate_shapes = []

        def reset(self, town, weather, poses, options=None, first_frames=None):
            self.first_frames = first_frames
            return np.full((len(poses), *self.frame_shape), self.level, np.uint8)

        def generate(self, poses, active):
            self.generate_shapes.append(np.shape(poses))
            out = np.zeros((len(poses), len(poses[0]) - 1, *self.frame_shape), np.uint8)
            out[np.asarray(active)] = self.level
            return out

        @classmethod
        def generate_many(cls, backends, poses, active):
            cls.batched_calls += 1
            return [b.generate(p, a) for b, p, a in zip(backends, poses, active)]
    '''
)


@pytest.fixture
def constant_backend(tmp_path, monkeypatch):
    """Registers ``"constant"`` as ``"constant_backend:ConstantBackend"`` (a file on sys.path)."""
    (tmp_path / "constant_backend.py").write_text(CONSTANT_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "constant_backend", raising=False)
    register_backend("constant", "constant_backend:ConstantBackend")
    assert "constant_backend" not in sys.modules  # registering imports nothing
    yield
    unregister_backend("constant")


def test_a_registered_backend_runs_the_env(constant_backend):
    env = shareverse_env.parallel_env(backend="constant", num_agents=2, max_cycles=2)
    cls = backend_class("constant")
    assert type(env.backend) is cls and cls.__module__ == "constant_backend"
    assert env.observation_space("agent_0").shape == (32, 32, 3)  # its default_view_hw
    obs, infos = env.reset(seed=0)
    assert all((o == 7).all() and o.shape == (32, 32, 3) for o in obs.values())

    # The env rendered the episode's first frames from its town, with exact depth and sky.
    first = env.backend.first_frames
    assert isinstance(first, FirstFrames)
    assert first.rgb.shape == (2, 32, 32, 3) and first.rgb.dtype == np.uint8
    assert first.depth.shape == (2, 32, 32) and first.sky.dtype == bool
    np.testing.assert_array_equal(first.sky, np.isinf(first.depth))
    assert np.isfinite(first.depth[~first.sky]).all() and (first.depth[~first.sky] > 0).all()

    obs, rewards, *_, infos = env.step({a: DRIVE for a in env.agents})
    assert infos["agent_0"]["frames"].shape == (NEW_FRAMES_PER_CHUNK, 32, 32, 3)
    assert (infos["agent_1"]["frames"] == 7).all()
    assert env.backend.generate_shapes == [(2, NEW_FRAMES_PER_CHUNK + 1, 3)]
    assert set(rewards) == {"agent_0", "agent_1"}


def test_first_frames_are_the_exact_render_of_the_start(constant_backend):
    env = shareverse_env.parallel_env(backend="constant", num_agents=2, weather="fog")
    start = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, np.pi]])
    env.reset(seed=1, options={"start_poses": start})
    first = env.backend.first_frames
    truth = WorldBackend((16, 16)).first_frames(env.town, "fog", start)
    np.testing.assert_array_equal(first.rgb, truth.rgb)
    np.testing.assert_array_equal(first.depth, truth.depth)


def test_declared_capabilities_drive_the_env(constant_backend):
    env = shareverse_env.parallel_env(backend="constant", chunk_frames="last", max_cycles=1)
    env.reset(seed=0)
    _, _, _, _, infos = env.step({a: DRIVE for a in env.agents})
    # renders_frames_independently: only the conditioning and the last pose are asked for.
    assert env.backend.generate_shapes == [(2, 2, 3)]
    assert infos["agent_0"]["frames"].shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="model= is only used by backends that take a model"):
        shareverse_env.parallel_env(backend="constant", model="tiny")
    with pytest.raises(ValueError, match="multiples of 16"):
        shareverse_env.parallel_env(backend="constant", view_hw=(20, 20))


def test_a_registered_backend_runs_the_vector_env(constant_backend):
    envs = ShareVerseVectorEnv(3, backend="constant", max_cycles=1, backend_options={"level": 9})
    obs, _ = envs.reset(seed=0)
    assert obs["agent_0"].shape == (3, 32, 32, 3) and (obs["agent_0"] == 9).all()
    cls = backend_class("constant")
    calls = cls.batched_calls
    actions = np.tile(DRIVE, (3, 2, 1))
    obs, rewards, terms, truncs, _ = envs.step(actions)  # every episode ends (max_cycles)
    assert (obs["agent_1"] == 9).all() and rewards["agent_0"].shape == (3,)
    assert (truncs["agent_0"] | terms["agent_0"]).all() and not envs.active.any()
    assert cls.batched_calls == calls + 1  # the three worlds in one generate_many call
    envs.step(actions)  # autoreset: no generation
    assert cls.batched_calls == calls + 1 and envs.active.all()
    obs, *_ = envs.step(actions)
    assert cls.batched_calls == calls + 2 and (obs["agent_0"] == 9).all()
    assert len({id(env.backend) for env in envs.envs}) == 3  # a backend per world


def test_a_backend_that_shares_weights_gets_one_model_for_every_world():
    loads = []

    class Shared(WorldBackend):
        name = "shared"
        takes_model = True
        shares_weights = True

        def __init__(self, view_hw=None, rig=None, model=None, max_distance=40.0):
            super().__init__(view_hw or (16, 16), rig, max_distance)
            self.model = model

        @classmethod
        def load_shared_model(cls, model, options):
            loads.append((model, dict(options)))
            return {"weights": model}

    register_backend("shared", Shared)
    try:
        envs = ShareVerseVectorEnv(
            2, backend="shared", model="m", backend_options={"max_distance": 30.0}
        )
        assert loads == [("m", {"max_distance": 30.0})]
        first, second = (env.backend.model for env in envs.envs)
        assert first is second and first == {"weights": "m"}
    finally:
        unregister_backend("shared")


def test_registry_entries_and_errors():
    assert {"world", "shareverse"} <= set(backend_names())
    assert backend_class("world") is WorldBackend
    with pytest.raises(ValueError, match="already registered"):
        register_backend("world", WorldBackend)
    with pytest.raises(ValueError, match="'auto'"):
        register_backend("auto", WorldBackend)
    with pytest.raises(ValueError, match="module:Class"):
        register_backend("broken", "no_colon_here")
    with pytest.raises(TypeError, match="Backend subclass"):
        register_backend("broken", dict)
    with pytest.raises(ValueError, match="unknown backend 'nope'; available"):
        shareverse_env.parallel_env(backend="nope")
    assert "broken" not in BACKENDS
    assert issubclass(backend_class("world"), Backend)


def test_no_import_circle_between_the_backends():
    # Listing the backends imports no generative code; each module imports alone.
    code = (
        "import sys, shareverse_env.backends as b; "
        "assert 'shareverse_env.backends.generative' not in sys.modules, 'imported eagerly'; "
        "assert isinstance(b.BACKENDS['shareverse'], str)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    subprocess.run([sys.executable, "-c", "import shareverse_env.backends.generative"], check=True)
