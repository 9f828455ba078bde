"""Speed and fidelity of the shared scene cache's forward splatting.

    python benchmarks/scene_cache_render.py                 # timing + fidelity, town seed 0
    python benchmarks/scene_cache_render.py --no-fidelity   # timing only (no town, seconds)
    python benchmarks/scene_cache_render.py --device cuda   # on a GPU

Timing: a two-agent chunk, 2 agents × 28 frames, each agent's frames rendered from 4 buffers
(its own), at 64×96 views; plus ``select`` (4 of 8 pooled buffers) per agent. Buffers use random
RGB and a flat-ground depth (geometry does not change the cost much).

Fidelity: in ``generate_town(seed)``, for several starts on the town's roads, the exact first
frame (and, for "4 buffers", also the frames 2.7, 5.3 and 8 m behind it) are cached, the car
drives 8 m forward in 28 frames, and the cache's render of frames 7/14/21/28 is compared with the
exact renderer: coverage (valid pixels) and PSNR on the covered pixels, and the PSNR of simply
repeating the first frame on the same pixels.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from shareverse_env.geometry import CameraRig, plan_chunk
from shareverse_env.scene_cache import SceneBuffer, SceneCache

HW = (64, 96)


def ground_depth(rig: CameraRig, hw: tuple[int, int]) -> np.ndarray:
    """Tiled flat-ground z-depth of a level rig (sky above the horizon)."""
    height, width = hw
    k = rig.intrinsics(height, width)
    y = (np.arange(height) + 0.5 - k[1, 2]) / k[1, 1]
    with np.errstate(divide="ignore"):
        col = np.where(y > 0, rig.mount_height / y, np.inf)
    view = np.broadcast_to(col[:, None], hw)
    return np.tile(view, (2, 2)).astype(np.float32)


def timing(device: str, repeats: int) -> None:
    rig = CameraRig()
    rng = np.random.default_rng(0)
    cache = SceneCache(rig, HW, capacity=8, device=device)
    depth = ground_depth(rig, HW)
    starts = np.array([[0.0, -1.75, 0.0], [30.0, 1.75, np.pi]])
    for a in range(2):
        for t in range(4):
            pose = plan_chunk(starts[a], np.array([-8.0 + 2.0 * t, 0.0, 0.0]))[-1]
            rgb = rng.integers(0, 256, (2 * HW[0], 2 * HW[1], 3), dtype=np.uint8)
            cache.add(SceneBuffer(rgb, depth, pose, a, t), car_poses=starts)
    plans = [plan_chunk(s, np.array([8.0, 0.0, 0.1]))[1:] for s in starts]  # 28 frames each
    own = [[0, 1, 2, 3], [4, 5, 6, 7]]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def best(fn):
        fn()
        sync()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return min(times)

    render = best(lambda: [cache.render(plans[a], own[a]) for a in range(2)])
    select = best(lambda: [cache.select(plans[a], 4) for a in range(2)])
    points = sum(len(it.points) + len(it.sky) for it in cache._items) // 8
    print(f"device {device}, torch threads {torch.get_num_threads()}, views {HW[0]}×{HW[1]}")
    print(f"points per buffer: {points}")
    print("| step | time (ms) | per tiled frame (ms) |")
    print("|---|---|---|")
    print(f"| render 2 agents × 28 frames, 4 buffers each | {1e3 * render:.1f} | "
          f"{1e3 * render / 56:.2f} |")  # fmt: skip
    print(f"| select 4 of 8 buffers, 2 agents | {1e3 * select:.1f} | - |")
    print(f"| chunk total | {1e3 * (render + select):.1f} | - |")


def _starts(town, count: int, rng: np.random.Generator) -> np.ndarray:
    roads = town.roads
    out = []
    for e in rng.permutation(len(roads.edges)):
        a, b = roads.edges[e]
        pa, pb = roads.nodes[a], roads.nodes[b]
        if rng.random() < 0.5:
            pa, pb = pb, pa
        d = pb - pa
        if np.linalg.norm(d) < 50.0:
            continue
        u = d / np.linalg.norm(d)
        xy = pa + 20.0 * u + roads.lane_offset(u)
        out.append([xy[0], xy[1], np.arctan2(u[1], u[0])])
        if len(out) == count:
            break
    return np.array(out)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def fidelity(seed: int, starts: int) -> None:
    from shareverse_env.world.generator import generate_town
    from shareverse_env.world.renderer import Renderer

    t0 = time.perf_counter()
    town = generate_town(seed)
    renderer = Renderer(town, "clear_noon", view_hw=HW)
    rig = renderer.rig
    print(f"\ntown {seed} + renderer: {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(seed)
    rows = {"1 buffer (first frame)": [], "4 buffers (0, -2.7, -5.3, -8 m)": []}
    for start in _starts(town, starts, rng):
        plan = plan_chunk(start, np.array([8.0, 0.0, 0.0]))  # 29 poses, 8 m forward
        behind = plan_chunk(start, np.array([-8.0, 0.0, 0.0]))[[0, 9, 19, 28]]
        targets = plan[[7, 14, 21, 28]]
        exact = renderer.render(targets)
        past = renderer.render(behind)
        first_rgb = past.rgb[0]
        for name, take in zip(rows, ([0], [0, 1, 2, 3]), strict=True):
            cache = SceneCache(rig, HW)
            for i in take:
                cache.add(SceneBuffer(past.rgb[i], past.depth[i], behind[i], 0, 3 - i))
            out = cache.render(targets)
            for f in range(len(targets)):
                v = out.valid[f]
                rows[name].append(
                    (
                        v.mean(),
                        _psnr(out.rgb[f][v], exact.rgb[f][v]),
                        _psnr(first_rgb[v], exact.rgb[f][v]),
                    )
                )
    print(f"8 m forward chunk, {starts} starts × frames 7/14/21/28, {HW[0]}×{HW[1]} views")
    print("| cached | coverage | PSNR covered (dB) | repeat first frame, same pixels (dB) |")
    print("|---|---|---|---|")
    for name, vals in rows.items():
        arr = np.array(vals)
        print(
            f"| {name} | {arr[:, 0].mean():.3f} | {arr[:, 1].mean():.2f} | {arr[:, 2].mean():.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--no-fidelity", action="store_true")
    args = parser.parse_args()
    timing(args.device, args.repeats)
    if not args.no_fidelity:
        fidelity(args.seed, args.starts)


if __name__ == "__main__":
    main()
