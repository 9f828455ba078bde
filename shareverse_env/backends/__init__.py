"""Backends: what turns every agent's planned camera poses for a chunk into that chunk's frames.

The env owns the bookkeeping (poses, routes, rewards) and the town; a backend only produces
pixels. Backends are a registry of lazily imported classes (:data:`BACKENDS`), so that
listing them imports nothing heavy:

* ``"world"`` (:class:`WorldBackend`): the exact renderer of the procedural town — ground truth,
  the data source for training, and a fast backend for prototyping policies.
* ``"shareverse"`` (:class:`~shareverse_env.backends.generative.ShareVerseBackend`): the
  generative ShareVerse model with its spatial memory (imported on first use: it loads torch
  and diffusers).

What differs between backends is declared on the class (:attr:`Backend.takes_model`,
:attr:`Backend.default_view_hw`, :attr:`Backend.renders_frames_independently`,
:attr:`Backend.shares_weights` with :meth:`Backend.load_shared_model`), so that the env, the
vector env and the CLI treat every backend alike. A new backend is one module and one
:func:`register_backend` call.

The env renders each episode's first frames itself, with their exact depth and sky mask
(:class:`FirstFrames`), and hands them to :meth:`Backend.reset`.

``"auto"`` (the env's default) picks ``"shareverse"`` when the package ships trained weights
(or a ``model`` is given) and ``"world"`` otherwise: see :func:`default_backend_name`.

Example:
    >>> import numpy as np
    >>> from shareverse_env.world.generator import generate_town
    >>> backend = make_backend("world", view_hw=(64, 96))
    >>> town = generate_town(0)
    >>> start = np.array([[0.0, 0.0, 0.0]])
    >>> backend.reset(town, "clear_noon", start).shape
    (1, 128, 192, 3)
    >>> first = backend.first_frames(town, "clear_noon", start)  # RGB with exact depth
    >>> first.depth.shape, first.sky.dtype
    ((1, 128, 192), dtype('bool'))
"""

from shareverse_env.backends.base import Backend, FirstFrames
from shareverse_env.backends.registry import (
    BACKENDS,
    backend_class,
    backend_names,
    default_backend_name,
    make_backend,
    register_backend,
    shipped_weights_folder,
    unregister_backend,
)
from shareverse_env.backends.world import WorldBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "FirstFrames",
    "WorldBackend",
    "backend_class",
    "backend_names",
    "default_backend_name",
    "make_backend",
    "register_backend",
    "shipped_weights_folder",
    "unregister_backend",
]
