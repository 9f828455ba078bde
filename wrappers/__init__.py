"""Wrappers for the ShareVerse env, installed as ``shareverse_env.wrappers``.

==========================  =====================================================================
``RecordVideo``             write episodes to MP4, every frame of every chunk
``SelectViews``             keep some of the four camera views, side by side
``ResizeObservation``       resize frames (antialiased)
``GrayscaleObservation``    RGB → luma
``StackChunkFrames``        the chunk's last ``k`` frames as the observation
``DictObservation``         ``{"image", "pose", "speed", "goal"}`` observations
``RecordEpisodeStatistics`` per-agent return, length and time in ``infos[agent]["episode"]``
``SingleAgentEnv``          a ``gymnasium.Env``: drive one car, a policy drives the others
``MetaActions``             ``Discrete(5)``: keep lane, turn left, turn right, slow down, stop
==========================  =====================================================================

Image wrappers transform ``infos[agent]["frames"]`` as well as the observation; put
``StackChunkFrames`` after them and ``DictObservation`` last among the observation wrappers.

Example:
    >>> import shareverse_env
    >>> from shareverse_env.wrappers import ResizeObservation, SelectViews, StackChunkFrames
    >>> env = shareverse_env.parallel_env(backend="world")
    >>> env = StackChunkFrames(ResizeObservation(SelectViews(env, ("front",)), (32, 48)), k=4)
    >>> env.observation_space("agent_0").shape
    (4, 32, 48, 3)
"""

from shareverse_env.wrappers.base import FrameTransformWrapper
from shareverse_env.wrappers.dict_observation import DictObservation
from shareverse_env.wrappers.episode_statistics import RecordEpisodeStatistics
from shareverse_env.wrappers.for_policy import wrap_for_policy
from shareverse_env.wrappers.frame_stack import StackChunkFrames
from shareverse_env.wrappers.grayscale import GrayscaleObservation
from shareverse_env.wrappers.meta_actions import META_ACTIONS, MetaActions
from shareverse_env.wrappers.record_video import RecordVideo, capped_cubic_schedule
from shareverse_env.wrappers.resize import ResizeObservation
from shareverse_env.wrappers.select_views import SelectViews
from shareverse_env.wrappers.single_agent import SingleAgentEnv

__all__ = [
    "META_ACTIONS",
    "DictObservation",
    "FrameTransformWrapper",
    "GrayscaleObservation",
    "MetaActions",
    "RecordEpisodeStatistics",
    "RecordVideo",
    "ResizeObservation",
    "SelectViews",
    "SingleAgentEnv",
    "StackChunkFrames",
    "capped_cubic_schedule",
    "wrap_for_policy",
]
