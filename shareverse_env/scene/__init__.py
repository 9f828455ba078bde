"""The shared 3D scene cache: every agent's frames kept as RGB-D buffers, rendered by forward
splatting into any car's planned cameras, composited over the model's frames and turned into
the model's cache input (see ``docs/scene_cache.md``). Geometry only: imports
:mod:`shareverse_env.core`, never the models or the true town.
"""

from shareverse_env.scene.cache import CacheRender, SceneBuffer, SceneCache
from shareverse_env.scene.composite import SceneCompositor
from shareverse_env.scene.depth_align import align_depth
from shareverse_env.scene.guide import cache_guide
from shareverse_env.scene.hole_fill import push_pull_fill

__all__ = [
    "CacheRender",
    "SceneBuffer",
    "SceneCache",
    "SceneCompositor",
    "align_depth",
    "cache_guide",
    "push_pull_fill",
]
