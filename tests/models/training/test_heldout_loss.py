"""scripts/heldout_loss.py: the one-step held-out error, overall and in the cache's holes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from shareverse_env.models.training.cache_inputs import CacheInputStore, build_cache_inputs
from shareverse_env.models.training.latent_cache import build_latent_cache
from shareverse_env.models.training.trainer import with_cache_input
from test_latent_cache import tiny, write_dataset

from shareverse_env.data import SequenceDataset

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "heldout_loss.py"


def load_script():
    spec = importlib.util.spec_from_file_location("heldout_loss_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    base = tmp_path_factory.mktemp("heldout")
    root = write_dataset(base / "data", seed=3)
    pipe = tiny()
    build_latent_cache(root, pipe, base / "latents", progress=False)
    build_cache_inputs(root, pipe, base / "cache", start_stride=4, progress=False)
    return SequenceDataset(root, "train", frames_only=True), base / "latents", base / "cache"


def test_errors_split_into_holes_and_covered_and_follow_the_cache_input(stores):
    script = load_script()
    data, latents, cache = stores
    store = CacheInputStore(cache)
    base = script.heldout_errors(tiny(), data, latents, store, chunks=3, progress=False)
    assert all(v > 0 and torch.isfinite(torch.tensor(v)) for v in base.values())
    lo, hi = sorted((base["holes"], base["covered"]))
    assert lo <= base["all"] <= hi  # a weighted mean of the two
    # Zero-initialised cache weights: exactly the base model's prediction.
    cached = with_cache_input(tiny())
    assert script.heldout_errors(cached, data, latents, store, 3, progress=False) == base
    with torch.no_grad():
        torch.nn.init.normal_(cached.transformer.cache_embed.weight, std=0.5)
    moved = script.heldout_errors(cached, data, latents, store, 3, progress=False)
    assert moved["all"] != base["all"]
    # The same chunks and draws every call.
    assert script.heldout_errors(cached, data, latents, store, 3, progress=False) == moved


def test_plot_draws_snapshots_as_a_curve_with_marks(tmp_path):
    pytest.importorskip("matplotlib")
    script = load_script()
    table = tmp_path / "heldout.csv"
    table.write_text(
        "model,all,holes,covered\nv0,0.04,0.05,0.03\nrun/100,0.03,0.045,0.02\nrun/200,0.02,0.04,0.01\n"
    )
    out = tmp_path / "fig.png"
    script.plot(table, out, {150: "new towns join"})
    assert out.stat().st_size > 1000
    with pytest.raises(SystemExit, match="pass --out"):
        script.plot(None, out)


def test_cli_writes_the_table_and_no_progress_hides_the_bars(stores, tmp_path, capfd):
    script = load_script()
    data, latents, cache = stores
    args = ["--data", str(data.root), "--split", "train", "--latents", str(latents)]
    args += ["--cache-inputs", str(cache), "--models", "tiny", "--chunks", "2"]
    table = tmp_path / "heldout.csv"
    script.main([*args, "--out", str(table), "--no-progress"])
    quiet = capfd.readouterr()
    assert "tiny" in quiet.out and "holes" in quiet.out and quiet.err == ""
    script.main([*args, "--out", str(table)])
    assert "tiny" in capfd.readouterr().err  # the bar, when not hidden
    rows = table.read_text().splitlines()
    assert rows[0] == "model,all,holes,covered" and len(rows) == 3
    assert rows[1] == rows[2]  # the same chunks and draws every run
