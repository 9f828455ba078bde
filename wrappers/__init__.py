"""Wrappers for the ShareVerse env, installed as ``shareverse_env.wrappers``.

Example:
    >>> from shareverse_env.wrappers import RecordVideo
    >>> RecordVideo.__name__
    'RecordVideo'
"""

from .record_video import RecordVideo, capped_cubic_schedule

__all__ = ["RecordVideo", "capped_cubic_schedule"]
