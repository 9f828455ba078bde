"""Latent cache: cached batches equal on-the-fly ones, training from it resumes exactly, a cache
of another VAE or dataset is refused, and an interrupted build encodes only what is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.batches import draw_chunk, step_rng
from shareverse_env.models.training.latent_cache import (
    LatentCache,
    build_latent_cache,
    open_latent_cache,
)
from shareverse_env.models.training.objective import encode_chunks

from shareverse_env.cli.train import main as train_main
from shareverse_env.core.files import exclusive_writer
from shareverse_env.data import SequenceDataset
from shareverse_env.data.format import (
    SequenceData,
    dataset_info,
    frames_file,
    write_dataset_info,
    write_sequence,
)

FRAMES = 41  # chunk starts 0, 4, 8, 12 on the default grid; stage 2 (history ≥ 8) uses 8, 12


def write_dataset(root: Path, seed: int, sequences: int = 2, agents: int = 2) -> Path:
    """Coloured noise drifting over time, agents driving straight (tiny: 64×96 tiled frames)."""
    rng = np.random.default_rng(seed)
    write_dataset_info(
        root,
        dataset_info(
            num_agents=agents,
            num_frames=FRAMES,
            view_hw=(32, 48),
            splits={"train": {"sequences": sequences}},
            generator={"seed": seed, "sequences": sequences},
        ),
    )
    for index in range(sequences):
        base = rng.integers(0, 255, (agents, 1, 64, 96, 3))
        drift = np.arange(FRAMES)[None, :, None, None, None] * 3
        poses = np.zeros((agents, FRAMES, 3))
        poses[:, :, 0] = np.arange(FRAMES)[None] * 0.5 + rng.uniform(0, 5)
        poses[:, :, 1] = np.arange(agents)[:, None] * 4.0
        frames = ((base + drift) % 255).astype(np.uint8)
        depth = np.full((agents, FRAMES, 64, 96), 10.0, np.float32)
        write_sequence(root, "train", index, SequenceData(frames, depth, poses, {"seed": seed}))
    return root


def tiny(seed: int = 0) -> ShareVersePipeline:
    return ShareVersePipeline.from_config_name("tiny", seed=seed)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("latents")
    data = write_dataset(base / "data", seed=0)
    report = build_latent_cache(data, tiny(), base / "cache", progress=False)
    assert report.encoded == ["000000", "000001"] and not report.skipped
    return data, base / "cache"


def make_trainer(run: Path, data: Path, stage: str, steps: int, cache: Path | None, **kw):
    cfg = TrainConfig(stage=stage, steps=steps, lr=3e-3, warmup_steps=0, **kw)
    dataset = SequenceDataset(data, "train", frames_only=True)
    pipe = (
        ShareVersePipeline.from_pretrained(run / "pipeline")
        if (run / "pipeline").is_dir()
        else tiny()
    )
    return Trainer(pipe, dataset, run, cfg, progress=False, latents=cache)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_cached_batches_equal_the_ones_encoded_on_the_fly(built, stage: str) -> None:
    data_root, folder = built
    pipe, data = tiny(), SequenceDataset(data_root, "train", frames_only=True)
    cache = open_latent_cache(folder, pipe, data)
    cfg = TrainConfig(stage=stage)
    with_memory = stage == "stage2"
    for step in range(4):
        fly = draw_chunk(data, step_rng(0, step), with_memory, 8, "all", start_stride=4)
        hit = cache.draw_chunk(data, step_rng(0, step), with_memory, 8, "all")
        assert (fly.sequence, fly.start) == (hit.sequence, hit.start) and hit.start % 4 == 0
        a = encode_chunks(pipe, [fly], cfg, torch.Generator().manual_seed(step))
        b = encode_chunks(pipe, [hit], cfg, torch.Generator().manual_seed(step))
        # Chunks are encoded in the same batch (all agents of one start): bitwise equal.
        for key in ("latents", "image_latents", "raymaps"):
            assert torch.equal(a[key], b[key]), key
        if with_memory:
            assert torch.equal(a["memory_raymaps"], b["memory_raymaps"])
            # Single images are batched differently (whole sequences vs 4 per agent).
            torch.testing.assert_close(a["memory"], b["memory"], rtol=1e-5, atol=1e-5)
        else:
            assert a["memory"] is None and b["memory"] is None


def test_the_trainer_with_a_cache_computes_the_same_loss(built, tmp_path: Path) -> None:
    data, folder = built
    fly = make_trainer(tmp_path / "a", data, "stage1", 2, None, start_stride=4)
    hit = make_trainer(tmp_path / "b", data, "stage1", 2, folder)
    assert hit.start_stride == 4 and hit.latents is not None
    with torch.no_grad():
        assert float(fly.loss_at(3)[0]) == float(hit.loss_at(3)[0])


def test_training_from_the_cache_runs_and_resumes_exactly(built, tmp_path: Path) -> None:
    data, folder = built
    straight = make_trainer(tmp_path / "a", data, "stage2", 4, folder)
    with torch.no_grad():
        before = float(straight.loss_at(0)[0])
    straight.run()
    first = make_trainer(tmp_path / "b", data, "stage2", 2, folder)
    first.run()
    resumed = make_trainer(tmp_path / "b", data, "stage2", 4, folder)
    assert resumed.step == 2
    resumed.run()
    for (name, a), (_, b) in zip(
        straight.module.state_dict().items(), resumed.module.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    with torch.no_grad():
        after = float(straight.loss_at(0)[0])
        assert float(straight.loss_at(4)[0]) == float(resumed.loss_at(4)[0])
    assert np.isfinite(after) and after < before, (before, after)


def test_a_cache_of_another_vae_or_dataset_is_refused(built, tmp_path: Path) -> None:
    data_root, folder = built
    data = SequenceDataset(data_root, "train", frames_only=True)
    with pytest.raises(ValueError, match=r"another VAE.*sha256 [0-9a-f]{12}.*model's VAE"):
        open_latent_cache(folder, tiny(seed=1), data)
    rescaled = tiny()
    rescaled.vae.register_to_config(scaling_factor=0.5)
    with pytest.raises(ValueError, match="another VAE"):
        open_latent_cache(folder, rescaled, data)
    with pytest.raises(ValueError, match="another VAE"):  # nor is it extended with another VAE
        build_latent_cache(data_root, tiny(seed=1), folder, progress=False)
    other_root = write_dataset(tmp_path / "other", seed=1)
    other = SequenceDataset(other_root, "train", frames_only=True)
    with pytest.raises(ValueError, match=rf"another dataset.*{data_root}.*{other_root}"):
        open_latent_cache(folder, tiny(), other)
    # The VAE stage trains the VAE itself: it ignores the cache.
    vae_trainer = Trainer(tiny(), data, tmp_path / "run", TrainConfig(stage="vae"), latents=folder)
    assert vae_trainer.latents is None


def test_a_retrained_decoder_keeps_the_cache(built) -> None:
    data_root, folder = built
    data = SequenceDataset(data_root, "train", frames_only=True)
    pipe = tiny()
    with torch.no_grad():
        for param in pipe.vae.decoder.parameters():
            param.add_(0.01)
    open_latent_cache(folder, pipe, data)  # cached latents come from the encoder side alone
    with torch.no_grad():
        next(pipe.vae.encoder.parameters()).add_(0.01)
    with pytest.raises(ValueError, match="another VAE"):
        open_latent_cache(folder, pipe, data)


def test_re_rendered_frames_invalidate_their_sequence(built, tmp_path: Path) -> None:
    # Same seeds and poses, other pixels (a changed renderer): the cached latents are stale.
    data_root, folder = built
    copy_data, copy_cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(data_root, copy_data)
    shutil.copytree(folder, copy_cache)
    dataset = SequenceDataset(copy_data, "train", frames_only=True)
    frames_path = copy_data / "train" / "000001" / frames_file(1)
    frames = np.load(frames_path)
    frames[5, 10, 20] ^= 1  # one pixel of one frame of one agent
    np.save(frames_path, frames)
    with pytest.raises(ValueError, match="000001"):
        open_latent_cache(copy_cache, tiny(), dataset)
    report = build_latent_cache(copy_data, tiny(), copy_cache, progress=False)
    assert report.encoded == ["000001"] and report.skipped == ["000000"]
    open_latent_cache(copy_cache, tiny(), dataset)


def test_an_interrupted_build_encodes_only_what_is_missing(built, tmp_path: Path) -> None:
    data, folder = built
    copy = tmp_path / "cache"
    shutil.copytree(folder, copy)
    (copy / "000001.safetensors").unlink()
    (copy / ".000001.safetensors.x1y2.tmp").write_bytes(b"half")  # left by a killed write
    with pytest.raises(ValueError, match=r"lacks 1 of the 2 sequences.*000001"):
        open_latent_cache(copy, tiny(), SequenceDataset(data, "train", frames_only=True))
    report = build_latent_cache(data, tiny(), copy, progress=False)
    assert report.encoded == ["000001"] and report.skipped == ["000000"]
    assert not list(copy.glob(".*.tmp"))
    again, reference = LatentCache(copy).load("000001"), LatentCache(folder).load("000001")
    for key in ("chunks", "images"):
        assert torch.equal(again[key], reference[key]), key
    assert again["chunks"].shape == (2, 4, 4, 8, 8, 12)  # (A, starts, C, latent frames, h, w)
    assert again["images"].shape == (2, FRAMES, 4, 8, 12)


def test_a_concurrent_build_is_refused_and_changes_nothing(built, tmp_path: Path) -> None:
    data, folder = built
    copy = tmp_path / "cache"
    shutil.copytree(folder, copy)
    (copy / "000001.safetensors").unlink()
    writing = copy / ".000001.safetensors.a1b2.tmp"  # the other builder's file in progress
    writing.write_bytes(b"half")
    with exclusive_writer(copy, "latent cache"):  # the other builder
        with pytest.raises(RuntimeError, match="is being written by another process"):
            build_latent_cache(data, tiny(), copy, progress=False)
        argv = ["encode", "--data", str(data), "--init", "tiny", "--out", str(copy)]
        with pytest.raises(SystemExit, match="is being written by another process"):
            train_main(argv)  # the CLI says so in one line
    assert writing.exists() and not (copy / "000001.safetensors").exists()


def test_cli_encode_then_train_from_the_cache(built, tmp_path: Path) -> None:
    data, _ = built
    cache, run = tmp_path / "cache", tmp_path / "run"
    train_main(["encode", "--data", str(data), "--init", "tiny", "--out", str(cache)])
    train_main(["encode", "--data", str(data), "--init", "tiny", "--out", str(cache)])  # no-op
    common = ["--data", str(data), "--out", str(run), "--steps", "1", "--no-progress"]
    train_main([*common, "--stage", "stage2", "--init", "tiny", "--latents", str(cache)])
    assert (run / "log_stage2.csv").read_text().count("\n") == 2
