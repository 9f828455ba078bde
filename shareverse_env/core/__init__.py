"""The leaf layer every other one shares: poses, the camera rig, chunk trajectories, raymaps,
the 2×2 tiling of the four views (:mod:`~shareverse_env.core.tiling`), the car's dimensions
(:mod:`~shareverse_env.core.vehicle`), where the shipped weights live
(:mod:`~shareverse_env.core.weights`), and atomic file writes. Imports numpy, torch and einops
only.

Example:
    >>> from shareverse_env.core import CameraRig, plan_chunk
    >>> import numpy as np
    >>> plan_chunk(np.zeros(3), np.array([8.0, 0.0, 0.0]))[-1].round(2).tolist()
    [8.0, 0.0, 0.0]
    >>> VIEW_NAMES
    ('front', 'rear', 'left', 'right')
"""

from shareverse_env.core.files import FolderBusyError, atomic_file, atomic_folder, exclusive_writer
from shareverse_env.core.geometry import (
    CHUNK_FRAMES,
    FPS,
    MEMORY_FRAMES,
    NEW_FRAMES_PER_CHUNK,
    VAE_SPATIAL_FACTOR,
    VAE_TEMPORAL_FACTOR,
    VIEW_NAMES,
    CameraRig,
    check_finite_poses,
    plan_chunk,
    raymaps,
    wrap_angle,
)
from shareverse_env.core.tiling import tile_views, untile_views

__all__ = [
    "CHUNK_FRAMES",
    "FPS",
    "MEMORY_FRAMES",
    "NEW_FRAMES_PER_CHUNK",
    "VAE_SPATIAL_FACTOR",
    "VAE_TEMPORAL_FACTOR",
    "VIEW_NAMES",
    "CameraRig",
    "FolderBusyError",
    "atomic_file",
    "atomic_folder",
    "check_finite_poses",
    "exclusive_writer",
    "plan_chunk",
    "raymaps",
    "tile_views",
    "untile_views",
    "wrap_angle",
]
