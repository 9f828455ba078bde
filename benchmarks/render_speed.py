"""Speed and memory of the exact town renderer, batched over frames.

    python benchmarks/render_speed.py                       # batches 1 8 28 56, 64×96 views
    python benchmarks/render_speed.py --batches 56 --stages # where the time goes
    python benchmarks/render_speed.py --png /tmp/frames.png # also save some frames

Renders tiled 2×2 frames (four views each) of viewers driving along the town's roads, each frame
with two dynamic cars in view, on the generated town of ``--seed`` (a hand-built grid town when
the generator is unavailable). Prints, per batch size: tiled frames per second, milliseconds per
frame, and the process's peak resident memory so far (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import collections
import resource
import time

import numpy as np
import torch

from shareverse_env.world.renderer import Renderer
from shareverse_env.world.scene import BoxSet, GroundMap, Material, Surface
from shareverse_env.world.town import RoadNetwork, Town
from shareverse_env.world.vehicles import PARKED_COLOURS, car_boxes


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def hand_built_town(seed: int = 0, blocks: int = 4, block: float = 80.0, res: float = 0.2) -> Town:
    """A grid town of ``blocks``² blocks: roads with markings, buildings, trees, poles, cars."""
    rng = np.random.default_rng(seed)
    xs = (np.arange(blocks + 1) - blocks / 2) * block
    n = blocks + 1
    nodes = np.array([[x, y] for y in xs for x in xs])
    edges = [(j * n + i, j * n + i + 1) for j in range(n) for i in range(n - 1)]
    edges += [(j * n + i, (j + 1) * n + i) for j in range(n - 1) for i in range(n)]
    roads = RoadNetwork(nodes=nodes, edges=np.array(edges))
    hw, sw = roads.road_half_width, roads.sidewalk_width
    x0, size = xs[0] - 30.0, xs[-1] - xs[0] + 60.0
    g = (np.arange(int(size / res)) + 0.5) * res + x0
    gx, gy = np.meshgrid(g, g)
    dx = np.abs((gx - xs[0] + block / 2) % block - block / 2)
    dy = np.abs((gy - xs[0] + block / 2) % block - block / 2)
    inside_x = (gx >= xs[0] - hw - sw) & (gx <= xs[-1] + hw + sw)
    inside_y = (gy >= xs[0] - hw - sw) & (gy <= xs[-1] + hw + sw)
    road = ((dx <= hw) & inside_y) | ((dy <= hw) & inside_x)
    walk = (((dx <= hw + sw) & inside_y) | ((dy <= hw + sw) & inside_x)) & ~road
    surface = np.full(gx.shape, Surface.GRASS, np.uint8)
    surface[walk], surface[road] = Surface.SIDEWALK, Surface.ROAD
    rgb = np.empty((*gx.shape, 3), np.uint8)
    rgb[...] = (70, 110, 50)
    rgb[walk], rgb[road] = (165, 160, 150), (72, 72, 76)
    dash = road & (
        ((dy <= 0.075) & (dx > hw + 1) & (gx % 6 < 3))
        | ((dx <= 0.075) & (dy > hw + 1) & (gy % 6 < 3))
    )
    rgb[dash] = (230, 230, 225)
    ground = GroundMap(origin=(float(x0), float(x0)), resolution=res, rgb=rgb, surface=surface)
    facades = [(0.72, 0.66, 0.58), (0.62, 0.42, 0.35), (0.80, 0.78, 0.72), (0.55, 0.55, 0.58)]
    rows = []
    for bj in range(blocks):
        for bi in range(blocks):
            lo_x, hi_x = xs[bi] + hw + sw, xs[bi + 1] - hw - sw
            lo_y, hi_y = xs[bj] + hw + sw, xs[bj + 1] - hw - sw
            for side in range(4):
                pos = 0.0
                while pos < hi_x - lo_x - 4:
                    w = min(rng.uniform(8, 20), hi_x - lo_x - pos)
                    d, along = rng.uniform(10, 18), pos + w / 2
                    centre = [
                        (lo_x + along, lo_y + d / 2),
                        (lo_x + along, hi_y - d / 2),
                        (lo_x + d / 2, lo_y + along),
                        (hi_x - d / 2, lo_y + along),
                    ][side]
                    half = (w / 2 - 0.05, d / 2) if side < 2 else (d / 2, w / 2 - 0.05)
                    rows.append(
                        dict(
                            center=centre,
                            half_extent=half,
                            z_range=(0, rng.choice([6.5, 9.5, 12.5, 15.5, 22.0])),
                            colour=facades[rng.integers(len(facades))],
                            material=Material.FACADE,
                            seed=rng.random(),
                        )
                    )
                    pos += w
    for y in xs:
        for x in np.arange(xs[0], xs[-1], 12.0):
            if abs((x - xs[0] + block / 2) % block - block / 2) < hw + sw + 3:
                continue
            for s in (-1, 1):
                ty = y + s * (hw + sw / 2)
                rows.append(
                    dict(
                        center=(x, ty),
                        half_extent=(0.15, 0.15),
                        z_range=(0, 3.0),
                        colour=(0.35, 0.25, 0.15),
                        material=Material.POLE,
                    )
                )
                rows.append(
                    dict(
                        center=(x, ty),
                        half_extent=(1.6, 1.6),
                        yaw=0.3,
                        z_range=(2.5, 6.5),
                        colour=(0.25, 0.45, 0.18),
                        material=Material.FOLIAGE,
                        seed=rng.random(),
                    )
                )
    parked = [
        (x, y - roads.lane_width - roads.parking_width / 2, 0.0)
        for y in xs
        for x in np.arange(xs[0] + 10, xs[-1], 9.0)
        if rng.random() < 0.35
    ]
    colours = np.array(PARKED_COLOURS)[rng.integers(len(PARKED_COLOURS), size=len(parked))]
    boxes = BoxSet.concatenate([BoxSet.from_rows(rows), car_boxes(np.array(parked), colours)])
    bounds = (float(xs[0]), float(xs[0]), float(xs[-1]), float(xs[-1]))
    return Town(seed=seed, bounds=bounds, roads=roads, ground=ground, boxes=boxes)


def load_town(seed: int, kind: str) -> tuple[Town, str]:
    if kind in ("auto", "generated"):
        try:
            from shareverse_env.world.generator import generate_town
        except ImportError:
            if kind == "generated":
                raise
        else:
            return generate_town(seed), "generated"
    return hand_built_town(seed), "hand-built"


def road_poses(town: Town, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` poses in the right-hand lane of random road segments, heading along them."""
    nodes, edges = town.roads.nodes, town.roads.edges
    pick = edges[rng.integers(len(edges), size=count)]
    a, b = nodes[pick[:, 0]], nodes[pick[:, 1]]
    flip = rng.random(count) < 0.5
    a, b = np.where(flip[:, None], b, a), np.where(flip[:, None], a, b)
    s = rng.uniform(0.15, 0.85, (count, 1))
    yaw = np.arctan2(b[:, 1] - a[:, 1], b[:, 0] - a[:, 0])
    lane = town.roads.lane_width / 2
    xy = a + (b - a) * s + lane * np.stack([np.sin(yaw), -np.cos(yaw)], axis=-1)
    return np.concatenate([xy, yaw[:, None]], axis=1)


def stage_timer(renderer: Renderer) -> collections.Counter:
    """Wrap the renderer's internal stages to accumulate their wall time (seconds)."""
    totals: collections.Counter = collections.Counter()
    for name in (
        "_cull",
        "_columns",
        "_select_layers",
        "_pixels",
        "_shade",
        "_shade_ground",
        "_shade_boxes",
    ):
        method = getattr(renderer, name)

        def timed(*args, _method=method, _name=name, **kwargs):
            t0 = time.perf_counter()
            out = _method(*args, **kwargs)
            totals[_name] += time.perf_counter() - t0
            return out

        setattr(renderer, name, timed)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 28, 56])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--town", choices=("auto", "generated", "hand"), default="auto")
    parser.add_argument("--weather", default="clear_noon")
    parser.add_argument("--view-hw", type=int, nargs=2, default=(64, 96))
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent per batch size")
    parser.add_argument("--stages", action="store_true", help="print time per renderer stage")
    parser.add_argument("--png", default=None, help="save the first frames of the last batch")
    args = parser.parse_args()

    t0 = time.perf_counter()
    town, kind = load_town(args.seed, args.town)
    t1 = time.perf_counter()
    renderer = Renderer(town, args.weather, view_hw=tuple(args.view_hw))
    t2 = time.perf_counter()
    print(
        f"town: {kind} seed {args.seed}, {len(town.boxes)} boxes, ground {town.ground.shape} "
        f"@ {town.ground.resolution} m (built in {t1 - t0:.2f} s); renderer init {t2 - t1:.2f} s"
    )
    print(
        f"views {args.view_hw[0]}×{args.view_hw[1]} (tiled {2 * args.view_hw[0]}×"
        f"{2 * args.view_hw[1]}), weather {args.weather}, torch threads {torch.get_num_threads()}"
    )
    totals = stage_timer(renderer) if args.stages else None
    # One pool of viewer poses: every batch size renders the first `batch` of the same poses.
    pool = road_poses(town, max(args.batches), np.random.default_rng(args.seed))
    print(f"{'batch':>6} {'frames/s':>9} {'ms/frame':>9} {'peak RSS MiB':>13}")
    out = None
    for batch in args.batches:
        poses = pool[:batch]
        # Two other cars in every frame: 12 m ahead in the same lane and 25 m ahead oncoming.
        ahead = poses + np.stack(
            [12 * np.cos(poses[:, 2]), 12 * np.sin(poses[:, 2]), np.zeros(batch)], axis=1
        )
        oncoming = poses + np.stack(
            [
                25 * np.cos(poses[:, 2]) - 3.5 * np.sin(poses[:, 2]),
                25 * np.sin(poses[:, 2]) + 3.5 * np.cos(poses[:, 2]),
                np.full(batch, np.pi),
            ],
            axis=1,
        )
        cars = np.stack([ahead, oncoming], axis=1)
        renderer.render(poses, cars=cars)  # warm-up
        if totals is not None:
            totals.clear()
        calls, start = 0, time.perf_counter()
        while True:
            out = renderer.render(poses, cars=cars)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= args.seconds and calls >= 3:
                break
        frames = calls * batch
        print(
            f"{batch:>6} {frames / elapsed:>9.1f} {1000 * elapsed / frames:>9.2f} "
            f"{peak_rss_mib():>13.0f}"
        )
        if totals is not None:
            parts = ", ".join(f"{k.strip('_')} {1000 * v / frames:.2f}" for k, v in totals.items())
            print(f"{'':>6} ms/frame by stage: {parts}")
    if args.png and out is not None:
        import imageio.v3 as iio

        iio.imwrite(args.png, np.concatenate(list(out.rgb[:4]), axis=0))
        print(f"saved {args.png}")


if __name__ == "__main__":
    main()
