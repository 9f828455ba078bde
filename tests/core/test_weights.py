"""Where the shipped weights live: one answer for the env's "auto", the loader and the depth net."""

from __future__ import annotations

from shareverse_env.core import weights


def test_one_location_for_every_shipped_folder():
    from shareverse_env.models import depth, loading

    assert loading.SHIPPED_WEIGHTS == weights.shipped_weights(weights.SHIPPED_PIPELINE)
    assert depth.WEIGHTS_DIR == weights.shipped_weights(weights.SHIPPED_DEPTH)
    assert loading.SHIPPED_WEIGHTS.parent == depth.WEIGHTS_DIR.parent
    found = weights.shipped_pipeline_folder()
    assert found is None or found == loading.SHIPPED_WEIGHTS


def test_no_pipeline_where_the_package_has_none(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "_candidates", lambda name: [tmp_path / "weights" / name])
    assert weights.shipped_pipeline_folder() is None
    assert weights.shipped_weights("small") == tmp_path / "weights" / "small"
