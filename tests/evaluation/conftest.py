"""Fixtures of the evaluation tests (the scenes themselves live in ``_scenes.py``)."""

from __future__ import annotations

import pytest
from _scenes import write_tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """``(root, data)`` of a one-sequence, 57-frame (two-chunk) dataset in split ``val``."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    return root, write_tiny_dataset(root)
