"""The DepthNet trainer: a few steps on a tiny dataset, resume, export and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from shareverse_env.models.depth import load_depth_model
from shareverse_env.models.training.depth import (
    DepthTrainConfig,
    DepthTrainer,
    augment,
    blur_frames,
    draw_batch,
    load_frames_and_depth,
    mean_depth_baseline,
    write_tiny_dataset,
)

from shareverse_env.cli.train import main

TINY = {"widths": (4, 8, 8), "batch_size": 1, "checkpoint_every": 0, "warmup_steps": 2}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth_data")
    write_tiny_dataset(root, "train", sequences=2, frames=2)
    write_tiny_dataset(root, "val", sequences=1, frames=2, seed=1)
    return root


def test_batches_and_augmentation_keep_shapes_and_sky(tiny_root) -> None:
    frames, depth = load_frames_and_depth([tiny_root], "train")
    views, d = draw_batch(frames, depth, 2, np.random.default_rng(0))
    assert views.shape == (8, 3, 64, 96) and d.shape == (8, 64, 96)
    sky = ~torch.isfinite(d)
    assert sky.any() and (~sky).any()
    aug, ad = augment(views.clone(), d, torch.Generator().manual_seed(0))
    assert aug.shape == views.shape and 0 <= float(aug.min()) and float(aug.max()) <= 1
    # flips move the sky with the views but never change how much there is
    assert torch.equal((~torch.isfinite(ad)).sum((1, 2)), sky.sum((1, 2)))
    assert blur_frames(frames[:1], 3.0).dtype == np.uint8
    baseline = mean_depth_baseline(depth)
    assert baseline.shape == depth.shape[1:] and np.isfinite(baseline).all()


def test_train_resume_and_export(tiny_root, tmp_path) -> None:
    straight = DepthTrainer(
        [tiny_root], tmp_path / "a", DepthTrainConfig(steps=4, **TINY), progress=False
    )
    straight.run()
    run = tmp_path / "b"
    first = DepthTrainer([tiny_root], run, DepthTrainConfig(steps=4, **TINY), progress=False)
    parts = [first.train_step() for _ in range(2)]  # an interrupted run: 2 of 4 steps
    assert all(np.isfinite(p["loss"]) for p in parts)
    first.save()
    resumed = DepthTrainer([tiny_root], run, DepthTrainConfig(steps=4, **TINY), progress=False)
    assert resumed.step == 2
    metrics = resumed.run()
    assert metrics["step"] == 4
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)
    saved = json.loads((run / "metrics.json").read_text())
    assert set(saved["val"]) == {"clean", "blur3"}
    assert 0 <= saved["val"]["clean"]["sky_accuracy"] <= 1
    assert saved["baseline_mean_depth"]["absrel"] >= 0
    assert load_depth_model(run).widths == [4, 8, 8]


def test_cli_trains_and_writes_run(tiny_root, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    argv = ["depth", "--data", str(tiny_root), "--out", str(run), "--steps", "2"]
    main([*argv, "--batch-size", "1", "--widths", "4", "8", "8", "--no-progress", "--seed", "3"])
    assert "clean AbsRel" in capsys.readouterr().out
    for name in ("depth.safetensors", "config.json", "metrics.json", "checkpoint"):
        assert (run / name).exists(), name
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
    with pytest.raises(SystemExit, match="no complete sequences"):
        main(["depth", "--data", str(tmp_path / "empty"), "--out", str(run), "--steps", "1"])
