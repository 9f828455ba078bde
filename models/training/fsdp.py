"""Sharded data parallelism (torch's FSDP2, ``torch.distributed.fsdp.fully_shard``).

Only the trained module is sharded: every transformer block, every cross-agent block and then
the transformer's root (patch and time embeddings, raymap encoder, output head) in stages 1
and 2; the VAE's encoder, decoder and quantisation convolutions in the ``vae`` stage (the loss
calls them directly, never ``vae.forward``). The frozen part stays whole on every rank.

Checkpoints keep the single-process format: the full state is gathered to rank 0's CPU with
``torch.distributed.checkpoint.state_dict`` (``full_state_dict=True, cpu_offload=True``), the
optimiser state renumbered from parameter names to the indices ``optimizer.state_dict()`` uses,
and loaded back into the shards on every rank. A run can therefore switch between ``ddp``,
``fsdp`` and one process.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from shareverse_env.models.training.config import VAE_STAGES
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor, distribute_tensor

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)

_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def broadcast_from_rank0(module: nn.Module) -> None:
    """Give every rank rank 0's weights and buffers before sharding (as DDP does)."""
    for tensor in module.state_dict().values():
        torch.distributed.broadcast(tensor, src=0)


def shard(module: nn.Module, stage: str, mixed_precision: str, device: torch.device) -> nn.Module:
    """Apply ``fully_shard`` per block of ``module`` (in place) and return it.

    ``mixed_precision`` ``bf16``/``fp16``: parameters are all-gathered in that dtype for the
    forward and backward, gradients reduced in float32; the sharded parameters, the optimiser
    and EMA stay float32.
    """
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    policy = MixedPrecisionPolicy(
        param_dtype=_DTYPES[mixed_precision],
        reduce_dtype=torch.float32 if mixed_precision != "no" else None,
    )
    options = {"mesh": mesh, "mp_policy": policy}
    if stage in VAE_STAGES:
        units = [
            getattr(module, name)
            for name in ("encoder", "decoder", "quant_conv", "post_quant_conv")
            if getattr(module, name, None) is not None
        ]
        for unit in units:
            fully_shard(unit, **options)
        covered = {id(p) for unit in units for p in unit.parameters()}
        if any(id(p) not in covered for p in module.parameters()):
            raise ValueError(
                "the VAE has parameters outside its encoder, decoder and quantisation "
                "convolutions; --parallel fsdp cannot shard them"
            )
        return module
    for block in module.transformer_blocks:
        fully_shard(block, **options)
        # Stage 2 runs the blocks over the memory frames through this method, not forward.
        register_fsdp_forward_method(block, "memory_forward")
    for block in getattr(module, "cross_agent_blocks", []):
        fully_shard(block, **options)
    fully_shard(module, **options)
    # The transformer's output is a reshaped view; the loss never modifies it in place.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    return module


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor on the CPU (an all-gather for a sharded one: call it on every rank)."""
    if isinstance(tensor, DTensor):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu().contiguous()


def local_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` cut like ``like`` (this rank's shard when ``like`` is sharded); no communication."""
    full = full.to(like.device, like.dtype)
    if isinstance(like, DTensor):
        return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)
    return full


def gather_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, names: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Full model and optimiser state dicts on rank 0's CPU (empty on the other ranks).

    Collective: every rank must call it. The optimiser state comes back in
    ``optimizer.state_dict()``'s format (parameters numbered in ``names`` order).
    """
    model_state = get_model_state_dict(module, options=_FULL)
    optim_state = get_optimizer_state_dict(module, optimizer, options=_FULL)
    if torch.distributed.get_rank() != 0:
        return {}, {}
    model_state = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
    return model_state, _names_to_indices(optim_state, names)


def load_state(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    names: list[str],
) -> None:
    """Load full state dicts (every rank holds them) into the shards. Collective."""
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(module, model_state, options=options)
    set_optimizer_state_dict(
        module, optimizer, _indices_to_names(optimizer_state, names), options=options
    )


def _names_to_indices(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    index = {name: i for i, name in enumerate(names)}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]
    return {"state": {index[n]: s for n, s in state["state"].items()}, "param_groups": groups}


def _indices_to_names(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    return {"state": {names[int(i)]: s for i, s in state["state"].items()}, "param_groups": groups}


def unsharded_copy(cls: type, module: nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A plain (unsharded) ``cls`` module holding ``state`` — for writing the EMA pipeline.

    Built on the meta device and filled by assignment, so no second random initialisation and
    no extra copy of the weights; non-persistent buffers (never sharded) come from ``module``.
    """
    with torch.device("meta"):
        copy = cls.from_config(module.config)
    copy.load_state_dict(state, strict=True, assign=True)
    for name, buffer in list(copy.named_buffers()):
        if buffer.is_meta:
            owner, _, leaf = name.rpartition(".")
            source = module.get_buffer(name).detach().cpu().clone()
            copy.get_submodule(owner)._buffers[leaf] = source
    return copy.eval()
