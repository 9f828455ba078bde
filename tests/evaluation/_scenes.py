"""Scenes for the evaluation tests: a hand-made town and a tiny rendered dataset.

The dataset is rendered by the exact renderer in a town built by hand (a flat road and two
buildings), not by ``synthesize_sequence``: a generated town takes about half a minute to render
57 frames on a CI core, this one a few seconds, and the runner tests only need real, consistent
frames, depth and poses.
"""

from __future__ import annotations

import numpy as np

from shareverse_env.data.format import (
    SequenceData,
    dataset_info,
    write_dataset_info,
    write_sequence,
)
from shareverse_env.world.renderer import Renderer
from shareverse_env.world.scene import BoxSet, GroundMap, Surface
from shareverse_env.world.town import RoadNetwork, Town

VIEW_HW = (32, 48)
"""The tiny model's view size."""


def flat_town(boxes: list[dict] | None = None, half: float = 150.0) -> Town:
    """A square of ground with a road along the x axis and the given boxes."""
    res = 0.5
    cells = int(2 * half / res)
    yc = -half + (np.arange(cells) + 0.5) * res
    surface = np.full((cells, cells), Surface.GRASS, np.uint8)
    surface[np.abs(yc) < 6.0, :] = Surface.ROAD
    rgb = np.full((cells, cells, 3), 90, np.uint8)
    rgb[surface == Surface.ROAD] = 50
    # A chequer so that the ground has texture for the metrics to see.
    xc = yc[None, :]
    rgb[((np.floor(xc / 4) + np.floor(yc[:, None] / 4)) % 2 == 0)] += 30
    ground = GroundMap((-half, -half), res, rgb, surface)
    roads = RoadNetwork(np.array([[-half, 0.0], [half, 0.0]]), np.array([[0, 1]]))
    return Town(
        seed=0,
        bounds=(-half, -half, half, half),
        roads=roads,
        ground=ground,
        boxes=BoxSet.from_rows(boxes) if boxes else BoxSet.empty(),
    )


def building(x: float, y: float, hx: float = 6.0, hy: float = 8.0, height: float = 12.0) -> dict:
    return dict(center=(x, y), half_extent=(hx, hy), z_range=(0.0, height), colour=(0.7, 0.5, 0.4))


def tiny_renderer() -> Renderer:
    """The renderer of the tiny dataset's town (a road past two buildings), 32×48 views."""
    town = flat_town([building(25.0, 16.0), building(-10.0, -15.0, 5.0, 5.0, 20.0)])
    return Renderer(town, "clear_noon", view_hw=VIEW_HW)


def write_tiny_dataset(root, num_frames: int = 57) -> SequenceData:
    """Two agents driving towards each other past a building, rendered at 32×48 views."""
    renderer = tiny_renderer()
    t = np.linspace(0.0, 1.0, num_frames)
    poses = np.zeros((2, num_frames, 3))
    poses[0, :, 0] = -20.0 + 30.0 * t
    poses[0, :, 1] = -1.75
    poses[1, :, 0] = 40.0 - 25.0 * t
    poses[1, :, 1] = 1.75
    poses[1, :, 2] = np.pi
    out = renderer.render_agents(poses)
    data = SequenceData(
        frames=out.rgb,
        depth=out.depth,
        poses=poses,
        meta={"scenario": "head_on", "weather": "clear_noon"},
    )
    write_sequence(root, "val", 0, data)
    info = dataset_info(
        num_agents=2,
        num_frames=num_frames,
        view_hw=VIEW_HW,
        splits={"val": {"sequences": 1}},
        generator={"kind": "test"},
    )
    write_dataset_info(root, info)
    return data
