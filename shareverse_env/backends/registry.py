"""Backends by name, imported on first use, and what ``backend="auto"`` means."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

from shareverse_env.backends.base import Backend
from shareverse_env.core.weights import shipped_pipeline_folder

BACKENDS: dict[str, str | type[Backend]] = {
    "world": "shareverse_env.backends.world:WorldBackend",
    "shareverse": "shareverse_env.backends.generative:ShareVerseBackend",
}
"""Backends by name: ``"module:Class"`` entries are imported on first use (then replaced by the
class). Add entries with :func:`register_backend`."""


def register_backend(name: str, target: str | type[Backend], replace: bool = False) -> None:
    """Make ``target`` (a :class:`Backend` subclass or ``"module:Class"``, imported on first use)
    available as ``parallel_env(backend=name)``.

    Raises ``ValueError`` when ``name`` is taken (unless ``replace``) or is ``"auto"``.

    Example:
        >>> register_backend("world_again", "shareverse_env.backends.world:WorldBackend")
        >>> backend_class("world_again") is backend_class("world")
        True
        >>> unregister_backend("world_again")
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(
            f"a backend name must be a non-empty string other than 'auto'; got {name!r}"
        )
    if isinstance(target, str):
        if target.count(":") != 1 or not all(target.split(":")):
            raise ValueError(f"backend target must be 'module:Class'; got {target!r}")
    elif not (isinstance(target, type) and issubclass(target, Backend)):
        raise TypeError(
            f"backend target must be a Backend subclass or 'module:Class'; got {target!r}"
        )
    if name in BACKENDS and not replace:
        raise ValueError(f"backend {name!r} is already registered; pass replace=True to replace it")
    BACKENDS[name] = target


def unregister_backend(name: str) -> None:
    """Remove ``name`` from the registry (a no-op when it is not there)."""
    BACKENDS.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """The registered backend names, sorted (``"auto"`` is not one: it picks one of them).

    >>> backend_names()[:2]
    ('shareverse', 'world')
    """
    return tuple(sorted(BACKENDS))


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``, imported on first use."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {list(backend_names())}")
    target = BACKENDS[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"backend {name!r}: {target} is not a Backend subclass")
        BACKENDS[name] = target = cls
    return target


def make_backend(name: str | Backend, **kwargs: Any) -> Backend:
    """Build a backend from its name (or return a ready :class:`Backend` instance as is)."""
    if isinstance(name, Backend):
        return name
    return backend_class(name)(**kwargs)


def shipped_weights_folder() -> Path | None:
    """The trained pipeline folder shipped in the package, or ``None`` when this install has none.

    Found without importing torch (:func:`shareverse_env.core.weights.shipped_pipeline_folder`).
    """
    return shipped_pipeline_folder()


def default_backend_name(model: Any = None) -> str:
    """What ``backend="auto"`` means: the generative backend when there is a model to run
    (``model`` given, or shipped weights installed), else the exact renderer.

    >>> default_backend_name(model="tiny")
    'shareverse'
    """
    if model is not None or shipped_weights_folder() is not None:
        return "shareverse"
    return "world"
