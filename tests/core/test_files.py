"""Atomic folder and file writes; one writer per folder."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

from shareverse_env.core import files
from shareverse_env.core.files import atomic_file, atomic_folder, exclusive_writer


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


def test_a_second_writer_is_refused_and_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    with exclusive_writer(folder, "latent cache"):
        with pytest.raises(files.FolderBusyError, match=r"latent cache .*cache is being written"):
            with exclusive_writer(folder, "latent cache"):
                pass
        # Another process is refused too.
        code = (
            "import sys; from pathlib import Path; from shareverse_env.core.files import "
            "exclusive_writer\n"
            "try:\n"
            f"    with exclusive_writer(Path({str(folder)!r}), 'x'): sys.exit(0)\n"
            "except RuntimeError: sys.exit(3)"  # FolderBusyError is one
        )
        assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    with exclusive_writer(folder, "latent cache"):  # released on exit
        pass
    # A holder that dies without releasing leaves no lock behind.
    killed = "from pathlib import Path; from shareverse_env.core.files import exclusive_writer\n"
    killed += f"with exclusive_writer(Path({str(folder)!r}), 'x'): import os; os._exit(1)"
    assert subprocess.run([sys.executable, "-c", killed]).returncode == 1
    with exclusive_writer(folder, "latent cache"):
        pass


def test_doctests() -> None:
    result = doctest.testmod(files, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
