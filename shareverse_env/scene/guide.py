"""The scene cache as a cache-conditioned model's input: one recipe for the env and training.

A model built with ``cache_in_channels > 0`` (:mod:`~shareverse_env.models.cache_input`) is
told, for every frame of an agent's chunk, what the shared scene cache shows there and where
the other cars stand. :func:`cache_guide` builds that :class:`~shareverse_env.models.
cache_input.CacheGuide` from the cache's renders; the generative backend calls it before it
denoises a chunk, and the training data (:mod:`shareverse_env.models.training.cache_data`)
calls it on caches built from the dataset, so both feed the model the same thing.

Example:
    >>> import numpy as np
    >>> from shareverse_env.backends import WorldBackend
    >>> from shareverse_env.core.geometry import CameraRig, plan_chunk
    >>> from shareverse_env.scene.composite import SceneCompositor
    >>> from shareverse_env.world.generator import generate_town
    >>> starts = np.array([[0.0, 0.0, 0.0], [12.0, 0.0, 0.0]])  # one car 12 m ahead
    >>> first = WorldBackend((32, 48)).first_frames(generate_town(0), "clear_noon", starts)
    >>> scene = SceneCompositor(CameraRig(), (32, 48))
    >>> scene.reset(first.rgb, first.depth, starts)
    >>> plan = plan_chunk(starts, np.array([[4.0, 0.0, 0.0], [4.0, 0.0, 0.0]]))
    >>> renders = scene.render(plan[:1, 1:], [0])
    >>> guide = cache_guide(scene, first.rgb[:1], renders, plan, [0])
    >>> guide.rgb.shape, bool(guide.valid[0, 0].all()), bool(guide.cars[0, 5].max() > 0)
    ((1, 29, 64, 96, 3), True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shareverse_env.core.cache_guide import CacheGuide
from shareverse_env.scene.cache import CacheRender
from shareverse_env.scene.composite import SceneCompositor


def cache_guide(
    scene: SceneCompositor,
    conditioning: np.ndarray,
    renders: Sequence[CacheRender],
    poses: np.ndarray,
    agents: Sequence[int],
) -> CacheGuide:
    """The cache input of the ``n`` generating ``agents``' chunk.

    Args:
        scene: the compositor whose cache was rendered (its rig and view size).
        conditioning: ``(n, 2H, 2W, 3)`` uint8, each agent's conditioning frame (frame 0).
        renders: the cache rendered into each agent's 28 new frames (:meth:`SceneCompositor.
            render`).
        poses: ``(A, 29, 3)`` every agent's poses over the chunk (the other cars' boxes).
        agents: the agents of the rows.

    Frame 0 is the conditioning frame, valid everywhere. In the new frames a pixel is valid
    where the cache covers it and no other car's box stands: the cache drops cars, so what it
    shows there is the background behind the car, which the model must paint over.
    """
    conditioning = np.asarray(conditioning)
    rgb, valid, cars = [], [], []
    for row, agent in enumerate(agents):
        render = renders[row]
        near = scene.car_nearness(poses, int(agent))
        rgb.append(np.concatenate([conditioning[row][None], render.rgb]))
        free = render.valid & (near[1:] == 0)
        valid.append(np.concatenate([np.ones((1, *free.shape[1:]), bool), free]))
        cars.append(near)
    return CacheGuide(np.stack(rgb), np.stack(valid), np.stack(cars))
