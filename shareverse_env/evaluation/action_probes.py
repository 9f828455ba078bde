"""Action probes: does a variant's chunk change with the action as the true chunk does?

A world model's frames must follow its inputs. For every evaluated chunk the runner also
generates the chunk under a *wrong* plan, from the same state and with the same noise, and
renders the truth under that plan with the exact renderer. Two numbers per probe and row:

- ``change``: the mean absolute difference (grey levels) between the variant's chunk under
  the true plan and under the probe's plan; ``true_change`` the same for the true chunks.
  Their ratio, the *response*, is 1 for a variant that responds to the action as the world
  does and 0 for one that ignores it (every trivial baseline, by construction);
- ``follow``: PSNR against the true chunk of the variant's chunk under the true plan minus
  that of its chunk under the probe's plan, in dB. Positive: its frames follow the action.

The probes replace every agent's plan at once (one world in which every car acts otherwise):

- ``still``: every frame at the chunk's start pose (stand still);
- ``lateral``: the true plan shifted sideways, to the left of the start heading, by
  :data:`LATERAL_OFFSET_M` at the chunk's end, smoothly from zero (a lane change on top of the
  true motion).

Example:
    >>> poses = np.zeros((1, 29, 3)); poses[0, :, 0] = np.linspace(0.0, 8.0, 29)
    >>> still = probe_plan("still", poses)
    >>> bool((still == poses[:, :1]).all())
    True
    >>> side = probe_plan("lateral", poses)
    >>> side[0, 0].tolist(), side[0, -1].round(6).tolist()
    ([0.0, 0.0, 0.0], [8.0, 2.0, 0.0])
"""

from __future__ import annotations

import numpy as np

from shareverse_env.core.geometry import CHUNK_FRAMES
from shareverse_env.world.renderer import Renderer

PROBES: tuple[str, ...] = ("still", "lateral")
"""The probes the runner knows, in report order."""

LATERAL_OFFSET_M = 2.0
"""Sideways offset of the ``lateral`` probe at the chunk's end, metres (within the action
bounds of ±3 m, and about half a lane)."""


def probe_plan(probe: str, poses: np.ndarray) -> np.ndarray:
    """The probe's plan ``(A, 29, 3)`` in place of the true plan ``poses (A, 29, 3)``."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (CHUNK_FRAMES, 3):
        raise ValueError(f"poses must have shape (A, {CHUNK_FRAMES}, 3); got {poses.shape}")
    if probe == "still":
        return np.repeat(poses[:, :1], CHUNK_FRAMES, axis=1)
    if probe == "lateral":
        s = np.linspace(0.0, 1.0, CHUNK_FRAMES)
        ramp = LATERAL_OFFSET_M * (3 * s**2 - 2 * s**3)  # smoothstep: no jump at either end
        left = poses[:, 0, 2] + np.pi / 2
        out = poses.copy()
        out[..., 0] += ramp[None] * np.cos(left)[:, None]
        out[..., 1] += ramp[None] * np.sin(left)[:, None]
        return out
    raise ValueError(f"unknown action probe {probe!r}; choose from {list(PROBES)}")


def render_truth(renderer: Renderer, poses: np.ndarray) -> np.ndarray:
    """The true frames ``(A, F, 2H, 2W, 3)`` of every agent at ``poses (A, F, 3)``, every car
    standing where its pose puts it (as the dataset synthesis renders them)."""
    return renderer.render_agents(np.asarray(poses, dtype=np.float64)).rgb


def mean_abs_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 arrays, in grey levels."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
