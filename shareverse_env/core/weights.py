"""Where the trained weights shipped with the package live: the one place that knows.

They lie in the ``weights/`` folder of the ``shareverse_env.models`` package (the repository's
``models/weights/``): :data:`SHIPPED_PIPELINE` the ShareVerse pipeline folder the env runs by
default, :data:`SHIPPED_DEPTH` the depth network. The folder is found with
:func:`importlib.util.find_spec`, which does not import the models package, so asking costs no
torch or diffusers import (what ``backend="auto"`` needs to decide).

Example:
    >>> folder = shipped_weights(SHIPPED_PIPELINE)
    >>> folder.parts[-2:]
    ('weights', 'small')
    >>> shipped_pipeline_folder() in (None, folder)
    True
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MODELS_PACKAGE = "shareverse_env.models"
"""The package whose ``weights/`` folder holds the shipped weights."""

SHIPPED_PIPELINE = "small"
"""Sub-folder of the shipped ShareVerse pipeline (the env's default model)."""

SHIPPED_DEPTH = "depth"
"""Sub-folder of the shipped depth network."""

PIPELINE_FILE = "pipeline.json"
"""The file that makes a folder a pipeline folder (:mod:`shareverse_env.models.pipeline_folder`
writes it); here so that finding the shipped pipeline needs no torch."""


def _candidates(name: str) -> list[Path]:
    """``weights/<name>`` in every location of the models package, in search order."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    locations = (spec.submodule_search_locations or []) if spec else []
    return [Path(location) / "weights" / name for location in locations]


def shipped_weights(name: str) -> Path:
    """The folder ``weights/<name>`` of the installed models package, present or not.

    Where the package has several locations, the first holding ``weights/<name>`` wins, else
    the first.

    Raises:
        ModuleNotFoundError: the models package cannot be found.

    Example:
        >>> shipped_weights(SHIPPED_DEPTH).name
        'depth'
    """
    folders = _candidates(name)
    if not folders:
        raise ModuleNotFoundError(f"{MODELS_PACKAGE} is not installed")
    return next((folder for folder in folders if folder.exists()), folders[0])


def shipped_pipeline_folder() -> Path | None:
    """The trained pipeline folder shipped in the package (one with a :data:`PIPELINE_FILE`),
    or ``None`` when this install has none. Found without importing torch.

    Example:
        >>> folder = shipped_pipeline_folder()
        >>> folder is None or (folder / PIPELINE_FILE).is_file()
        True
    """
    found = (f for f in _candidates(SHIPPED_PIPELINE) if (f / PIPELINE_FILE).is_file())
    return next(found, None)
