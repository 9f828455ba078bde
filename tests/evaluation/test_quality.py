"""The quality runner on a tiny rendered dataset with the random ``tiny`` model.

A model chunk costs seconds on a CI core (mostly the VAE decoder), so the real model runs once
(the ``trained`` variant and both repeat baselines over two chunks); the other model variants
are checked through their weights and through the runner with generation stubbed out.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from shareverse_env.models.loading import load_model

from shareverse_env.data.reader import SequenceDataset
from shareverse_env.evaluation import quality
from shareverse_env.evaluation.metrics import psnr, ssim_tiled
from shareverse_env.evaluation.overlap import covisibility_masks
from shareverse_env.evaluation.quality import (
    PSNR_CAP_DB,
    QualityResult,
    autoencode_chunk,
    dataset_rig,
    evaluate_quality,
)
from shareverse_env.evaluation.report import compare, conclusions, summary_markdown
from shareverse_env.evaluation.variants import (
    VARIANTS,
    build_pipelines,
    cross_agent_projection_names,
    random_like,
    zero_cross_agent,
)
from shareverse_env.generative_backend import ShareVerseBackend

RUN_VARIANTS = ["trained", "repeat", "repeat_oracle"]


def _trained_like(seed: int = 0):
    """The tiny random model with non-zero cross-agent projections, as after training."""
    pipe = load_model("tiny", seed=seed)
    pipe.num_inference_steps = 1  # the mechanics under test do not need more
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in pipe.transformer.named_parameters():
            if name in cross_agent_projection_names(pipe):
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return _trained_like()


@pytest.fixture(scope="module")
def stored(tiny_dataset):
    """The sequence as the runner reads it (depth is stored as float16)."""
    return SequenceDataset(tiny_dataset[0], "val")[0]


@pytest.fixture(scope="module")
def run(tiny_dataset, pipe):
    root, _ = tiny_dataset
    return evaluate_quality(root, "val", model=pipe, variants=RUN_VARIANTS, progress=False)


def test_result_structure(run, stored) -> None:
    assert run.num_chunks == 2 and run.variants == RUN_VARIANTS
    assert len(run.rows) == len(RUN_VARIANTS) * 2 * 2  # variants × agents × chunks
    keys = {(r.variant, r.agent, r.chunk) for r in run.rows}
    assert keys == {(v, a, k) for v in RUN_VARIANTS for a in (0, 1) for k in (0, 1)}
    for r in run.rows:
        assert r.sequence == "000000" and r.scenario == "head_on" and r.frames == 28
        assert 0 < r.psnr <= PSNR_CAP_DB and -1 <= r.ssim <= 1
        assert 0 < r.overlap_fraction < 1 and np.isfinite(r.psnr_overlap)
    summary = run.summary()
    assert list(summary) == RUN_VARIANTS
    assert {"psnr", "ssim", "psnr_overlap", "ssim_overlap", "psnr_chunk0", "psnr_chunk1"} <= set(
        summary["trained"]
    )
    assert run.samples["variant"] == "trained" and run.samples["sequence"] == "000000"
    assert run.samples["generated"].shape == (2, 56, 64, 96, 3)
    assert np.array_equal(run.samples["truth"], stored.frames[:, 1:57])


def test_repeat_scores_equal_a_direct_computation(run, stored) -> None:
    data = stored
    masks = covisibility_masks(data.depth, data.poses)
    for r in run.rows:
        if r.variant not in ("repeat", "repeat_oracle"):
            continue
        window = slice(1 + 28 * r.chunk, 29 + 28 * r.chunk)
        start = 0 if r.variant == "repeat" else 28 * r.chunk
        truth = data.frames[r.agent, window]
        guess = np.broadcast_to(data.frames[r.agent, start], truth.shape)
        mask = masks[r.agent, window]
        assert r.psnr == pytest.approx(psnr(guess, truth, max_db=PSNR_CAP_DB).mean())
        assert r.ssim == pytest.approx(ssim_tiled(guess, truth).mean())
        assert r.psnr_overlap == pytest.approx(
            np.nanmean(psnr(guess, truth, mask=mask, max_db=PSNR_CAP_DB))
        )
        assert r.overlap_fraction == pytest.approx(mask.mean())
    # Chunk 0 of both baselines repeats the same true frame; chunk 1 does not.
    rep, oracle = run.values("repeat", "psnr"), run.values("repeat_oracle", "psnr")
    chunk = np.array([r.chunk for r in run.rows if r.variant == "repeat"])
    assert np.allclose(rep[chunk == 0], oracle[chunk == 0])
    assert not np.allclose(rep[chunk == 1], oracle[chunk == 1])


def test_no_cross_agent_differs_only_by_zeroed_projections(pipe) -> None:
    ablated = zero_cross_agent(pipe)
    names = set(cross_agent_projection_names(pipe))
    assert len(names) == 2 * len(pipe.transformer.cross_agent_blocks)
    before, after = pipe.transformer.state_dict(), ablated.transformer.state_dict()
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == names
    assert all(not after[k].any() for k in names)
    assert all(before[k].any() for k in names)  # the original is untouched
    vae_a, vae_b = pipe.vae.state_dict(), ablated.vae.state_dict()
    assert all(torch.equal(vae_a[k], vae_b[k]) for k in vae_a)


def test_zeroed_projections_make_the_agents_independent(pipe) -> None:
    """With cross-agent attention off, generating two agents together equals one at a time."""
    ablated = zero_cross_agent(pipe).transformer
    gen = torch.Generator().manual_seed(0)
    cfg = ablated.config
    x = torch.randn(1, 2, 8, cfg.in_channels, 8, 12, generator=gen)
    rays = torch.randn(1, 2, 8, cfg.raymap_channels, 8, 12, generator=gen)
    t = torch.tensor([500])
    with torch.no_grad():
        joint = ablated(x, t, raymaps=rays).sample
        alone = [ablated(x[:, a : a + 1], t, raymaps=rays[:, a : a + 1]).sample for a in (0, 1)]
        coupled = pipe.transformer(x, t, raymaps=rays).sample
        coupled_alone = pipe.transformer(x[:, :1], t, raymaps=rays[:, :1]).sample
    assert torch.allclose(joint, torch.cat(alone, dim=1), atol=1e-5)
    assert not torch.allclose(coupled[:, :1], coupled_alone, atol=1e-5)


def test_every_model_variant_gets_the_same_noise(tiny_dataset, pipe, monkeypatch) -> None:
    """The runner seeds every model variant alike (generation stubbed out: only the plumbing)."""
    seen: dict[str, list] = {}

    def fake_generate(self, poses, active):
        state = self._generator.get_state()
        for name, p in pipes.items():
            if p is self.pipeline and VARIANTS[name].memory_source == self.memory_source:
                seen.setdefault(name, []).append(state)
        return np.zeros((len(poses), 28, *self.frame_shape), np.uint8)

    names = ["trained", "no_memory", "no_cross_agent", "untrained"]
    pipes = {}
    real_build = build_pipelines

    def spy_build(model, wanted, seed=0):
        pipes.update(real_build(model, wanted, seed))
        return pipes

    monkeypatch.setattr(ShareVerseBackend, "generate", fake_generate)
    monkeypatch.setattr(quality, "build_pipelines", spy_build)
    result = evaluate_quality(tiny_dataset[0], "val", model=pipe, variants=names, progress=False)
    assert result.variants == names and len(result.rows) == 4 * 2 * 2
    assert sorted(seen) == sorted(names)
    for name in names:
        assert len(seen[name]) == 2  # one generate call per chunk
        assert torch.equal(seen[name][0], seen["trained"][0])


def test_teacher_forced_variant_conditions_on_the_true_frames(
    tiny_dataset, pipe, stored, monkeypatch
) -> None:
    conditioning: dict[str, list[np.ndarray]] = {}

    def fake_generate(self, poses, active):
        key = "teacher_forced" if self.teacher_forced_run else "trained"
        conditioning.setdefault(key, []).append(self.conditioning_frames)
        return np.zeros((len(poses), 28, *self.frame_shape), np.uint8)

    real_condition_on = ShareVerseBackend.condition_on

    def spy_condition_on(self, frames):
        self.teacher_forced_run = True
        real_condition_on(self, frames)

    monkeypatch.setattr(ShareVerseBackend, "teacher_forced_run", False, raising=False)
    monkeypatch.setattr(ShareVerseBackend, "generate", fake_generate)
    monkeypatch.setattr(ShareVerseBackend, "condition_on", spy_condition_on)
    names = ["trained", "teacher_forced"]
    evaluate_quality(tiny_dataset[0], "val", model=pipe, variants=names, progress=False)
    for k in range(2):
        assert np.array_equal(conditioning["teacher_forced"][k], stored.frames[:, 28 * k])
    # Without teacher forcing nothing replaces the backend's own frame (the stub generates
    # nothing, so it stays the first one).
    assert all(np.array_equal(c, stored.frames[:, 0]) for c in conditioning["trained"])
    assert not np.array_equal(stored.frames[:, 0], stored.frames[:, 28])
    assert "teacher_forced" not in quality.DEFAULT_VARIANTS
    assert build_pipelines(pipe, names)["teacher_forced"] is pipe


def test_sampler_steps_reach_the_backend(tiny_dataset, pipe, monkeypatch) -> None:
    steps_seen = []

    def fake_generate(self, poses, active):
        steps_seen.append(self.num_inference_steps)
        return np.zeros((len(poses), 28, *self.frame_shape), np.uint8)

    monkeypatch.setattr(ShareVerseBackend, "generate", fake_generate)
    root = tiny_dataset[0]
    result = evaluate_quality(
        root, "val", model=pipe, variants=["trained"], progress=False, num_inference_steps=3
    )
    assert steps_seen == [3, 3] and result.config["num_inference_steps"] == 3
    assert "at 3 sampler steps" in summary_markdown(result, "cmd")
    assert pipe.num_inference_steps == 1  # the caller's pipeline is left as it was
    with pytest.raises(ValueError, match="num_inference_steps must be >= 1"):
        evaluate_quality(root, "val", model=pipe, progress=False, num_inference_steps=0)


def test_untrained_and_no_memory_variants(pipe) -> None:
    fresh = random_like(pipe, seed=3)
    assert dict(fresh.transformer.config) == dict(pipe.transformer.config)
    assert dict(fresh.vae.config) == dict(pipe.vae.config)
    w_fresh = fresh.transformer.state_dict()
    w_pipe = pipe.transformer.state_dict()
    assert not torch.equal(w_fresh["proj_out.weight"], w_pipe["proj_out.weight"])
    assert all(not w_fresh[k].any() for k in cross_agent_projection_names(fresh))
    pipes = build_pipelines(pipe, ["trained", "no_memory", "untrained", "repeat"])
    assert pipes["no_memory"] is pipes["trained"] is pipe and "repeat" not in pipes
    assert VARIANTS["no_memory"].memory_source == "none"
    assert VARIANTS["trained"].memory_source == "all"


def test_autoencoder_reference(pipe, stored) -> None:
    out = autoencode_chunk(pipe, stored.frames[:, :5])  # 1 + 4 frames: one latent group
    assert out.shape == (2, 4, 64, 96, 3) and out.dtype == np.uint8
    one = autoencode_chunk(pipe, stored.frames[:1, :5])  # agents are encoded independently
    assert np.abs(one.astype(int) - out[:1]).max() <= 1


def test_results_round_trip_through_csv_and_json(run, tmp_path) -> None:
    with open(run.to_csv(tmp_path / "results.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(run.rows)
    assert {r["variant"] for r in rows} == set(RUN_VARIANTS)
    assert float(rows[0]["psnr"]) == pytest.approx(run.rows[0].psnr, rel=1e-5)
    back = QualityResult.from_json(run.to_json(tmp_path / "results.json"))
    assert len(back.rows) == len(run.rows)
    assert back.summary()["trained"]["psnr"] == pytest.approx(run.summary()["trained"]["psnr"])
    run.save_samples(tmp_path / "samples.npz")
    back.load_samples(tmp_path / "samples.npz")
    assert np.array_equal(back.samples["generated"], run.samples["generated"])


def test_report_is_computed_from_the_numbers(run) -> None:
    c = compare(run, "repeat_oracle", "repeat", "psnr")
    assert c["n"] == 4 and c["diff"] == pytest.approx(c["mean_first"] - c["mean_second"])
    text = summary_markdown(run, "python scripts/evaluate_quality.py")
    assert "| trained |" in text and "| repeat_oracle |" in text
    lines = conclusions(run)
    assert "trained beats the repeat baseline" in lines[0] and "sign test" in lines[0]
    assert all("not measured" in line for line in lines[1:4])  # those variants did not run
    assert lines[4].startswith("- *For reference*, trained vs repeat_oracle")
    assert len(lines) == 5  # no autoencoder line: it did not run


def test_baselines_need_no_model(tiny_dataset) -> None:
    root, _ = tiny_dataset
    result = evaluate_quality(
        root, "val", model=None, variants=["repeat"], num_chunks=1, progress=False
    )
    assert len(result.rows) == 2 and result.num_chunks == 1


def test_bad_arguments_are_named(tiny_dataset, tmp_path) -> None:
    root, _ = tiny_dataset
    with pytest.raises(ValueError, match="unknown variants"):
        evaluate_quality(root, "val", variants=["best"], progress=False)
    with pytest.raises(ValueError, match="no complete sequences"):
        evaluate_quality(root, "test", variants=["repeat"], progress=False)


def test_dataset_rig_is_checked(tiny_dataset) -> None:
    root, _ = tiny_dataset
    dataset = SequenceDataset(root, "val")
    rig = dataset_rig(dataset)
    assert np.allclose(dataset.info["intrinsics"], rig.intrinsics(32, 48))
    dataset.info = {
        **dataset.info,
        "intrinsics": (2 * np.array(dataset.info["intrinsics"])).tolist(),
    }
    with pytest.raises(ValueError, match="intrinsics"):
        dataset_rig(dataset)
    assert math.isfinite(rig.mount_height)
