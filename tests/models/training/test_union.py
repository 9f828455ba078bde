"""Training on several datasets at once: each sequence read from its own dataset, latent cache
and cache-input store; mismatched stores refused; the CLI trains on the union."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from shareverse_env.models.loading import load_model
from shareverse_env.models.training.batches import step_rng
from shareverse_env.models.training.cache_inputs import CacheInputStore
from shareverse_env.models.training.latent_cache import LatentCache
from shareverse_env.models.training.trainer import with_cache_input
from shareverse_env.models.training.union import (
    CacheInputUnion,
    LatentCacheUnion,
    SequenceUnion,
    open_training_data,
    split_union_id,
)

from shareverse_env.cli.data import main as data_main
from shareverse_env.cli.train import main as train_main
from shareverse_env.data.reader import SequenceDataset


def _generate(root: Path, seed: int, sequences: int) -> None:
    data_main(
        [
            "generate",
            "--out",
            str(root),
            "--sequences",
            str(sequences),
            "--seed",
            str(seed),
            "--view-hw",
            "32",
            "48",
            "--frames",
            "37",
            "--towns",
            "2",
            "--val-fraction",
            "0",
            "--workers",
            "1",
            "--quiet",
            "--town-blocks",
            "3",
            "3",
        ]
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """Two datasets of other towns (2 and 1 sequences), each with its latents and cache inputs
    from one tiny base model."""
    root = tmp_path_factory.mktemp("union")
    base = root / "base"
    load_model("tiny").save_pretrained(base)
    paths = {"base": base}
    for name, seed, sequences in (("a", 0, 2), ("b", 1, 1)):
        data = root / name
        _generate(data, seed, sequences)
        common = ["--data", str(data), "--init", str(base), "--no-progress"]
        train_main(["encode", *common, "--out", str(root / f"{name}_latents")])
        train_main(["encode-cache", *common, "--out", str(root / f"{name}_cache")])
        paths[name] = data
    return paths


def _union(built) -> SequenceUnion:
    return SequenceUnion([SequenceDataset(built["a"]), SequenceDataset(built["b"])])


def test_each_sequence_is_read_from_its_own_dataset(built) -> None:
    a, b = SequenceDataset(built["a"]), SequenceDataset(built["b"])
    union = SequenceUnion([a, b])
    assert len(union) == 3 and union.ids == ["0:000000", "0:000001", "1:000000"]
    np.testing.assert_array_equal(union[2].frames, b[0].frames)
    np.testing.assert_array_equal(union[1].poses, a[1].poses)
    np.testing.assert_array_equal(union.load_poses(2), b.load_poses(0))
    np.testing.assert_array_equal(union.load_frames(2, 1, 3, 5), b.load_frames(0, 1, 3, 5))
    assert union.meta(0) == a.meta(0) and union.meta(2) != a.meta(0)
    with pytest.raises(IndexError):
        union.locate(3)


def test_draws_read_the_latents_and_cache_inputs_of_their_own_dataset(built) -> None:
    union = _union(built)
    latents = LatentCacheUnion([built["a"].parent / "a_latents", built["b"].parent / "b_latents"])
    stores = CacheInputUnion([built["a"].parent / "a_cache", built["b"].parent / "b_cache"])
    pipe = with_cache_input(load_model("tiny"))
    latents.check(pipe, union)
    stores.check(pipe, union)
    own = {
        0: (
            LatentCache(built["a"].parent / "a_latents"),
            CacheInputStore(built["a"].parent / "a_cache"),
        ),
        1: (
            LatentCache(built["b"].parent / "b_latents"),
            CacheInputStore(built["b"].parent / "b_cache"),
        ),
    }
    seen = set()
    for step in range(12):
        example = latents.draw_chunk(union, step_rng(0, step), True, 0, "all")
        k, local = split_union_id(union.ids[example.sequence])
        seen.add(k)
        chunks = own[k][0].load(local)["chunks"]
        torch.testing.assert_close(
            example.latents, chunks[:, example.start // latents.stride].float()
        )
        torch.testing.assert_close(
            stores.states(union.ids[example.sequence], example.start),
            own[k][1].states(local, example.start),
        )
    assert seen == {0, 1}


def test_stores_must_match_the_datasets(built) -> None:
    union = _union(built)
    pipe = load_model("tiny")
    swapped = LatentCacheUnion([built["b"].parent / "b_latents", built["a"].parent / "a_latents"])
    with pytest.raises(ValueError, match="another dataset"):
        swapped.check(pipe, union)
    one = LatentCacheUnion([built["a"].parent / "a_latents"])
    with pytest.raises(ValueError, match="one per --data folder"):
        one.check(pipe, union)
    with pytest.raises(ValueError, match="--cache-inputs names 1 folder"):
        open_training_data([built["a"], built["b"]], "train", True, None, [built["a"]])
    data, no_latents, store = open_training_data([built["a"]], "train", True, None, [built["b"]])
    assert isinstance(data, SequenceDataset) and no_latents is None and store == built["b"]


def test_the_cli_trains_on_two_datasets(built, tmp_path) -> None:
    root = built["a"].parent
    run = tmp_path / "run"
    train_main(
        [
            "--data", str(built["a"]), str(built["b"]),
            "--out", str(run), "--stage", "stage2", "--steps", "2", "--no-progress",
            "--init", str(built["base"]), "--cache-input",
            "--latents", str(root / "a_latents"), str(root / "b_latents"),
            "--cache-inputs", str(root / "a_cache"), str(root / "b_cache"),
        ]
    )  # fmt: skip
    assert (run / "pipeline").is_dir()
    with pytest.raises(SystemExit, match="--latents names 1 folder"):
        train_main(
            [
                "--data", str(built["a"]), str(built["b"]),
                "--out", str(tmp_path / "bad"), "--stage", "stage2", "--steps", "1",
                "--init", str(built["base"]), "--latents", str(root / "a_latents"),
            ]
        )  # fmt: skip
