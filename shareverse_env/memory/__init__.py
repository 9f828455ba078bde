"""The paper's spatial memory (Sec. 3.4, Eq. 3): every generated frame's latent archived with its
pose, agent and time, and retrieved by the nearest archived pose to points sampled on a planned
trajectory. Serves the generative backend and training.
"""

from shareverse_env.memory.spatial import SOURCES, Retrieval, SpatialMemory, sample_query_positions

__all__ = ["SOURCES", "Retrieval", "SpatialMemory", "sample_query_positions"]
