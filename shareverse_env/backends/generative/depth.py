"""The depth network that lifts generated frames into the scene cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shareverse_env.scene.composite import DepthEstimator

TURN_OFF = 'pass backend_options={"depth_model": False} to turn generated-frame depth off'


class DepthModelUnavailableError(RuntimeError):
    """Depth was asked for (the shipped network, or a weights path) and cannot be had."""


def depth_estimator(depth_model: str | Path | bool | None) -> DepthEstimator | None:
    """The depth estimator a backend's ``depth_model`` option names.

    ``None`` or ``True``: the shipped depth network; a path: the weights there; ``False``: none
    (only frames with exact depth enter the scene cache). Depth that was asked for and cannot
    be had is an error, never a silent ``None``: without it no generated frame would enter the
    cache.

    Raises:
        DepthModelUnavailableError: the depth network's module cannot be imported, or its
            weights are missing (the message says which, and how to turn depth off).

    Example:
        >>> depth_estimator(False) is None
        True
        >>> try:
        ...     depth_estimator("/nowhere/depth")
        ... except DepthModelUnavailableError as err:
        ...     print(str(err)[:48], "...", str(err)[-42:])
        depth_model '/nowhere/depth': /nowhere/depth: ... to turn generated-frame depth off
    """
    if depth_model is False:
        return None
    try:
        from shareverse_env.models.depth import load_depth_model, predict_depth
    except ImportError as err:
        raise DepthModelUnavailableError(
            f"the scene cache's depth network cannot be imported ({err}); install the package "
            f"with its models, or {TURN_OFF}"
        ) from err
    path = None if depth_model is None or depth_model is True else depth_model
    try:
        model = load_depth_model(path)
    except FileNotFoundError as err:
        which = "the shipped depth weights" if path is None else f"depth_model {str(path)!r}"
        raise DepthModelUnavailableError(f"{which}: {err}; {TURN_OFF}") from err

    def estimate(frames: np.ndarray) -> np.ndarray:
        return predict_depth(model, frames)

    return estimate
