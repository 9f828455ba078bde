"""``scripts/drift_probes.py`` on the tiny dataset with the random ``tiny`` model."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from shareverse_env.models.loading import load_model

from shareverse_env.data import SequenceDataset
from shareverse_env.evaluation.metrics import detail_ratio_tiled

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "drift_probes.py"


@pytest.fixture(scope="module")
def probes():
    spec = importlib.util.spec_from_file_location("drift_probes_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_parsing(probes) -> None:
    assert probes.parse_probe("own") == ("own", 0.0, 0.0)
    assert probes.parse_probe("own:noise=0.1") == ("own", 0.1, 0.0)
    assert probes.parse_probe("true:blur=2") == ("true", 0.0, 2.0)
    for bad in ("mine", "own:blur=2", "true:noise=0.1"):
        with pytest.raises(argparse.ArgumentTypeError, match="probe"):
            probes.parse_probe(bad)


def test_degradations(probes, tiny_dataset) -> None:
    frames = tiny_dataset[1].frames[:, 0]  # (2, 2H, 2W, 3)
    blurred = probes.gaussian_blur(frames, 2.0)
    assert blurred.dtype == np.uint8 and blurred.shape == frames.shape
    assert np.nanmean(detail_ratio_tiled(blurred, frames)) < 0.5
    assert abs(float(blurred.mean()) - float(frames.mean())) < 2.0  # blur keeps the colours
    assert probes.gaussian_blur(frames, 0) is frames
    noisy = probes.add_pixel_noise(frames, 0.1, np.random.default_rng(0))
    assert 5 < np.abs(noisy.astype(int) - frames).mean() < 15  # σ 12.75 grey levels, clipped


def test_script_prints_one_row_per_probe(probes, tiny_dataset, capsys) -> None:
    probes.main(["--data", str(tiny_dataset[0]), "--model", "tiny", "--probes", "own", "true"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| conditioning frame | all | chunk 0 | chunk 1 |")
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["own", "true"]


def test_teacher_forcing_changes_only_the_later_chunks(probes, tiny_dataset) -> None:
    data = SequenceDataset(tiny_dataset[0], "val", frames_only=True)
    pipe = load_model("tiny")
    own = probes.run_probe(pipe, data, 2, "own", 0.0, 0.0)
    true = probes.run_probe(pipe, data, 2, "true", 0.0, 0.0)
    assert own.shape == true.shape == (1, 2, 2)  # sequences, agents, chunks
    # Chunk 0 starts from the same true frame either way; chunk 1 from different frames.
    np.testing.assert_array_equal(own[..., 0], true[..., 0])
    assert not np.array_equal(own[..., 1], true[..., 1])
