"""The generative backend's typed config: ``backend_options`` checked by key and type."""

import numpy as np
import pytest
import torch

import shareverse_env
from shareverse_env.backends.generative import (
    DEFAULT_MEMORY_CAPACITY,
    OPTIONS,
    BackendOptionTypeError,
    GenerativeConfig,
    SceneCacheConfig,
    ShareVerseBackend,
)
from shareverse_env.core.geometry import CameraRig
from shareverse_env.scene.cache import DEFAULT_CACHE_CAPACITY, MAX_FOOTPRINT, SceneCache
from shareverse_env.scene.composite import SceneCompositor

# Every option of the 18-keyword constructor before the config, with its default.
DEFAULTS_BEFORE = {
    "memory_source": "all",
    "memory_capacity": DEFAULT_MEMORY_CAPACITY,
    "archive_stride": 1,
    "num_inference_steps": None,
    "device": None,
    "progress": False,
    "seed": 0,
    "scene_cache": True,
    "composite": True,
    "cache_capacity": 32,
    "cache_eviction": "coverage",
    "cache_max_footprint": MAX_FOOTPRINT,
    "cache_buffers": 4,
    "depth_model": None,
    "allow_random_full_size": False,
    "colour_anchor": 1.0,  # added with issue 27; on by default since 2026-12-08
}


def make(**options):
    return shareverse_env.parallel_env(
        backend="shareverse", model="tiny", max_cycles=1, backend_options=options
    )


def test_every_option_keeps_its_name_and_default():
    assert set(OPTIONS) == set(DEFAULTS_BEFORE)
    assert GenerativeConfig().to_options() == DEFAULTS_BEFORE
    assert GenerativeConfig.from_options({}) == GenerativeConfig()
    config = GenerativeConfig.from_options({"memory_source": "own", "cache_buffers": 2})
    assert config.memory.source == "own" and config.scene_cache.buffers == 2


def test_an_unknown_key_names_the_known_ones_and_the_nearest():
    with pytest.raises(ValueError, match="unknown backend option 'scene_cach'") as info:
        make(scene_cach=False)
    message = str(info.value)
    assert "did you mean 'scene_cache'?" in message
    assert all(key in message.split("known options:")[1] for key in OPTIONS)
    with pytest.raises(ValueError, match="known options: memory_source") as info:
        GenerativeConfig.from_options({"xyzzy": 1})
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("cache_capacity", "lots", "expected int, got str 'lots'"),
        ("cache_capacity", 32.0, "expected int, got float 32.0"),
        ("memory_capacity", "4096", "expected int or None, got str '4096'"),
        ("memory_source", 3, "expected str, got int 3"),
        ("scene_cache", "yes", r"expected bool \(True or False\), got str 'yes'"),
        ("composite", 1, r"expected bool \(True or False\), got int 1"),
        ("cache_max_footprint", (6, 3, 1), "expected int or a \\(width, height\\) pair of ints"),
        ("depth_model", 3, "expected None, False, True or a weights path"),
        ("device", 0, "expected str, torch.device or None, got int 0"),
    ],
)
def test_a_wrong_type_names_the_field_and_the_type(key, value, expected):
    with pytest.raises(BackendOptionTypeError, match=rf"backend_options\['{key}'\]: {expected}"):
        make(**{key: value})
    # One error class for both habits: a TypeError, and a ValueError as the old checks raised.
    with pytest.raises(TypeError):
        GenerativeConfig.from_options({key: value})
    with pytest.raises(ValueError):
        GenerativeConfig.from_options({key: value})


@pytest.mark.parametrize(
    "key",
    [
        "cache_capacity",
        "cache_buffers",
        "archive_stride",
        "seed",
        "memory_capacity",
        "num_inference_steps",
        "cache_max_footprint",
    ],
)
@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bools_do_not_pass_as_ints(key, value):
    with pytest.raises(BackendOptionTypeError, match=rf"backend_options\['{key}'\]: expected int"):
        GenerativeConfig.from_options({key: value})


def test_numpy_scalars_and_pairs_are_read_as_python_values():
    config = GenerativeConfig.from_options(
        {
            "cache_capacity": np.int64(16),
            "scene_cache": np.bool_(False),
            "cache_max_footprint": [4, np.int32(2)],
        }
    )
    assert config.scene_cache.capacity == 16 and type(config.scene_cache.capacity) is int
    assert config.scene_cache.enabled is False
    assert config.scene_cache.max_footprint == (4, 2)


def test_values_out_of_range_are_refused_before_the_model_loads(monkeypatch):
    import shareverse_env.backends.generative.backend as module

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(module, "load_model", no_load)
    with pytest.raises(ValueError, match="memory_source must be one of"):
        make(memory_source="everyone")
    with pytest.raises(ValueError, match="archive_stride must be >= 1"):
        make(archive_stride=0)


def test_a_failed_construction_changes_nothing(monkeypatch):
    import shareverse_env.backends.generative.backend as module

    loads = []
    monkeypatch.setattr(module, "load_model", lambda *a, **k: loads.append(a))
    options = {"scene_cach": False, "cache_capacity": 8}
    rng_before = torch.get_rng_state()
    for bad in (options, {"cache_capacity": "lots"}, {"seed": True}):
        given = dict(bad)
        with pytest.raises(ValueError):
            shareverse_env.parallel_env(backend="shareverse", model="tiny", backend_options=bad)
        assert bad == given  # the caller's dict is not touched
    assert loads == []  # nothing was loaded or built
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_config_object_or_options_not_both():
    config = GenerativeConfig.from_options({"memory_source": "own", "scene_cache": False})
    backend = ShareVerseBackend(model="tiny", config=config)
    assert backend.config is config and backend.memory_source == "own" and backend.scene is None
    with pytest.raises(ValueError, match="not both"):
        ShareVerseBackend(model="tiny", config=config, seed=1)


def test_the_vector_env_checks_options_when_it_loads_the_shared_model():
    with pytest.raises(ValueError, match="did you mean 'seed'"):
        ShareVerseBackend.load_shared_model("tiny", {"sed": 1})


def test_one_default_cache_capacity_reaches_the_cache():
    assert DEFAULT_CACHE_CAPACITY == 32  # the env's value before the constant
    assert SceneCacheConfig().capacity == DEFAULT_CACHE_CAPACITY
    assert SceneCompositor(CameraRig(), (16, 24)).cache.capacity == DEFAULT_CACHE_CAPACITY
    assert SceneCache(CameraRig(), (16, 24)).capacity == DEFAULT_CACHE_CAPACITY
    env = make(depth_model=False)
    assert env.backend.scene.cache.capacity == DEFAULT_CACHE_CAPACITY
    assert make(cache_capacity=5, depth_model=False).backend.scene.cache.capacity == 5
