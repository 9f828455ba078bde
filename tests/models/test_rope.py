"""Rotary tables for memory, chunk and cross-agent sequences."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from shareverse_env.models.rope import cross_agent_positions, rope_table


def test_consecutive_frames_match_diffusers_table() -> None:
    cos, sin = rope_table(64, (30, 45), (30, 45), list(range(13)))
    ref_cos, ref_sin = get_3d_rotary_pos_embed(64, ((0, 0), (30, 45)), (30, 45), 13)
    torch.testing.assert_close(cos, ref_cos)
    torch.testing.assert_close(sin, ref_sin)


def test_selected_frames_are_slices_of_the_full_table() -> None:
    full_cos, _ = rope_table(16, (4, 6), (4, 6), list(range(12)))
    cos, _ = rope_table(16, (4, 6), (4, 6), [4, 5, 11])
    per = 24
    expected = torch.cat([full_cos[4 * per : 6 * per], full_cos[11 * per : 12 * per]])
    torch.testing.assert_close(cos, expected)


def test_cross_agent_positions() -> None:
    frames = torch.tensor([4, 5, 6])
    assert cross_agent_positions(2, frames, "synchronous").tolist() == [4, 5, 6, 4, 5, 6]
    assert cross_agent_positions(2, frames, "concatenated").tolist() == [4, 5, 6, 11, 12, 13]
    with pytest.raises(ValueError, match="synchronous"):
        cross_agent_positions(2, frames, "other")


def test_bad_positions() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        rope_table(16, (4, 6), (4, 6), [])
    with pytest.raises(ValueError, match="non-negative"):
        rope_table(16, (4, 6), (4, 6), [-1, 0])
