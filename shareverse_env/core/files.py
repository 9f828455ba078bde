"""Atomic writes of folders and files: a temporary sibling, then one rename (no half-written results)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``target`` in one rename.

    The temporary name starts with a dot and ends in ``.tmp`` (``.<name>.<random>.tmp``), so
    listings that skip hidden files never see a half-written file; on failure it is removed.
    The caller creates the file (with the usual permissions).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class FolderBusyError(RuntimeError):
    """Another process is writing the folder (it holds the folder's ``.lock``)."""


@contextlib.contextmanager
def exclusive_writer(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder/.lock`` (an advisory ``flock``) while one process writes ``folder``.

    A second writer fails at once with :class:`FolderBusyError` naming the folder, instead of racing the first
    (deleting its temporary files, writing the same outputs twice). The lock dies with the
    process, so a killed writer never leaves the folder locked. Without ``fcntl`` (not POSIX)
    nothing is locked.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with exclusive_writer(folder, "cache"):
        ...     with exclusive_writer(folder, "cache"):
        ...         pass
        Traceback (most recent call last):
        shareverse_env.core.files.FolderBusyError: cache ... is being written by another process ...
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(
                f"{what} {folder} is being written by another process (it holds "
                f"{folder / '.lock'}); wait for it to finish or write to another folder"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
