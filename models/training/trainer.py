"""The training loop: AdamW, gradient clipping, EMA, atomic checkpoints, exact resume, logs.

Run folder::

    RUN/pipeline/              the current model (EMA weights), loadable by parallel_env(model=RUN/pipeline)
    RUN/checkpoints/<stage>/   raw weights, EMA, optimiser, state.json — what resume reads
    RUN/log_<stage>.csv        step, loss, lr, grad norm, seconds per step, …
    RUN/loss_<stage>.png       the loss curve
"""

from __future__ import annotations

import copy
import csv
import gc
import json
import math
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers.training_utils import EMAModel
from shareverse_env.models.cache_input import cache_states
from shareverse_env.models.loading import load_pipeline, save_pipeline
from shareverse_env.models.lpips_net import LPIPS
from shareverse_env.models.pipeline import ShareVersePipeline
from shareverse_env.models.training import fsdp
from shareverse_env.models.training.adversarial import AdversarialTerm
from shareverse_env.models.training.batches import (
    ChunkExample,
    SequenceSource,
    draw_chunk,
    draw_vae_clips,
    step_rng,
)
from shareverse_env.models.training.cache_data import CacheNoise, chunk_cache_guide
from shareverse_env.models.training.cache_inputs import CacheInputStore
from shareverse_env.models.training.config import VAE_STAGES, TrainConfig
from shareverse_env.models.training.io import (
    load_checkpoint,
    load_checkpoint_extras,
    save_checkpoint,
)
from shareverse_env.models.training.latent_cache import LatentCache
from shareverse_env.models.training.objective import (
    diffusion_loss,
    diffusion_terms,
    draw_timesteps,
    encode_chunks,
    sampler_timesteps,
    vae_loss,
)
from shareverse_env.models.training.rollout_store import RolloutStore
from shareverse_env.models.vae import ENCODER_SIDE
from tqdm.auto import tqdm


def _distributed() -> tuple[int, int]:
    """``(rank, world_size)``; initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def finish_distributed() -> None:
    """Tear down torch.distributed at the end of a run; a no-op in a single process.

    Drop every ``Trainer`` first (``del trainer``). All ranks wait for each other, the wrapped
    modules and their pending collectives are freed, and only then is the process group
    destroyed: the other order, or leaving it to interpreter exit, can abort a gloo run with
    "terminate called without an active exception" while its worker threads still hold tensors.

    Example::

        trainer = Trainer(pipe, data, run, config)
        trainer.run()
        del trainer
        finish_distributed()
    """
    if not torch.distributed.is_initialized():
        return
    torch.distributed.barrier()
    gc.collect()
    torch.distributed.destroy_process_group()


def _rank_device(device: str, world: int) -> torch.device:
    """``device``; a bare ``cuda`` under torchrun means this process's GPU (``LOCAL_RANK``)."""
    dev = torch.device(device)
    if world > 1 and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)
    return dev


class Trainer:
    """Trains one stage of a run folder, resuming exactly where a previous call stopped.

    Example (two steps of the tiny model on a one-sequence dataset of random frames):

    >>> import tempfile
    >>> import numpy as np
    >>> from shareverse_env.data.format import (SequenceData, dataset_info,
    ...                                         write_dataset_info, write_sequence)
    >>> from shareverse_env.data.reader import SequenceDataset
    >>> from shareverse_env.models.loading import load_model
    >>> root = tempfile.mkdtemp()
    >>> frames = np.random.default_rng(0).integers(0, 256, (2, 49, 64, 96, 3), dtype=np.uint8)
    >>> depth = np.full((2, 49, 64, 96), 10.0, np.float32)
    >>> _ = write_sequence(root, "train", 0, SequenceData(frames, depth, np.zeros((2, 49, 3)), {}))
    >>> _ = write_dataset_info(root, dataset_info(num_agents=2, num_frames=49, view_hw=(32, 48),
    ...                        splits={"train": {"sequences": 1}}, generator={}))
    >>> trainer = Trainer(load_model("tiny"), SequenceDataset(root, "train"), f"{root}/run",
    ...                   TrainConfig(stage="stage1", steps=2), progress=False)
    >>> trainer.run()["step"]
    2

    ``latents``: a latent cache folder (or :class:`~.latent_cache.LatentCache`) built from
    ``data`` (a ``SequenceDataset``) with this pipeline's VAE; stage 1 and 2 then read chunk and
    memory latents instead of encoding them, and draw chunk starts on the cache's grid. The
    VAE stage ignores it.

    ``cache_inputs``: a cache-input store (:mod:`.cache_inputs`) for a model with a scene-cache
    input; without one, such a model's inputs are rendered from ``data``'s depth on the loader
    thread (:mod:`.cache_data`).

    ``config.parallel``: with several processes (torchrun), ``"ddp"`` replicates the trained
    module (DistributedDataParallel), ``"fsdp"`` shards it (:mod:`.fsdp`); one process ignores it.
    """

    def __init__(
        self,
        pipe: ShareVersePipeline,
        data: SequenceSource | None,
        run_dir: str | Path,
        config: TrainConfig,
        progress: bool = True,
        latents: str | Path | LatentCache | None = None,
        cache_inputs: str | Path | CacheInputStore | None = None,
        rollouts: str | Path | RolloutStore | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.run_dir = Path(run_dir)
        self.data = data
        self.progress = progress
        self.rank, self.world = _distributed()
        self.device = _rank_device(config.device, self.world)
        self.pipe = pipe.to(self.device)
        self.stage = config.stage
        self.trains_vae = self.stage in VAE_STAGES
        self.module = self.pipe.vae if self.trains_vae else self.pipe.transformer
        self.latents: LatentCache | None = None
        if latents is not None and not self.trains_vae:
            self.latents = latents if isinstance(latents, LatentCache) else LatentCache(latents)
            self.latents.check(self.pipe, data)
        self.sees_cache = not self.trains_vae and bool(
            self.pipe.transformer.config.cache_in_channels
        )
        if config.hole_weight != 1.0 and not self.sees_cache:
            raise ValueError(
                f"hole_weight {config.hole_weight} needs a transformer with a scene-cache input "
                "(cache_in_channels > 0; --cache-input adds one)"
            )
        self.cache_inputs: CacheInputStore | None = None
        if cache_inputs is not None and self.sees_cache:
            store = cache_inputs
            self.cache_inputs = (
                store if isinstance(store, CacheInputStore) else CacheInputStore(store)
            )
            self.cache_inputs.check(self.pipe, data)
        self.rollouts: RolloutStore | None = None
        if rollouts is not None:
            if self.trains_vae or not self.sees_cache:
                raise ValueError(
                    "rollouts train a transformer with a scene-cache input (stage 1 or 2)"
                )
            self.rollouts = (
                rollouts if isinstance(rollouts, RolloutStore) else RolloutStore(rollouts)
            )
            self.rollouts.check(self.pipe)
            if config.rollout_share < 1 and (self.latents is None or self.cache_inputs is None):
                # encode_chunks takes a batch whose chunk latents are all stored or all not.
                raise ValueError(
                    f"rollout_share {config.rollout_share} mixes rollouts with the dataset: that "
                    "needs a latent cache and a cache-input store for the dataset (or share 1)"
                )
        elif data is None:
            raise ValueError("a trainer needs a dataset, a rollout store or both")
        self.start_stride = config.start_stride or (self.latents.stride if self.latents else 1)
        if self.cache_inputs is not None:
            self.start_stride = math.lcm(self.start_stride, self.cache_inputs.stride)
        if self.latents is not None and self.start_stride % self.latents.stride:
            raise ValueError(
                f"start_stride {self.start_stride} is not a multiple of the latent cache's "
                f"stride {self.latents.stride}"
            )
        frozen = self.pipe.transformer if self.trains_vae else self.pipe.vae
        frozen.requires_grad_(False).eval()
        self.module.requires_grad_(True).train()
        if self.stage == "decoder":
            # The encoder side fixes the latent space that the transformer was trained on.
            for name in ENCODER_SIDE:
                part = getattr(self.module, name, None)
                if part is not None:
                    part.requires_grad_(False).eval()
        if config.gradient_checkpointing and hasattr(self.module, "enable_gradient_checkpointing"):
            self.module.enable_gradient_checkpointing()
        self.sharded = config.parallel == "fsdp" and self.world > 1
        self._module_cls = type(self.module)
        if self.sharded:
            fsdp.broadcast_from_rank0(self.module)
            fsdp.shard(self.module, self.stage, config.mixed_precision, self.device)
        # With FSDP these are this rank's shards (DTensors): the optimiser and the EMA work
        # shard by shard, element-wise, exactly as they would on the whole tensors.
        # The new cache projection last: its own AdamW group (config.cache_lr_scale) then
        # numbers parameters in this same order, which the FSDP checkpoint format relies on.
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        named.sort(key=lambda item: item[0].startswith("cache_embed."))
        self.params = [p for _, p in named]
        self.param_names = [n for n, _ in named]
        self.optimizer = torch.optim.AdamW(
            self._param_groups(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.99)
        )
        self.adversarial: AdversarialTerm | None = None
        if config.adversarial_weight > 0:
            if self.world > 1:
                raise ValueError("adversarial_weight > 0 trains on one process (no torchrun)")
            self.adversarial = AdversarialTerm(
                None if self.trains_vae else self.pipe.vae.config.latent_channels,
                config.adversarial_weight,
                config.discriminator_lr,
                config.discriminator_width,
                self.device,
                seed=config.seed,
            )
        self.perceptual: LPIPS | None = None
        if self.trains_vae and config.vae_perceptual_weight > 0:
            # Frozen; raises LPIPSUnavailableError (naming the extra) when the weights are absent.
            self.perceptual = LPIPS.from_installed(config.vae_perceptual_net).to(self.device)
        self.sampler_timesteps = None if self.trains_vae else sampler_timesteps(self.pipe)
        self.ema = EMAModel(self.params, decay=config.ema_decay)
        self.model = self.module
        if self.world > 1 and not self.sharded:
            self.model = torch.nn.parallel.DistributedDataParallel(self.module)
        # The VAE loss calls the encoder and decoder directly, never the wrapper's forward, so
        # DDP's hooks do not fire: average those gradients by hand (FSDP shards hook per call).
        self._manual_grad_sync = self.world > 1 and not self.sharded and self.trains_vae
        self.step = 0
        self.checkpoint_dir = self.run_dir / "checkpoints" / self.stage
        self.log_path = self.run_dir / f"log_{self.stage}.csv"
        # During run(), one thread draws the next batch while the current step runs (numpy
        # copies release the GIL); draws depend only on (seed, step, rank), so prefetching keeps
        # resume exact. The thread lives only as long as run(): none is left behind at exit.
        self._prefetcher: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future] = {}
        self._resume()
        self._truncate_log()

    def _param_groups(self) -> list[dict[str, Any]]:
        """One AdamW group, or two when the new cache projection gets its own learning rate
        (``config.cache_lr_scale``); each group's ``lr_scale`` multiplies the schedule's rate."""
        scale = self.config.cache_lr_scale
        named = list(zip(self.param_names, self.params, strict=True))
        cache = [p for n, p in named if n.startswith("cache_embed.")]
        if scale == 1.0 or not cache:
            return [{"params": self.params, "lr_scale": 1.0}]
        rest = [p for n, p in named if not n.startswith("cache_embed.")]
        return [{"params": rest, "lr_scale": 1.0}, {"params": cache, "lr_scale": scale}]

    # ------------------------------------------------------------------ state
    def _fingerprint(self) -> dict[str, Any]:
        def public(config: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
            return {k: v for k, v in config.items() if not k.startswith("_") and k not in skip}

        return {
            "stage": self.stage,
            "transformer": public(self.pipe.transformer.config),
            # The scaling factor is calibrated after the VAE stage; it is not part of identity.
            "vae": public(self.pipe.vae.config, ("scaling_factor",)),
            "view_hw": list(self.pipe.view_hw),
        }

    def _resume(self) -> None:
        if not (self.checkpoint_dir / "state.json").is_file():
            return
        model_state, ema_state, optimizer_state, state = load_checkpoint(self.checkpoint_dir)
        saved = state.get("fingerprint", {})
        mine = json.loads(json.dumps(self._fingerprint(), default=str))
        if saved != mine:
            raise ValueError(
                f"checkpoint {self.checkpoint_dir} was written for another model or stage; "
                "use a new run folder (or delete that checkpoint to restart the stage)"
            )
        if self.sharded:
            fsdp.load_state(
                self.module, self.optimizer, model_state, optimizer_state, self.param_names
            )
        else:
            self.module.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
        for shadow, name in zip(self.ema.shadow_params, self.param_names, strict=True):
            shadow.copy_(fsdp.local_like(ema_state[name], shadow))
        self.ema.optimization_step = int(state["ema_step"])
        self.step = int(state["step"])
        extras = load_checkpoint_extras(self.checkpoint_dir)
        if self.adversarial is not None and "adversarial" in extras:
            # A checkpoint of a plain run resumed with the term on starts a fresh discriminator.
            self.adversarial.load_state_dict(extras["adversarial"])

    def save(self) -> None:
        """Checkpoint (raw + EMA + optimiser) and the EMA pipeline, both atomically; rank 0 writes.

        With FSDP every rank must call it: the full state is gathered to rank 0 first.
        """
        if self.sharded:
            model_state, optimizer_state = fsdp.gather_state(
                self.module, self.optimizer, self.param_names
            )
            ema_state = dict(
                zip(self.param_names, map(fsdp.full_tensor, self.ema.shadow_params), strict=True)
            )
        if self.rank != 0:
            return
        if not self.sharded:
            model_state = {
                k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()
            }
            optimizer_state = self.optimizer.state_dict()
            ema_state = {
                n: p.detach().cpu().contiguous()
                for n, p in zip(self.param_names, self.ema.shadow_params, strict=True)
            }
        state = {
            "step": self.step,
            "ema_step": int(self.ema.optimization_step),
            "config": self.config.to_dict(),
            "fingerprint": json.loads(json.dumps(self._fingerprint(), default=str)),
        }
        extras = {"adversarial": self.adversarial.state_dict()} if self.adversarial else None
        save_checkpoint(self.checkpoint_dir, model_state, ema_state, optimizer_state, state, extras)
        if self.sharded:
            # An unsharded copy of the trained module with the EMA weights, for RUN/pipeline.
            pipe = copy.copy(self.pipe)
            ema_module = fsdp.unsharded_copy(
                self._module_cls, self.module, {**model_state, **ema_state}
            )
            setattr(pipe, "vae" if self.trains_vae else "transformer", ema_module)
            save_pipeline(pipe, self.run_dir / "pipeline")
            return
        self.ema.store(self.params)
        self.ema.copy_to(self.params)
        try:
            save_pipeline(self.pipe, self.run_dir / "pipeline")
        finally:
            self.ema.restore(self.params)

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        mp = self.config.mixed_precision
        if mp == "no":
            return nullcontext()
        dtype = torch.bfloat16 if mp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _draw(self, step: int) -> tuple[int, Any]:
        """The generator seed and the raw examples (numpy) of ``step``'s batch."""
        cfg = self.config
        rng = step_rng(cfg.seed, step, self.rank)
        seed = int(rng.integers(2**63 - 1))
        if self.trains_vae:
            return seed, draw_vae_clips(self.data, rng, cfg.batch_size, cfg.vae_clip_frames)
        with_memory = self.stage == "stage2"
        draw = self.latents.draw_chunk if self.latents is not None else draw_chunk
        examples = []
        for _ in range(cfg.batch_size):
            # The extra draw only with a rollout store: runs without one draw what they drew.
            if self.rollouts is not None and rng.random() < cfg.rollout_share:
                examples.append(self.rollouts.draw(rng))
                continue
            examples.append(
                draw(
                    self.data,
                    rng,
                    with_memory,
                    cfg.min_history,
                    cfg.memory_source,
                    self.start_stride,
                )
            )
        for k, e in enumerate(examples):  # here: the prefetch thread does it during the last step
            e.raymaps, e.memory_raymaps = self.pipe.packed_raymaps(e.poses, e.memory_poses)
            if self.sees_cache and e.cache_states is None:
                e.cache_states = self._cache_states(
                    e, np.random.default_rng([cfg.seed, step, self.rank, k])
                )
        return seed, examples

    def _cache_states(self, example: ChunkExample, rng: np.random.Generator) -> torch.Tensor:
        """The scene-cache input ``(A, 8, Cc, h, w)`` of a drawn chunk (CPU, float32): read
        from the cache-input store, or rendered from the sequence's exact depth and encoded."""
        if self.cache_inputs is not None:
            return self.cache_inputs.states(self.data.ids[example.sequence], example.start)
        seq = self.data[example.sequence]
        if getattr(seq, "depth", None) is None:
            raise ValueError(
                "this model has a scene-cache input: training it needs the dataset's depth "
                "(a SequenceDataset with frames_only=False) or a cache-input store "
                "(shareverse-train encode-cache)"
            )
        noise = CacheNoise(max_level=self.config.cache_depth_noise)
        guide = chunk_cache_guide(
            seq.frames,
            seq.depth,
            seq.poses,
            example.start,
            self.pipe.rig,
            self.pipe.view_hw,
            rng,
            noise,
            self.config.memory_source,
        )
        with torch.no_grad():
            return cache_states(guide, self.pipe.encode_frames).float().cpu()

    def _batch(self, step: int) -> tuple[int, Any]:
        pending = self._pending.pop(step, None)
        return pending.result() if pending is not None else self._draw(step)

    def _prefetch(self, step: int) -> None:
        if self._prefetcher is None:
            return
        if step < self.config.steps and step not in self._pending:
            self._pending = {step: self._prefetcher.submit(self._draw, step)}

    def loss_at(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of the batch drawn for ``step`` (deterministic in seed, step and rank)."""
        cfg = self.config
        seed, batch = self._batch(step)
        generator = torch.Generator().manual_seed(seed)
        if self.trains_vae:
            with self._autocast():
                return vae_loss(
                    self.pipe,
                    batch,
                    cfg,
                    generator,
                    self.stage == "vae",
                    self.perceptual,
                    self.adversarial,
                )
        encoded = encode_chunks(self.pipe, batch, cfg, generator)
        timesteps = draw_timesteps(
            encoded["latents"].shape[0],
            self.pipe.scheduler.config.num_train_timesteps,
            generator,
            self.sampler_timesteps,
            cfg.sampler_timestep_share,
        )
        if self.adversarial is None:
            with self._autocast():
                loss = diffusion_loss(
                    self.pipe,
                    self.model,
                    encoded,
                    generator,
                    timesteps,
                    hole_weight=cfg.hole_weight,
                )
            return loss, {}
        # The same draws as diffusion_loss makes (timesteps given, then the noise).
        noise = torch.randn(encoded["latents"].shape, generator=generator)
        with self._autocast():
            terms = diffusion_terms(
                self.pipe, self.model, encoded, timesteps, noise, cfg.hole_weight
            )
            return self.adversarial.generator_loss(
                terms.loss, terms.velocity, terms.estimate, encoded["latents"], timesteps
            )

    def train_step(self) -> dict[str, float]:
        start = time.perf_counter()
        lr = self.config.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        if self.adversarial is not None:
            self.adversarial.active = self.step >= self.config.adversarial_start
        loss, extra = self.loss_at(self.step)
        self._prefetch(self.step + 1)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {float(loss)} at step {self.step}; stopping")
        loss.backward()
        if self._manual_grad_sync:
            for param in self.params:
                if param.grad is not None:
                    torch.distributed.all_reduce(param.grad)
                    param.grad /= self.world
        # On FSDP shards (DTensors) this is the norm over all shards of all ranks.
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        grad_norm = fsdp.full_tensor(grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.params)
        if self.adversarial is not None:
            extra = {**extra, **self.adversarial.discriminator_step()}
        self.step += 1
        return {
            "step": self.step,
            "loss": loss.item(),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "seconds": time.perf_counter() - start,
            **extra,
        }

    def run(self) -> dict[str, float]:
        """Train until ``config.steps`` (or ``max_minutes``); checkpoint on time, on
        ``checkpoint_every`` and at the end."""
        cfg = self.config
        last_save = started = time.monotonic()
        row: dict[str, float] = {}
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=self.stage,
            disable=not self.progress or self.rank != 0,
        )
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
        try:
            while self.step < cfg.steps:
                row = self.train_step()
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
                if self.rank == 0 and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    self._log(row)
                out_of_time = self._out_of_time(started)
                due_time = time.monotonic() - last_save > cfg.checkpoint_minutes * 60
                due_step = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0
                if due_time or due_step or out_of_time or self.step == cfg.steps:
                    self.save()
                    self.plot()
                    last_save = time.monotonic()
                if out_of_time:
                    break
        finally:
            bar.close()
            self._pending.clear()
            self._prefetcher.shutdown(wait=True, cancel_futures=True)
            self._prefetcher = None
        return row

    def _out_of_time(self, started: float) -> bool:
        """Whether ``max_minutes`` has passed — agreed by all ranks, so none waits on the others."""
        if not self.config.max_minutes:
            return False
        late = time.monotonic() - started > self.config.max_minutes * 60
        if self.world > 1:
            flag = torch.tensor([float(late)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            late = bool(flag.item())
        return late

    # ------------------------------------------------------------------ logs
    def _truncate_log(self) -> None:
        """Drop log rows past the checkpoint: a resumed run logs those steps again."""
        if self.rank != 0 or not self.log_path.exists():
            return
        with self.log_path.open() as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            rows = [r for r in reader if int(r["step"]) <= self.step]
        with self.log_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def _log(self, row: dict[str, float]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.log_path.exists() or self.log_path.stat().st_size == 0
        if new:
            base = ["step", "loss", "lr", "grad_norm", "seconds"]
            self._fields = base + sorted(set(row) - set(base))
        elif not getattr(self, "_fields", None):
            with self.log_path.open() as f:
                self._fields = next(csv.reader(f))
        with self.log_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def plot(self) -> Path | None:
        """``RUN/loss_<stage>.png`` from the CSV log (needs matplotlib; skipped without it)."""
        if self.rank != 0 or not self.log_path.exists():
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        with self.log_path.open() as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return None
        steps = np.array([int(r["step"]) for r in rows])
        loss = np.array([float(r["loss"]) for r in rows])
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
        ax.plot(steps, loss, lw=0.6, alpha=0.4, label="loss")
        window = max(1, len(loss) // 50)
        if window > 1:
            smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, lw=1.5, label=f"mean of {window}")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale(
            "log" if loss.min() > 0 and loss.max() / max(loss.min(), 1e-12) > 20 else "linear"
        )
        ax.set_title(f"{self.stage}: {self.run_dir.name}")
        ax.legend()
        fig.tight_layout()
        out = self.run_dir / f"loss_{self.stage}.png"
        tmp = out.with_suffix(".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(out)
        return out


def open_run_pipeline(run_dir: Path, init: str | None, **load: Any) -> ShareVersePipeline:
    """The run's current model: ``RUN/pipeline`` if present, else built from ``init``."""
    from shareverse_env.models.loading import from_cogvideox, is_pipeline_folder, load_model

    current = Path(run_dir) / "pipeline"
    if is_pipeline_folder(current):
        return load_pipeline(current)
    if init is None:
        raise ValueError(f"{run_dir} has no pipeline yet: pass --init (a config name or folder)")
    if init.startswith("cogvideox:"):
        return from_cogvideox(init.split(":", 1)[1], **load)
    return load_model(init)


def with_cache_input(pipe: ShareVersePipeline) -> ShareVersePipeline:
    """``pipe`` with a scene-cache input (``cache_in_channels`` = latent channels + 3) whose
    new weights start at zero; ``pipe`` itself when it already has one.

    Example:
        >>> from shareverse_env.models.loading import load_model
        >>> with_cache_input(load_model("tiny")).transformer.config.cache_in_channels
        7
    """
    from shareverse_env.models.cache_input import cache_in_channels

    if pipe.transformer.config.cache_in_channels:
        return pipe
    channels = cache_in_channels(pipe.vae.config.latent_channels)
    return ShareVersePipeline(
        pipe.transformer.with_cache_input(channels),
        pipe.vae,
        pipe.scheduler,
        pipe.view_hw,
        rig=pipe.rig,
        num_inference_steps=pipe.num_inference_steps,
        guidance_scale=pipe.guidance_scale,
    )
