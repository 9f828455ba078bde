"""Atomic folders and the training checkpoint (safetensors + JSON + weights-only torch files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shareverse_env.core.files import atomic_folder


def save_checkpoint(
    folder: Path,
    weights: dict[str, torch.Tensor],
    ema: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    extras: dict[str, Any] | None = None,
) -> None:
    """The trained module's state dict and its EMA weights (safetensors, CPU tensors), the
    optimiser state (``optimizer.state_dict()``'s format) and a JSON state; ``extras``
    (state dicts of helpers such as a discriminator) as a weights-only torch file."""
    with atomic_folder(folder) as tmp:
        save_file(weights, tmp / "model.safetensors")
        save_file(ema, tmp / "ema.safetensors")
        torch.save(optimizer_state, tmp / "optimizer.pt")
        if extras:
            torch.save(extras, tmp / "extras.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def load_checkpoint_extras(folder: Path) -> dict[str, Any]:
    """The ``extras`` a checkpoint was saved with (``{}`` when it has none)."""
    path = Path(folder) / "extras.pt"
    if not path.is_file():
        return {}
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:
        raise ValueError(f"checkpoint {folder} is damaged: {err}") from err


def load_checkpoint(folder: Path) -> tuple[dict, dict, dict, dict[str, Any]]:
    """``(model_state, ema_state, optimizer_state, state)``; a clear error for damaged files."""
    folder = Path(folder)
    needed = ["model.safetensors", "ema.safetensors", "optimizer.pt", "state.json"]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {folder} is missing {', '.join(missing)}")
    try:
        model_state = load_file(folder / "model.safetensors")
        ema_state = load_file(folder / "ema.safetensors")
        optimizer_state = torch.load(folder / "optimizer.pt", weights_only=True)
        state = json.loads((folder / "state.json").read_text())
    except Exception as err:  # any decoding failure means the checkpoint is damaged
        raise ValueError(f"checkpoint {folder} is damaged: {err}") from err
    return model_state, ema_state, optimizer_state, state
