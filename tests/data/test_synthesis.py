"""Sequence synthesis (expert trajectories, rendering) and the ``shareverse-data`` CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from shareverse_env.cli import data as cli
from shareverse_env.data.format import COMPLETE_MARKER, read_dataset_info
from shareverse_env.data.reader import SequenceDataset, list_sequences
from shareverse_env.data.synthesis import (
    LATERAL_AMPLITUDE,
    cached_town,
    synthesize_sequence,
)
from shareverse_env.world.scenarios import make_scenario
from shareverse_env.world.collision import first_collisions
from shareverse_env.world.renderer import Renderer

HW = (32, 48)
BLOCKS = (2, 2)
GEN = ["--frames", "9", "--view-hw", "32", "48", "--town-blocks", "2", "2", "--towns", "4"]
GEN += ["--sequences", "4", "--val-fraction", "0.25", "--seed", "3", "--quiet"]


@pytest.fixture(scope="module")
def head_on():
    return synthesize_sequence(4, 7, "head_on", "clear_noon", 2, 17, HW, town_blocks=BLOCKS)


def test_shapes_dtypes_and_meta(head_on):
    assert head_on.frames.shape == (2, 17, 64, 96, 3) and head_on.frames.dtype == np.uint8
    assert head_on.depth.shape == (2, 17, 64, 96) and head_on.depth.dtype == np.float32
    assert head_on.poses.shape == (2, 17, 3) and head_on.poses.dtype == np.float64
    meta = head_on.meta
    assert meta["scenario"] == "head_on" and meta["weather"] == "clear_noon"
    assert (meta["town_seed"], meta["seed"], meta["num_frames"], meta["fps"]) == (7, 4, 17, 10)
    assert [info["role"] for info in meta["agent_info"]] == ["forward", "oncoming"]
    assert meta["view_hw"] == list(HW) and meta["rig"]["hfov_deg"] == 90.0
    json.dumps(meta)  # JSON-friendly
    sky = np.isinf(head_on.depth)
    assert sky.any() and (head_on.depth[~sky] > 0).all()


def test_deterministic(head_on):
    again = synthesize_sequence(4, 7, "head_on", "clear_noon", 2, 17, HW, town_blocks=BLOCKS)
    np.testing.assert_array_equal(again.frames, head_on.frames)
    np.testing.assert_array_equal(again.poses, head_on.poses)
    other = synthesize_sequence(5, 7, "head_on", "clear_noon", 2, 17, HW, town_blocks=BLOCKS)
    assert not np.array_equal(other.poses, head_on.poses)


def test_collision_free_and_on_route(head_on):
    town = cached_town(7, BLOCKS)
    assert first_collisions(town, head_on.poses) == [None, None]
    scenario = make_scenario(town, "head_on", 2, head_on.meta["scenario_seed"])
    for k, plan in enumerate(scenario.agents):
        s, lateral = plan.route.project(head_on.poses[k, :, :2])
        assert np.abs(lateral).max() <= LATERAL_AMPLITUDE + 1e-6
        assert np.all(np.diff(s) >= -1e-6)  # drives forward along its route
        heading = plan.route.pose_at(s)[:, 2]
        assert np.abs(np.angle(np.exp(1j * (head_on.poses[k, :, 2] - heading)))).max() < 0.1
        assert s[-1] > 0.5  # actually moves


def test_every_agent_sees_the_other_car(head_on):
    renderer = Renderer(cached_town(7, BLOCKS), "clear_noon", view_hw=HW)
    for k in range(2):
        cars = head_on.poses.transpose(1, 0, 2).copy()  # (F, A, 3): every car at every frame
        cars[:, 1 - k] = np.nan  # the other car absent, the own one present but hidden
        hide = np.full(len(cars), k)
        alone = renderer.render(head_on.poses[k], cars=cars, hide=hide).rgb
        differs = np.any(alone != head_on.frames[k], axis=(1, 2, 3))
        assert differs.any(), f"agent {k} never sees the other car"


def test_follower_never_faster():
    data = synthesize_sequence(2, 7, "following", "fog", 2, 9, HW, town_blocks=BLOCKS)
    lead, follow = data.meta["drive"]
    assert follow["leader"] == 0 and lead["leader"] is None
    assert follow["v0"] <= lead["v0"] and follow["v1"] <= lead["v1"]
    assert follow["delay"] >= lead["delay"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiples of 16"):
        synthesize_sequence(0, 7, "head_on", None, view_hw=(30, 48), town_blocks=BLOCKS)
    with pytest.raises(ValueError, match="unknown weather"):
        synthesize_sequence(0, 7, "head_on", "snow", town_blocks=BLOCKS)
    with pytest.raises(ValueError, match="unknown scenario"):
        synthesize_sequence(0, 7, "parking", None, town_blocks=BLOCKS)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "ds"
    assert cli.main(["generate", "--out", str(out), "--workers", "1", *GEN]) == 0
    return out


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "dataset.json"
    }


def test_plan_is_balanced_and_splits_disjoint():
    pools = cli.town_pool(3, 20, 0.1)
    assert len(pools["train"]) == 18 and len(pools["val"]) == 2
    assert not set(pools["train"]) & set(pools["val"])
    combos = [cli.combination(3, "train", i) for i in range(30)]
    assert len(set(combos)) == 30  # every (scenario, weather) pair once per block


def test_generate_layout_and_disjoint_towns(generated, capsys):
    info = read_dataset_info(generated)
    assert info["splits"]["train"]["sequences"] == 3 and info["splits"]["val"]["sequences"] == 1
    assert list_sequences(generated, "train") == ["000000", "000001", "000002"]
    train = {SequenceDataset(generated, "train").meta(i)["town_seed"] for i in range(3)}
    val = {SequenceDataset(generated, "val").meta(0)["town_seed"]}
    assert train <= set(info["splits"]["train"]["town_seeds"])
    assert val <= set(info["splits"]["val"]["town_seeds"])
    assert not set(info["splits"]["train"]["town_seeds"]) & set(info["splits"]["val"]["town_seeds"])
    assert len({SequenceDataset(generated, "train").meta(i)["scenario"] for i in range(3)}) > 1
    assert cli.main(["info", str(generated)]) == 0
    assert "train: 3 complete of 3 planned" in capsys.readouterr().out


def test_two_workers_byte_identical(generated, tmp_path):
    out = tmp_path / "ds"
    assert cli.main(["generate", "--out", str(out), "--workers", "2", *GEN]) == 0
    one, two = _files(generated), _files(out)
    assert one.keys() == two.keys() and len(one) == 4 * 6
    assert all(one[k] == two[k] for k in one)


def test_resume_skips_and_rebuilds(generated, tmp_path, capsys):
    out = tmp_path / "ds"
    shutil.copytree(generated, out)
    keep = (out / "train" / "000001" / "poses.npy").stat().st_mtime_ns
    shutil.rmtree(out / "train" / "000000")
    (out / "val" / ".000003.tmp").mkdir()  # left by an interrupted run
    assert cli.main(["generate", "--out", str(out), "--workers", "1", *GEN]) == 0
    summary = capsys.readouterr().out
    assert "wrote 1 sequences" in summary and "skipped 3" in summary and "removed 1" in summary
    assert not (out / "val" / ".000003.tmp").exists()
    assert (out / "train" / "000001" / "poses.npy").stat().st_mtime_ns == keep
    assert _files(out) == _files(generated)


def test_mismatched_settings_refused(generated, capsys):
    before = (generated / "dataset.json").read_bytes()
    args = ["generate", "--out", str(generated), "--workers", "1", *GEN, "--seed", "4"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "different settings" in err and "seed: existing 3 vs requested 4" in err
    assert (generated / "dataset.json").read_bytes() == before


def test_check_reports_corruption(generated, tmp_path, capsys):
    out = tmp_path / "ds"
    shutil.copytree(generated, out)
    assert cli.main(["check", str(out)]) == 0
    path = out / "train" / "000002" / "frames_agent0.npy"
    path.write_bytes(path.read_bytes()[:-10])
    (out / "val" / "000000" / COMPLETE_MARKER).unlink()
    capsys.readouterr()
    assert cli.main(["check", str(out)]) == 1
    report = capsys.readouterr().out
    assert "train/000002" in report and "frames_agent0.npy" in report
    assert "val/000000" in report and "train/000001" not in report
