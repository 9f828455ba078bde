"""The quality runner on a tiny rendered dataset with the random ``tiny`` model.

A model chunk costs seconds on a CI core (mostly the VAE decoder), so the real model runs once
(the ``trained`` variant, the floors and the oracle over two chunks, with both action probes);
the other model variants are checked through their weights and through the runner with
generation stubbed out.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from _scenes import tiny_renderer
from shareverse_env.models.loading import load_model

from shareverse_env.backends.generative import ShareVerseBackend
from shareverse_env.data.reader import SequenceDataset
from shareverse_env.evaluation import quality
from shareverse_env.evaluation.action_probes import probe_plan, render_truth
from shareverse_env.evaluation.floors import blur_sigma, blur_views, mean_colour_views
from shareverse_env.evaluation.lpips import (
    LPIPSUnavailableError,
    lpips_available,
    lpips_tiled,
)
from shareverse_env.evaluation.metrics import psnr, ssim_tiled
from shareverse_env.evaluation.overlap import covisibility_masks
from shareverse_env.evaluation.quality import (
    PSNR_CAP_DB,
    QualityResult,
    autoencode_chunk,
    autoencode_image,
    best_floor,
    dataset_rig,
    evaluate_quality,
)
from shareverse_env.evaluation.report import compare, conclusions, summary_markdown
from shareverse_env.evaluation.variants import (
    VARIANTS,
    Variant,
    build_pipelines,
    cross_agent_projection_names,
    random_like,
    zero_cross_agent,
)

RUN_VARIANTS = [
    "trained",
    "repeat",
    "repeat_blur",
    "repeat_autoencoded",
    "mean_colour",
    "repeat_oracle",
]


def _trained_like(seed: int = 0):
    """The tiny random model with non-zero cross-agent and raymap projections, as after
    training (a fresh model's zero raymap projection would make it ignore the plan)."""
    pipe = load_model("tiny", seed=seed)
    pipe.num_inference_steps = 1  # the mechanics under test do not need more
    gen = torch.Generator().manual_seed(seed)
    names = set(cross_agent_projection_names(pipe))
    with torch.no_grad():
        for name, param in pipe.transformer.named_parameters():
            if name in names or name.startswith("raymap_encoder.outputs"):
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return _trained_like()


@pytest.fixture(scope="module")
def stored(tiny_dataset):
    """The sequence as the runner reads it (depth is stored as float16)."""
    return SequenceDataset(tiny_dataset[0], "val")[0]


def _renderer_for(data):
    return tiny_renderer()


@pytest.fixture(scope="module")
def run(tiny_dataset, pipe):
    root, _ = tiny_dataset
    return evaluate_quality(
        root, "val", model=pipe, variants=RUN_VARIANTS, progress=False, renderer_for=_renderer_for
    )


def test_result_structure(run, stored) -> None:
    assert run.num_chunks == 2 and run.variants == RUN_VARIANTS
    assert len(run.rows) == len(RUN_VARIANTS) * 2 * 2  # variants × agents × chunks
    keys = {(r.variant, r.agent, r.chunk) for r in run.rows}
    assert keys == {(v, a, k) for v in RUN_VARIANTS for a in (0, 1) for k in (0, 1)}
    for r in run.rows:
        assert r.sequence == "000000" and r.scenario == "head_on" and r.frames == 28
        assert 0 < r.psnr <= PSNR_CAP_DB and -1 <= r.ssim <= 1
        assert 0 < r.overlap_fraction < 1 and np.isfinite(r.psnr_overlap)
        # LPIPS is scored where its weights are installed (32×48 views are large enough).
        assert run.config["lpips"] == lpips_available()
        assert (0 <= r.lpips < 1) if run.config["lpips"] else math.isnan(r.lpips)
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
        if run.config["lpips"]:
            assert r.lpips == pytest.approx(lpips_tiled(guess, truth).mean())
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


def test_backend_options_reach_every_model_backend(tiny_dataset, pipe, monkeypatch) -> None:
    """``backend_options`` are given to every model variant's backend and recorded; the keys
    the runner sets per variant, and unknown keys, are refused before anything runs."""
    anchors = []
    real_init = ShareVerseBackend.__init__

    def spy_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        anchors.append(self.colour_anchor)

    monkeypatch.setattr(ShareVerseBackend, "__init__", spy_init)
    names = ["trained", "trained_cache"]
    result = evaluate_quality(
        tiny_dataset[0],
        "val",
        model=pipe,
        variants=names,
        progress=False,
        probes=(),
        num_chunks=1,
        backend_options={"colour_anchor": 0.5},
    )
    assert anchors == [0.5] * len(names) * len(result.config["sequences"])
    assert result.config["backend_options"] == {"colour_anchor": 0.5}
    anchors.clear()
    for bad, kind, error in (
        ({"scene_cache": False}, ValueError, "set by the quality runner per variant"),
        ({"colour_anchr": 1.0}, ValueError, "colour_anchor"),
        ({"colour_anchor": "strong"}, TypeError, "colour_anchor"),
        ([("colour_anchor", 1.0)], TypeError, "must be a mapping"),
    ):
        with pytest.raises(kind, match=error):
            evaluate_quality(
                tiny_dataset[0],
                "val",
                model=pipe,
                variants=names,
                progress=False,
                probes=(),
                backend_options=bad,
            )
    assert anchors == []  # refused before any backend was built


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

    def spy_build(model, wanted, seed=0, cache_model=None):
        pipes.update(real_build(model, wanted, seed, cache_model))
        return pipes

    monkeypatch.setattr(ShareVerseBackend, "generate", fake_generate)
    monkeypatch.setattr(quality, "build_pipelines", spy_build)
    result = evaluate_quality(
        tiny_dataset[0], "val", model=pipe, variants=names, progress=False, probes=()
    )
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
    evaluate_quality(tiny_dataset[0], "val", model=pipe, variants=names, progress=False, probes=())
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
        root,
        "val",
        model=pipe,
        variants=["trained"],
        progress=False,
        num_inference_steps=3,
        probes=(),
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


def test_a_new_model_variant_runs_the_trained_pipeline_by_its_field_alone(
    pipe, monkeypatch
) -> None:
    # A variant declared in VARIANTS with no `weights` runs the model under test: nothing else
    # in the runner has to learn its name.
    extra = Variant("trained_own", "trained model, own memory only", memory_source="own")
    monkeypatch.setitem(VARIANTS, extra.name, extra)
    assert build_pipelines(pipe, ["trained_own"])["trained_own"] is pipe
    with pytest.raises(ValueError, match="weights must be one of"):
        Variant("odd", "a variant with unknown weights", weights="imagined")


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
    assert "| **best floor** |" in text and "response still" in text
    lines = conclusions(run)
    assert "trained beats the best floor" in lines[0] and "sign test" in lines[0]
    for metric in ("psnr", "ssim"):  # each metric is judged against its own best floor
        assert f"vs {best_floor(run, metric)}, {metric} " in lines[0]
    assert all("not measured" in line for line in lines[1:4])  # those variants did not run
    assert lines[4].startswith("- **(d) trained follows the action**")
    assert "still: response" in lines[4] and "lateral: response" in lines[4]
    assert lines[5].startswith("- *For reference*, trained vs repeat ")
    assert lines[6].startswith("- *For reference*, trained vs repeat_oracle")
    assert len(lines) == 7  # no autoencoder line: it did not run


def test_lpips_on_off_or_where_installed(tiny_dataset, monkeypatch) -> None:
    from shareverse_env.models import lpips_net

    root, _ = tiny_dataset
    off = evaluate_quality(
        root, "val", variants=["repeat"], num_chunks=1, progress=False, probes=(), lpips=False
    )
    assert off.config["lpips"] is False and all(math.isnan(r.lpips) for r in off.rows)
    assert quality.use_lpips(None, (16, 16)) is False  # too small for AlexNet: skipped
    monkeypatch.setattr(lpips_net, "WEIGHTS_PACKAGE", "no_such_lpips_weights_package")
    assert quality.use_lpips(None, (64, 96)) is False
    with pytest.raises(LPIPSUnavailableError, match=r"shareverse_env\[lpips\]"):
        evaluate_quality(root, "val", variants=["repeat"], progress=False, probes=(), lpips=True)
    monkeypatch.undo()
    if lpips_available():
        with pytest.raises(ValueError, match="at least 31×31"):
            quality.use_lpips(True, (16, 16))


def test_baselines_need_no_model(tiny_dataset) -> None:
    root, _ = tiny_dataset
    result = evaluate_quality(
        root,
        "val",
        model=None,
        variants=["repeat", "repeat_blur", "mean_colour"],
        num_chunks=1,
        progress=False,
        renderer_for=_renderer_for,
    )
    assert len(result.rows) == 6 and result.num_chunks == 1


def test_probes_need_the_town(tiny_dataset) -> None:
    """The tiny dataset's town is hand-made: without a renderer the probes refuse, and say how
    to skip them."""
    root, _ = tiny_dataset
    with pytest.raises(ValueError, match=r"town.*probes=\(\)"):
        evaluate_quality(root, "val", model=None, variants=["repeat"], progress=False)
    with pytest.raises(ValueError, match="unknown action probes"):
        evaluate_quality(root, "val", variants=["repeat"], probes=["left"], progress=False)
    result = evaluate_quality(root, "val", variants=["repeat"], probes=(), progress=False)
    assert all(math.isnan(r.change_still) for r in result.rows)
    assert math.isnan(result.summary()["repeat"]["response"])


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


# ------------------------------------------------------------------ floors and action probes


def _direct_scores(guess: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    return (
        float(psnr(guess, truth, max_db=PSNR_CAP_DB).mean()),
        float(ssim_tiled(guess, truth).mean()),
    )


def test_model_rows_equal_a_direct_computation_on_the_samples(run, stored) -> None:
    """The trained rows score the very frames the runner kept (not a baseline's)."""
    generated = run.samples["generated"]
    for r in run.rows:
        if r.variant != "trained":
            continue
        window = slice(28 * r.chunk, 28 * (r.chunk + 1))
        guess, truth = generated[r.agent, window], stored.frames[r.agent, 1:][window]
        psnr_db, ssim_value = _direct_scores(guess, truth)
        assert r.psnr == pytest.approx(psnr_db) and r.ssim == pytest.approx(ssim_value)
    # The random model is far from the truth and from repeating the first frame.
    repeat = run.summary()["repeat"]["psnr"]
    assert run.summary()["trained"]["psnr"] < repeat - 3


def test_floor_rows_equal_a_direct_computation(run, stored, pipe) -> None:
    first = stored.frames[:, 0]
    floors = {
        "repeat_blur": [blur_views(first, blur_sigma(k)) for k in (0, 1)],
        "mean_colour": [mean_colour_views(first)] * 2,
        "repeat_autoencoded": [autoencode_image(pipe, first)] * 2,
    }
    assert blur_sigma(0) != blur_sigma(1)  # the blur grows after the first chunk
    for r in run.rows:
        if r.variant not in floors:
            continue
        truth = stored.frames[r.agent, 1 + 28 * r.chunk : 29 + 28 * r.chunk]
        guess = np.broadcast_to(floors[r.variant][r.chunk][r.agent], truth.shape)
        psnr_db, ssim_value = _direct_scores(guess, truth)
        assert r.psnr == pytest.approx(psnr_db) and r.ssim == pytest.approx(ssim_value)
    # Each floor is a different frame, none the sharp first frame.
    assert not np.array_equal(floors["repeat_blur"][0], first)
    assert not np.array_equal(floors["repeat_autoencoded"][0], first)
    assert len(np.unique(floors["mean_colour"][0][0].reshape(-1, 3), axis=0)) <= 4


def test_best_floor_is_the_highest_floor(run) -> None:
    summary = run.summary()
    floors = ["repeat", "repeat_blur", "repeat_autoencoded", "mean_colour"]
    for metric in ("psnr", "ssim"):
        best = best_floor(run, metric)
        assert best in floors
        assert summary[best][metric] == max(summary[f][metric] for f in floors)
    assert (
        best_floor(QualityResult(rows=[r for r in run.rows if r.variant == "trained"]), "psnr")
        is None
    )


def test_probe_truth_is_the_renderer_at_the_probe_plan(stored) -> None:
    renderer = tiny_renderer()
    # The renderer reproduces the dataset at the true plan, so a true change is the action's.
    assert np.array_equal(render_truth(renderer, stored.poses[:, :29]), stored.frames[:, :29])
    still = render_truth(renderer, probe_plan("still", stored.poses[:, :29]))
    assert np.array_equal(still[:, 5], stored.frames[:, 0])


def test_action_sensitivity_tells_a_model_that_follows_from_one_that_ignores(run) -> None:
    summary = run.summary()
    for floor in ("repeat", "repeat_blur", "repeat_autoencoded", "mean_colour", "repeat_oracle"):
        rows = [r for r in run.rows if r.variant == floor]
        assert all(r.change_still == 0 and r.follow_lateral == 0 for r in rows)
        assert summary[floor]["response"] == 0 and summary[floor]["follow"] == 0
    rows = [r for r in run.rows if r.variant == "trained"]
    assert all(r.true_change_still > 1 and r.true_change_lateral > 1 for r in rows)
    # The random model sees the plan through its raymaps and its memory: its chunk changes.
    assert all(r.change_still > 0 and r.change_lateral > 0 for r in rows)
    assert summary["trained"]["response"] > 0


def test_a_model_blind_to_the_plan_scores_zero_response(tiny_dataset) -> None:
    """Without raymaps (a fresh encoder's zero projection) and without memory the model cannot
    see the plan: the probes must say so, exactly."""
    blind = load_model("tiny", seed=0)
    blind.num_inference_steps = 1
    result = evaluate_quality(
        tiny_dataset[0],
        "val",
        model=blind,
        variants=["no_memory"],
        num_chunks=1,
        progress=False,
        renderer_for=_renderer_for,
    )
    stats = result.summary()["no_memory"]
    assert stats["response"] == 0 and stats["follow"] == 0
    assert all(r.true_change_still > 1 for r in result.rows)


def test_probes_leave_the_episode_as_it_was(tiny_dataset, pipe) -> None:
    """A probe runs on a branch: the committed chunks equal those of a run without probes."""
    with_probes = evaluate_quality(
        tiny_dataset[0],
        "val",
        model=pipe,
        variants=["trained"],
        progress=False,
        renderer_for=_renderer_for,
    )
    without = evaluate_quality(
        tiny_dataset[0], "val", model=pipe, variants=["trained"], progress=False, probes=()
    )
    assert np.array_equal(with_probes.samples["generated"], without.samples["generated"])


def test_cache_conditioned_variant_runs_the_second_model(tiny_dataset, pipe) -> None:
    from shareverse_env.models.training.trainer import with_cache_input

    with pytest.raises(ValueError, match="needs cache_model"):
        build_pipelines(pipe, ["cache_conditioned"])
    with pytest.raises(ValueError, match="no scene-cache input"):
        build_pipelines(pipe, ["cache_conditioned"], cache_model=pipe)
    cached = with_cache_input(pipe)
    root, _ = tiny_dataset
    result = evaluate_quality(
        root,
        "val",
        model=pipe,
        variants=["trained_cache", "cache_conditioned"],
        num_chunks=1,
        sequences=1,
        progress=False,
        probes=(),
        cache_model=cached,
    )
    rows = {r.variant: r for r in result.rows}
    # Zero-initialised cache weights: the same frames as the shipped-style model with the cache.
    assert rows["cache_conditioned"].psnr == rows["trained_cache"].psnr


def test_region_scores_are_the_masked_psnr_of_the_first_frames_holes(
    tiny_dataset, run, stored
) -> None:
    from shareverse_env.evaluation.regions import first_frame_regions

    rig = dataset_rig(SequenceDataset(tiny_dataset[0], "val"))
    plans = [stored.poses[:, 28 * k : 28 * k + 29] for k in range(run.num_chunks)]
    regions = first_frame_regions(
        stored.frames[:, 0], stored.depth[:, 0], stored.poses[:, 0], plans, rig
    )
    row = next(r for r in run.rows if r.variant == "repeat" and r.chunk == 1 and r.agent == 0)
    holes, cars = regions[1][0][0], regions[1][1][0]
    assert 0 < row.hole_fraction == pytest.approx(float(holes.mean()))
    assert cars.any() and (holes | ~cars).all()  # the cars are part of the holes
    truth = stored.frames[0, 29:57]
    first = np.repeat(stored.frames[0, :1], 28, axis=0)
    expected = np.nanmean(psnr(first, truth, mask=holes, max_db=60.0))
    assert row.psnr_holes == pytest.approx(expected)
    summary = run.summary()
    assert not math.isnan(summary["trained"]["seam"])


def test_cache_fill_keeps_the_cache_and_fills_from_it(tiny_dataset, stored) -> None:
    """``cache_fill`` shows the cache where ``cache_only`` does, and every filled pixel is a
    blend of its view's covered colours (push-pull averages, it invents nothing)."""
    from shareverse_env.core.tiling import untile_views
    from shareverse_env.evaluation.quality import start_episode

    rig = dataset_rig(SequenceDataset(tiny_dataset[0], "val"))
    plan = stored.poses[:, :29]
    fill = start_episode(VARIANTS["cache_fill"], stored, rig=rig).chunk(0, plan, None)
    only_episode = start_episode(VARIANTS["cache_only"], stored, rig=rig)
    only = only_episode.chunk(0, plan, None)
    new = plan[:, 1:]
    renders = only_episode.scene.render(new, [0, 1])
    for agent, render in enumerate(renders):
        deep = only_episode.scene.weights(render, new, agent) == 1
        assert deep.any() and (~deep).any()
        np.testing.assert_array_equal(fill[agent][deep], only[agent][deep])
        covered = render.valid & ~only_episode.scene.car_masks(new, agent)
        views = untile_views(fill[agent]).astype(int)  # (F, 4, H, W, 3)
        keep = untile_views(covered[..., None])[..., 0]
        for f, view in np.ndindex(*keep.shape[:2]):
            inside = views[f, view][keep[f, view]]
            if len(inside):
                holes = views[f, view][~keep[f, view]]
                assert (holes >= inside.min(0) - 1).all() and (holes <= inside.max(0) + 1).all()
