"""Atomic folder and file writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from shareverse_env.files import atomic_file, atomic_folder


def test_new_folder_appears_complete(tmp_path: Path) -> None:
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("1")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replacing_keeps_the_old_folder_until_success(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no debris
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_file_replaces_in_one_rename_and_leaves_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half")
        assert tmp.name.startswith(".a.bin.") and tmp.suffix == ".tmp"
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    with atomic_file(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
