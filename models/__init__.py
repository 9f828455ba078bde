"""The ShareVerse model: denoiser, VAE helpers, sampler and loading (``shareverse_env.models``)."""

from shareverse_env.models.configs import (
    MODEL_SPECS,
    ModelSpec,
    build_scheduler,
    build_transformer,
    build_vae,
    get_spec,
)
from shareverse_env.models.transformer import MemoryContext, ShareVerseBlock, ShareVerseTransformer

__all__ = [
    "MODEL_SPECS",
    "MemoryContext",
    "ModelSpec",
    "ShareVerseBlock",
    "ShareVerseTransformer",
    "build_scheduler",
    "build_transformer",
    "build_vae",
    "get_spec",
]
