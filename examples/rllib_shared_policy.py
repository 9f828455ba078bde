"""Train one shared driving policy for every car with RLlib's PPO (new API stack, Ray >= 2.40).

RLlib pins its own Gymnasium, so install it in its own virtual environment, not in the
project's development one (docs/ecosystem.md):

    python -m venv .venv-rllib && . .venv-rllib/bin/activate
    pip install torch==2.13.0 "ray[rllib]>=2.40" -e .

Then:

    python examples/rllib_shared_policy.py                    # 3 iterations on this machine
    python examples/rllib_shared_policy.py --iterations 50 --env-runners 4
    python examples/rllib_shared_policy.py --address auto     # on a running Ray cluster

The env is the exact renderer (``backend="world"``, fast) with small observations: the project's
``ResizeObservation`` and ``GrayscaleObservation`` wrappers turn the tiled 128×192 RGB frame into
a 32×48 grayscale one, and :class:`RLlibObservations` below scales it to float32 in [0, 1] and
drops the chunk's 28 frames from the infos (RLlib keeps every step's infos in its episodes).
RLlib's ``ParallelPettingZooEnv`` adapts the PettingZoo ``ParallelEnv``; every agent maps to the
one module ``"shared"`` (parameter sharing), whose CNN gets explicit ``conv_filters`` because
RLlib's defaults only know square images.

On a cluster (``--address auto`` connects to the one started with ``ray start --head``), every
node that runs env runners needs this package installed the same way (or pass
``--working-dir .`` to ship the checkout with Ray's runtime environment: the package is then
imported from the shipped folder).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import gymnasium
import numpy as np
from pettingzoo.utils.wrappers import BaseParallelWrapper
from shareverse_env.wrappers import GrayscaleObservation, ResizeObservation

import shareverse_env

ENV_NAME = "shareverse_world"
MODULE_ID = "shared"


class RLlibObservations(BaseParallelWrapper):
    """float32 observations in ``[0, 1]``; infos without the per-frame ``"frames"`` array.

    Example:
        >>> import shareverse_env
        >>> env = RLlibObservations(shareverse_env.parallel_env(backend="world"))
        >>> obs, infos = env.reset(seed=0)
        >>> obs["agent_0"].dtype.name, "frames" in infos["agent_0"]
        ('float32', False)
    """

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self._spaces = {
            a: gymnasium.spaces.Box(0.0, 1.0, env.observation_space(a).shape, np.float32)
            for a in env.possible_agents
        }

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = self.env.reset(seed=seed, options=options)
        return self._scale(obs), self._strip(infos)

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        return self._scale(obs), rewards, terms, truncs, self._strip(infos)

    @staticmethod
    def _scale(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {a: o.astype(np.float32) / 255.0 for a, o in obs.items()}

    @staticmethod
    def _strip(infos: dict[str, dict]) -> dict[str, dict]:
        return {a: {k: v for k, v in i.items() if k != "frames"} for a, i in infos.items()}


def make_env(config: dict[str, Any]) -> Any:
    """The RLlib env: the world backend, small grayscale observations, clipped actions."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    env = shareverse_env.parallel_env(
        backend="world",
        num_agents=config.get("num_agents", 2),
        max_cycles=config.get("max_cycles", 4),
        # One town keeps resets cheap: its renderer is built once per env runner.
        town_seed=config.get("town_seed", 0),
        # RLlib samples from an unbounded Gaussian; clip instead of rejecting.
        invalid_action="clip",
    )
    env = GrayscaleObservation(ResizeObservation(env, tuple(config.get("obs_hw", (32, 48)))))
    return ParallelPettingZooEnv(RLlibObservations(env))


def build_config(args: argparse.Namespace) -> Any:
    """PPO with one module shared by all agents, sized for the small observations."""
    from ray.rllib.algorithms.ppo import PPOConfig

    env_config = {
        "num_agents": args.agents,
        "max_cycles": args.max_cycles,
        "town_seed": args.town_seed,
        "obs_hw": (32, 48),
    }
    return (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(ENV_NAME, env_config=env_config)
        .env_runners(num_env_runners=args.env_runners, num_envs_per_env_runner=1)
        .multi_agent(
            policies={MODULE_ID},
            policy_mapping_fn=lambda agent_id, episode, **kwargs: MODULE_ID,
        )
        .rl_module(
            model_config={
                # [channels, kernel, stride], "same" padding: 32×48 → 16×24 → 8×12 → 4×6.
                "conv_filters": [[16, [4, 4], 2], [32, [4, 4], 2], [64, [4, 4], 2]],
                "conv_activation": "relu",
                "head_fcnet_hiddens": [64],
                "vf_share_layers": True,
            }
        )
        .training(
            train_batch_size_per_learner=args.batch,
            minibatch_size=max(args.batch // 4, 8),
            num_epochs=args.epochs,
            lr=3e-4,
            gamma=0.95,
        )
        .debugging(seed=args.seed)
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=3, help="PPO training iterations")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address: 'auto' joins the running cluster, 'ray://host:10001' a "
        "remote one; default: start Ray on this machine",
    )
    parser.add_argument("--working-dir", default=None, help="ship this folder to the cluster")
    parser.add_argument("--env-runners", type=int, default=0, help="0: sample in the driver")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--max-cycles", type=int, default=4, help="chunks per episode")
    parser.add_argument("--town-seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64, help="env steps per iteration")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def episode_return_mean(result: dict[str, Any]) -> float:
    """Mean return (summed over agents) of the iteration's finished episodes; NaN if none."""
    value = result.get("env_runners", {}).get("episode_return_mean", math.nan)
    return float(value) if value is not None else math.nan


def main(argv: list[str] | None = None) -> list[float]:
    """Train for ``--iterations``; print and return each iteration's mean episode return."""
    import ray
    from ray.tune.registry import register_env

    args = parse_args(argv)
    runtime_env = {"working_dir": args.working_dir} if args.working_dir else None
    ray.init(address=args.address, runtime_env=runtime_env, ignore_reinit_error=True)
    register_env(ENV_NAME, make_env)
    config = build_config(args)
    # build_algo() replaced build() in later 2.4x releases; keep both working.
    algo = config.build_algo() if hasattr(config, "build_algo") else config.build()
    returns = []
    try:
        for iteration in range(1, args.iterations + 1):
            start = time.perf_counter()
            result = algo.train()
            returns.append(episode_return_mean(result))
            steps = result.get("env_runners", {}).get("num_env_steps_sampled_lifetime", "?")
            print(
                f"iteration {iteration}: episode_return_mean {returns[-1]:.3f} "
                f"(env steps so far {steps}, {time.perf_counter() - start:.1f} s)",
                flush=True,
            )
    finally:
        algo.stop()
        if args.address is None:
            ray.shutdown()
    return returns


if __name__ == "__main__":
    main()
