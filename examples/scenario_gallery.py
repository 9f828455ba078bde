"""Write one PNG per scenario and weather: every agent's 2×2 views at the start plus the minimap.

    python examples/scenario_gallery.py                    # → outputs/gallery/<scenario>_<weather>.png
    python examples/scenario_gallery.py --town-seed 3 --steps 1 --out /tmp/gallery

With ``--steps k`` the agents first drive k chunks along their lanes, so that they meet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from tqdm import tqdm

import shareverse_env
from shareverse_env.world.scenarios import SCENARIOS
from shareverse_env.world.weather import WEATHERS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/gallery"))
    parser.add_argument("--town-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0, help="scenario shifts")
    parser.add_argument("--steps", type=int, default=0, help="chunks to drive before the picture")
    parser.add_argument("--agents", type=int, default=2)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = shareverse_env.parallel_env(
        backend="world",  # the gallery shows the ground truth
        num_agents=args.agents,
        render_mode="rgb_array",
        max_cycles=max(args.steps, 1),
        terminate_on_collision=False,
    )
    jobs = [(s, w) for s in SCENARIOS for w in sorted(WEATHERS)]
    for scenario, weather in tqdm(jobs, desc="gallery", unit="png"):
        options = {"scenario": scenario, "weather": weather, "town_seed": args.town_seed}
        env.reset(seed=args.seed, options=options)
        for _ in range(args.steps):
            if env.agents:
                env.step({a: np.array([8.0, 0.0, 0.0], dtype=np.float32) for a in env.agents})
        path = args.out / f"{scenario}_{weather}.png"
        imageio.imwrite(path, env.render())
    env.close()
    print(f"wrote {len(jobs)} PNGs to {args.out}")


if __name__ == "__main__":
    main()
