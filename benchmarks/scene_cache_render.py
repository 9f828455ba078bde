"""Speed and fidelity of the shared scene cache's forward splatting.

    python benchmarks/scene_cache_render.py                 # timing + fidelity, town seed 0
    python benchmarks/scene_cache_render.py --no-fidelity   # timing only (no town, seconds)
    python benchmarks/scene_cache_render.py --device cuda   # on a GPU

Timing: a two-agent chunk, 2 agents × 28 frames, each agent's frames rendered from 4 buffers
(its own), at 64×96 views; plus a selection (4 of 8 pooled buffers) per agent, by each method of
:data:`SELECT_METHODS`: ``SceneCache.select`` (coverage) and two alternatives it was chosen
over, kept here for the comparison (:func:`select_marginal`, :func:`select_eq3`).
Buffers use random RGB and a flat-ground depth (geometry does not change the cost much).

Fidelity: in ``generate_town(seed)``, for several starts on the town's roads, the exact first
frame (and, for "4 buffers", also the frames 2.7, 5.3 and 8 m behind it) are cached, the car
drives 8 m forward in 28 frames, and the cache's render of frames 7/14/21/28 is compared with the
exact renderer: coverage (valid pixels) and PSNR on the covered pixels, and the PSNR of simply
repeating the first frame on the same pixels.

Selection (with the fidelity part): at the same starts, 8 buffers are cached, some useful and
some not: the first frame, frames 0.7, 2.7 and 30 m behind it (the agent's own), frames 6 and
12 m ahead facing back (another agent coming the other way), and two frames at other starts
(elsewhere in the town). Each selection method picks k = 2 (and 3) of them for the
8 m forward chunk; frames 7/14/21/28 rendered from those two are compared with the exact
renderer: coverage, PSNR on the covered pixels, and PSNR of the whole frame with the holes
filled by the first frame; "picks" names the chosen buffers per start.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from shareverse_env.core.geometry import CameraRig, check_finite_poses, plan_chunk
from shareverse_env.memory import sample_query_positions
from shareverse_env.scene.cache import SceneBuffer, SceneCache

HW = (64, 96)

SELECT_METHODS: tuple[str, ...] = ("coverage", "marginal", "eq3")
"""The buffer selections compared: ``SceneCache.select`` and the two alternatives below."""


def select_marginal(cache: SceneCache, poses: np.ndarray, k: int) -> np.ndarray:
    """Greedy selection: each next buffer adds the most pixels of the downsampled planned views
    (those of ``SceneCache.coverage``) that the ones picked so far leave uncovered (ties: higher
    own coverage, then newer). Once no buffer adds a pixel, the rest follow in coverage order, so
    that up to ``k`` are still returned."""
    k = min(int(k), len(cache))
    masks = cache._coverage_masks(check_finite_poses(poses), 2, 4)
    cov = masks.mean(axis=1)
    order = np.lexsort((-np.arange(len(cov)), -cov))  # coverage desc, then newest first
    covered = np.zeros(masks.shape[1], dtype=bool)
    picked: list[int] = []
    while len(picked) < k:
        gain = np.array([(m & ~covered).sum() for m in masks])
        gain[picked] = -1
        best = max(order, key=lambda i: gain[i])  # first of the maxima in coverage order
        if gain[best] <= 0:
            break
        picked.append(int(best))
        covered |= masks[best]
    picked += [int(i) for i in order if int(i) not in picked][: k - len(picked)]
    return np.array(picked, dtype=np.int64)


def select_eq3(cache: SceneCache, poses: np.ndarray, k: int) -> np.ndarray:
    """The paper's Eq. 3 retrieval applied to the cache: for each of ``k`` query positions
    spaced evenly by arc length along the planned path (``sample_query_positions``), the buffer
    whose pose is nearest in ``(x, y)`` (ties: the older one); duplicates dropped, then filled
    up to ``k`` by the buffers nearest the last planned pose. Needs no rendering."""
    poses = check_finite_poses(poses)
    if poses.ndim != 2 or not len(poses):
        raise ValueError(f"poses must have shape (F, 3) with F ≥ 1; got {poses.shape}")
    k = min(int(k), len(cache))
    if k == 0:
        return np.zeros(0, np.int64)
    xy = np.array([b.pose[:2] for b in cache.buffers])  # (B, 2)
    queries = sample_query_positions(poses, k)
    d2 = ((queries[:, None, :] - xy[None]) ** 2).sum(-1)  # (Q, B)
    picked = list(dict.fromkeys(int(i) for i in d2.argmin(axis=1)))  # first minimum
    last = ((xy - poses[-1, :2]) ** 2).sum(-1)
    rest = [int(i) for i in np.argsort(last, kind="stable") if int(i) not in picked]
    return np.array((picked + rest)[:k], dtype=np.int64)


def select_by(cache: SceneCache, poses: np.ndarray, k: int, method: str) -> np.ndarray:
    """Up to ``k`` buffer indices for the planned ``poses`` by ``method`` (:data:`SELECT_METHODS`)."""
    if method == "coverage":
        return cache.select(poses, k)
    if method == "marginal":
        return select_marginal(cache, poses, k)
    if method == "eq3":
        return select_eq3(cache, poses, k)
    raise ValueError(f"method must be one of {SELECT_METHODS}; got {method!r}")


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
    by_method = {
        m: best(lambda m=m: [select_by(cache, plans[a], 4, m) for a in range(2)])
        for m in SELECT_METHODS
        if m != "coverage"  # the default: timed above
    }
    points = sum(len(it.points) + len(it.sky) for it in cache._items) // 8
    print(f"device {device}, torch threads {torch.get_num_threads()}, views {HW[0]}×{HW[1]}")
    print(f"points per buffer: {points}")
    print("| step | time (ms) | per tiled frame (ms) |")
    print("|---|---|---|")
    print(f"| render 2 agents × 28 frames, 4 buffers each | {1e3 * render:.1f} | "
          f"{1e3 * render / 56:.2f} |")  # fmt: skip
    print(f"| select 4 of 8 buffers, 2 agents, method 'coverage' | {1e3 * select:.1f} | - |")
    for m, t in by_method.items():
        print(f"| select 4 of 8, 2 agents, method {m!r} | {1e3 * t:.1f} | - |")
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


def selection(seed: int, starts: int, k: int = 2) -> None:
    from shareverse_env.world.generator import generate_town
    from shareverse_env.world.renderer import Renderer

    town = generate_town(seed)
    renderer = Renderer(town, "clear_noon", view_hw=HW)
    rig = renderer.rig
    rng = np.random.default_rng(seed)
    all_starts = _starts(town, starts + 2, rng)
    rows: dict[str, list] = {m: [] for m in SELECT_METHODS}
    picks: dict[str, list] = {m: [] for m in SELECT_METHODS}
    names = ["first", "-0.7 m", "-2.7 m", "-30 m", "+6 m back", "+12 m back", "other", "other"]
    for s_i in range(starts):
        start = all_starts[s_i]
        plan = plan_chunk(start, np.array([8.0, 0.0, 0.0]))
        targets = plan[[7, 14, 21, 28]]
        behind = plan_chunk(start, np.array([-30.0, 0.0, 0.0]))
        back = [behind[0], plan_chunk(start, np.array([-0.7, 0.0, 0.0]))[-1]]
        back += [plan_chunk(start, np.array([-2.7, 0.0, 0.0]))[-1], behind[-1]]
        ahead = [
            plan_chunk(start, np.array([d, 0.0, 0.0]))[-1] + [0.0, 0.0, np.pi] for d in (6, 12)
        ]
        others = [p for j, p in enumerate(all_starts) if j != s_i][-2:]
        poses = np.array(back + ahead + list(others))
        agents = [0, 0, 0, 0, 1, 1, 1, 1]
        frames = renderer.render(poses)
        exact = renderer.render(targets)
        cache = SceneCache(rig, HW, capacity=8)
        for i in np.argsort([3, 2, 1, 0, 4, 5, 6, 7], kind="stable"):  # oldest first
            cache.add(SceneBuffer(frames.rgb[i], frames.depth[i], poses[i], agents[i], int(i)))
        order = [b.time for b in cache.buffers]  # buffer index -> row of `poses`
        for m in SELECT_METHODS:
            sel = select_by(cache, plan, k, m)
            picks[m].append(" & ".join(names[order[i]] for i in sel))
            out = cache.render(targets, sel)
            for f in range(len(targets)):
                v = out.valid[f]
                filled = np.where(v[..., None], out.rgb[f], frames.rgb[0])
                rows[m].append(
                    (v.mean(), _psnr(out.rgb[f][v], exact.rgb[f][v]), _psnr(filled, exact.rgb[f]))
                )
    print(f"\nselection: k = {k} of 8 buffers, {starts} starts × frames 7/14/21/28")
    print("| method | coverage | PSNR covered (dB) | PSNR, holes = first frame (dB) | picks |")
    print("|---|---|---|---|---|")
    for m, vals in rows.items():
        arr = np.array(vals)
        print(
            f"| {m} | {arr[:, 0].mean():.3f} | {arr[:, 1].mean():.2f} | {arr[:, 2].mean():.2f} "
            f"| {'; '.join(picks[m])} |"
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
        for k in (2, 3):
            selection(args.seed, args.starts, k)


if __name__ == "__main__":
    main()
