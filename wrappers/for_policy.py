"""Rebuild the observation wrappers a trained policy was saved behind.

A checkpoint written by :func:`shareverse_env.policies.save_policy` records the wrappers its
network saw (``observation_wrappers`` in its sidecar, innermost first); :func:`wrap_for_policy`
wraps a bare env in the same ones, so that :func:`shareverse_env.policies.load_policy` can
drive it.
"""

from __future__ import annotations

import os

from pettingzoo import ParallelEnv
from shareverse_env.wrappers.dict_observation import DictObservation
from shareverse_env.wrappers.frame_stack import StackChunkFrames
from shareverse_env.wrappers.grayscale import GrayscaleObservation
from shareverse_env.wrappers.resize import ResizeObservation
from shareverse_env.wrappers.select_views import SelectViews

from shareverse_env.policies.actor_critic import (
    WRAPPERS,
    check_wrapper_specs,
    read_policy_sidecar,
    sidecar_path,
)

_WRAPPER_CLASSES = {
    cls.__name__: cls
    for cls in (
        SelectViews,
        ResizeObservation,
        GrayscaleObservation,
        StackChunkFrames,
        DictObservation,
    )
}
assert set(_WRAPPER_CLASSES) == set(WRAPPERS)


def wrap_for_policy(env: ParallelEnv, path: str | os.PathLike[str]) -> ParallelEnv:
    """``env`` wrapped in the observation wrappers the checkpoint at ``path`` was trained behind
    (its sidecar's ``observation_wrappers``, innermost first); ``env`` itself when there are none.

    Example:
        >>> import tempfile, shareverse_env
        >>> from pathlib import Path
        >>> from shareverse_env.policies import ActorCritic, save_policy
        >>> env = DictObservation(shareverse_env.parallel_env(backend="world"), route_points=4)
        >>> path = Path(tempfile.mkdtemp()) / "p.safetensors"
        >>> save_policy(path, ActorCritic.for_env(env),
        ...             observation_wrappers=[{"name": "DictObservation", "route_points": 4}])
        >>> bare = shareverse_env.parallel_env(backend="world", max_cycles=2)
        >>> wrapped = wrap_for_policy(bare, path)
        >>> sorted(wrapped.observation_space("agent_0"))
        ['goal', 'image', 'pose', 'route', 'speed']
    """
    data = read_policy_sidecar(path)
    specs = check_wrapper_specs(data.get("observation_wrappers", []), str(sidecar_path(path)))
    if not specs:
        return env
    for spec in specs:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        for key, value in kwargs.items():  # JSON lists back to the tuples the wrappers take
            if isinstance(value, list):
                kwargs[key] = tuple(value)
        try:
            env = _WRAPPER_CLASSES[spec["name"]](env, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"policy checkpoint {path}: cannot rebuild wrapper {spec!r} ({err})"
            ) from err
    return env
