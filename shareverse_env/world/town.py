"""The town: its road network, ground raster and static boxes.

Roads are straight and axis-aligned between junction nodes; traffic keeps to the right. A road's
cross-section, from its centreline outwards on each side, is one driving lane
(``lane_width``), one parking lane (``parking_width``) and a sidewalk (``sidewalk_width``).
:func:`shareverse_env.world.generator.generate_town` builds towns from a seed.

Example:
    >>> import numpy as np
    >>> net = RoadNetwork(nodes=np.array([[0.0, 0.0], [80.0, 0.0], [0.0, 80.0]]),
    ...                   edges=np.array([[0, 1], [0, 2]]))
    >>> net.degree().tolist(), net.neighbours(0)
    ([2, 1, 1], [1, 2])
    >>> net.lane_offset(np.array([1.0, 0.0])).tolist()  # drive on the right: -y when heading +x
    [0.0, -1.75]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shareverse_env.world.scene import BoxSet, GroundMap


@dataclass(frozen=True)
class RoadNetwork:
    """Junction nodes joined by straight, axis-aligned two-way roads.

    Attributes:
        nodes: ``(K, 2)`` world xy of junction centres (and dead ends / corners).
        edges: ``(E, 2)`` node index pairs, each a road segment.
        lane_width, parking_width, sidewalk_width: cross-section in metres (per side).
    """

    nodes: np.ndarray
    edges: np.ndarray
    lane_width: float = 3.5
    parking_width: float = 2.5
    sidewalk_width: float = 3.0
    _adjacency: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes = np.asarray(self.nodes, dtype=np.float64)
        edges = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        if nodes.ndim != 2 or nodes.shape[1] != 2:
            raise ValueError(f"nodes must be (K, 2); got {nodes.shape}")
        if edges.size and (edges.min() < 0 or edges.max() >= len(nodes)):
            raise ValueError("edges reference nodes that do not exist")
        delta = nodes[edges[:, 1]] - nodes[edges[:, 0]]
        if np.any(np.all(np.abs(delta) > 1e-6, axis=1)):
            raise ValueError("every road segment must be axis-aligned")
        adjacency: list[list[int]] = [[] for _ in range(len(nodes))]
        for a, b in edges:
            adjacency[a].append(int(b))
            adjacency[b].append(int(a))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "_adjacency", tuple(tuple(sorted(n)) for n in adjacency))

    @property
    def road_half_width(self) -> float:
        """Distance from the centreline to the kerb."""
        return self.lane_width + self.parking_width

    def neighbours(self, node: int) -> list[int]:
        """Nodes joined to ``node`` by a road, in increasing index order."""
        return list(self._adjacency[node])

    def degree(self) -> np.ndarray:
        """``(K,)`` number of roads meeting at each node."""
        return np.array([len(a) for a in self._adjacency], dtype=np.int64)

    def junction_kind(self, node: int) -> str:
        """``"X"`` (4 roads), ``"T"`` (3), ``"L"`` (2, a corner or a straight joint) or ``"end"``."""
        return {4: "X", 3: "T", 2: "L"}.get(len(self._adjacency[node]), "end")

    def lane_offset(self, direction: np.ndarray) -> np.ndarray:
        """Offset from the centreline to the centre of the lane driven along ``direction``."""
        d = np.asarray(direction, dtype=np.float64)
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        right = np.stack([d[..., 1], -d[..., 0]], axis=-1)
        return right * (self.lane_width / 2)


@dataclass(frozen=True)
class Town:
    """A generated town: what the renderer draws and what rewards and scenarios consult.

    Attributes:
        seed: the generator seed (same seed, same town).
        bounds: ``(x_min, y_min, x_max, y_max)`` of the built-up area.
        roads: the road network.
        ground: the ground raster (surfaces and their colours).
        boxes: every static solid (buildings, parked cars, trees, poles).
    """

    seed: int
    bounds: tuple[float, float, float, float]
    roads: RoadNetwork
    ground: GroundMap
    boxes: BoxSet
