"""Train a driving policy with PPO on the world backend, then evaluate it in both backends.

One shared CNN actor-critic (``shareverse_env.policies.actor_critic``) drives every car
(parameter sharing: all agents' transitions train the same network). By default
(``--observation dict``) it reads :class:`~shareverse_env.wrappers.DictObservation`'s
observation: the tiled 128×192 frame of the car's four cameras through the CNN, plus its speed,
its goal and the next ``--route-points`` points of its route in the ego frame (the route is
what a driver is given; where the other cars are, it must see in the images).
``--observation image`` trains on the image alone. PPO as in CleanRL's continuous PPO: clipped
surrogate objective, GAE(λ) per agent trajectory (time-limit truncations bootstrap from V(s),
terminations do not), value loss, entropy bonus, several epochs of minibatches, Adam with a
linearly decaying learning rate and gradient clipping.

Before PPO, the network's mean is fitted to the route-following expert's actions in
``--bc-episodes 200`` training episodes (behaviour cloning, a warm start; ``--bc-episodes 0``
runs PPO from the random network): PPO alone, with the small steering noise a whole-chunk pose
delta needs, learned a better constant action rather than steering (docs/tutorial_ppo.md).

Episodes are short: goals ``--goal-distance 60 90`` metres of driving away (the env's default
is 140–220 m) and at most ``--max-cycles 6`` chunks, so that a goal is reachable in 3–5
chunks. The envs keep only each chunk's last frame (``chunk_frames="last"``: the policy sees
nothing else), so the world backend renders one frame per step instead of 28.

Training runs on the exact renderer (``backend="world"``) in a pool of ``--train-towns``
(town, weather) pairs, one env each so that every renderer is built once; scenarios and start
shifts are drawn per episode. Evaluation uses held-out episode seeds (1,000,000,000 + k, which
also draw towns outside the pool) on

* the world backend: the trained policy (deterministic mean action), random, still, the
  route-following expert and, for reference, the untrained network (its mean action is
  11.5 m straight ahead) and the network after behaviour cloning, before PPO (``bc``),
  ``--eval-episodes`` episodes each;
* the generative backend (``backend="auto"``, the shipped ShareVerse model): the trained
  policy, ``--gen-eval-episodes`` episodes. random, still and expert ignore the frames, so for
  the same seed their episodes are identical in both backends (the env's bookkeeping is exact
  geometry); by default (``--gen-baselines reuse``) they are run on the generative backend for
  ``--gen-check-episodes`` seeds, checked to match the world episodes exactly, and the world
  figures are reported for them. ``--gen-baselines run`` runs them in full instead (about 4×
  the generative evaluation time).

Outputs in ``--out`` (default ``runs/ppo``): ``policy.safetensors`` + ``policy.json``
(:func:`~shareverse_env.policies.actor_critic.save_policy`), ``learning_curve.png``,
``train_log.csv``, ``results.md`` (the comparison table, also printed) and ``results.json``.

    python examples/train_ppo.py                      # the documented default (see below)
    python examples/train_ppo.py --quick              # smoke test, about a minute
    python examples/train_ppo.py --seed 1 --out runs/ppo-seed1
    shareverse-env rollout --policy runs/ppo/policy.safetensors --goal-distance 60 90 --out a.mp4

Default budget: 16,384 env steps (each one 2.8 s chunk for both cars, about 30,000 car
transitions), then 100 world episodes per policy and 20 generative ones for the trained policy;
docs/tutorial_ppo.md has the measured times and results.
``--threads 1`` is the default because two torch threads on a CPU shared with other jobs made
every env step 5–50× slower there; on an idle machine ``--threads 2`` is faster.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from shareverse_env.wrappers import DictObservation, RecordEpisodeStatistics
from tqdm import tqdm

import shareverse_env
from shareverse_env.policies import Outcome, make_policy, run_episode
from shareverse_env.policies.actor_critic import (
    ActorCritic,
    LearnedPolicy,
    save_policy,
    select_observations,
    stack_observations,
)
from shareverse_env.world.weather import WEATHERS

EVAL_SEED_BASE = 1_000_000_000
"""Evaluation episode k uses seed ``EVAL_SEED_BASE + k``; training seeds stay below it."""
POLICIES = ("ppo", "random", "still", "expert")
REFERENCE = "untrained"
"""The network before training (same seed): evaluated on the world backend, to show what PPO
changed rather than what the architecture's initial straight-ahead action already does."""


# ------------------------------------------------------------------------------ arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--seed", type=int, default=0, help="seeds everything; the same seed replays the run")
    add("--out", type=Path, default=Path("runs/ppo"), help="output folder")
    add("--quick", action="store_true", help="smoke mode: tiny budget, tiny generative model")
    add("--threads", type=int, default=1, help="torch threads (see the module docstring)")
    env = parser.add_argument_group("env")
    env.add_argument("--agents", type=int, default=2)
    env.add_argument("--max-cycles", type=int, default=6, help="chunks (2.8 s) per episode")
    env.add_argument(
        "--goal-distance",
        type=float,
        nargs=2,
        default=(60.0, 90.0),
        metavar=("MIN", "MAX"),
        help="metres of driving from start to goal (the env's goal_distance; its default is "
        "140 220, beyond reach in a short episode)",
    )
    env.add_argument(
        "--observation",
        choices=("dict", "image"),
        default="dict",
        help="dict: the image plus speed, goal and route ahead in the ego frame "
        "(DictObservation); image: the camera image alone",
    )
    env.add_argument(
        "--route-points", type=int, default=8, help="route points ahead (dict observation)"
    )
    env.add_argument("--route-spacing", type=float, default=5.0, help="metres between them")
    env.add_argument("--train-towns", type=int, default=8, help="(town, weather) training pool")
    env.add_argument(
        "--view-hw",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="camera view size; default 64 96, the shipped model's (--quick: 32 48, tiny's)",
    )
    ppo = parser.add_argument_group("PPO")
    ppo.add_argument("--total-steps", type=int, default=16384, help="env steps of training")
    ppo.add_argument("--rollout-steps", type=int, default=256, help="env steps per update")
    ppo.add_argument("--epochs", type=int, default=10, help="passes over each rollout")
    ppo.add_argument("--minibatch", type=int, default=128, help="agent transitions per minibatch")
    ppo.add_argument("--lr", type=float, default=3e-4, help="Adam, decayed linearly to 0")
    ppo.add_argument("--gamma", type=float, default=0.99)
    ppo.add_argument("--gae-lambda", type=float, default=0.95)
    ppo.add_argument("--clip", type=float, default=0.2, help="PPO ratio clip ε")
    ppo.add_argument("--vf-coef", type=float, default=0.5)
    ppo.add_argument("--ent-coef", type=float, default=0.003)
    ppo.add_argument("--max-grad-norm", type=float, default=0.5)
    ppo.add_argument("--target-kl", type=float, default=0.05, help="stop an update's epochs early")
    ppo.add_argument(
        "--reward-scale", type=float, default=0.1, help="rewards × this for the learner only"
    )
    ppo.add_argument(
        "--init-log-std",
        type=float,
        nargs="+",
        default=[-1.6, -4.0, -4.0],
        metavar="S",
        help="initial log std of the normalised action, one value or one per field: ±3.3 m "
        "forward, ±0.05 m lateral, ±0.03 rad yaw (yaw noise of ±0.13 rad, the network's own "
        "default, drove 86%% of straight-driving car-episodes off the road or into something)",
    )
    bc = parser.add_argument_group("behaviour cloning (optional warm start)")
    bc.add_argument(
        "--bc-episodes",
        type=int,
        default=200,
        help="before PPO, fit the actor's mean to the route-following expert's actions in this "
        "many training episodes (0: pure PPO from a random network)",
    )
    bc.add_argument("--bc-epochs", type=int, default=20, help="passes over the demonstrations")
    bc.add_argument("--bc-lr", type=float, default=1e-3, help="Adam learning rate of the fit")
    ev = parser.add_argument_group("evaluation")
    ev.add_argument("--eval-episodes", type=int, default=100, help="world episodes per policy")
    ev.add_argument(
        "--gen-eval-episodes",
        type=int,
        default=20,
        help="generative-backend episodes of the trained policy (the first seeds of the world "
        "evaluation); 0 skips the generative evaluation",
    )
    ev.add_argument(
        "--gen-baselines",
        choices=("reuse", "run"),
        default="reuse",
        help="reuse: check random/still/expert on --gen-check-episodes seeds and report their "
        "(identical) world figures; run: run them in full on the generative backend",
    )
    ev.add_argument("--gen-check-episodes", type=int, default=1)
    ev.add_argument(
        "--gen-model",
        default=None,
        help="model of the generative backend (default: the shipped weights; --quick: tiny)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        quick = {
            "total_steps": 24,
            "rollout_steps": 12,
            "epochs": 2,
            "max_cycles": 2,
            "train_towns": 2,
            "eval_episodes": 2,
            "gen_eval_episodes": 1,
            "gen_check_episodes": 1,
            "bc_episodes": 2,
            "bc_epochs": 2,
        }
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
        args.gen_model = args.gen_model or "tiny"
        args.view_hw = args.view_hw or [32, 48]
    args.view_hw = tuple(args.view_hw or (64, 96))
    if args.gen_eval_episodes > args.eval_episodes:
        parser.error(
            f"--gen-eval-episodes ({args.gen_eval_episodes}) must not exceed --eval-episodes "
            f"({args.eval_episodes}): the generative seeds are the first world seeds"
        )
    args.goal_distance = tuple(args.goal_distance)
    positive = ("agents", "max_cycles", "train_towns", "total_steps", "rollout_steps", "epochs")
    for name in (*positive, "minibatch", "threads", "eval_episodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be ≥ 1; got {getattr(args, name)}")
    if args.bc_episodes < 0 or args.bc_epochs < 1:
        parser.error("--bc-episodes must be ≥ 0 and --bc-epochs ≥ 1")
    if args.gen_eval_episodes < 0 or args.gen_check_episodes < 0:
        parser.error("--gen-eval-episodes and --gen-check-episodes must be ≥ 0")
    return args


# ------------------------------------------------------------------------------ rollouts


@dataclass
class Rollout:
    """Agent transitions of one rollout, grouped into per-agent trajectory segments."""

    obs: list[Any] = field(default_factory=list)  # arrays, or dicts of arrays
    u: list[np.ndarray] = field(default_factory=list)
    log_prob: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    # (transition indices in time order, ends in a termination, bootstrap value)
    segments: list[tuple[list[int], bool, float]] = field(default_factory=list)

    def add(self, obs: Any, u: np.ndarray, log_prob: float, value: float) -> int:
        self.obs.append(obs)
        self.u.append(u)
        self.log_prob.append(log_prob)
        self.value.append(value)
        self.reward.append(0.0)
        return len(self.obs) - 1

    def advantages(self, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """GAE(λ) advantages and returns, segment by segment."""
        values = np.asarray(self.value, np.float64)
        rewards = np.asarray(self.reward, np.float64)
        adv = np.zeros_like(values)
        for indices, terminal, bootstrap in self.segments:
            next_value = 0.0 if terminal else bootstrap
            running = 0.0
            for i in reversed(indices):
                delta = rewards[i] + gamma * next_value - values[i]
                running = delta + gamma * lam * running
                adv[i] = running
                next_value = values[i]
        return adv, adv + values


class Collector:
    """Steps the training envs with the current network; keeps episodes going across updates."""

    def __init__(self, envs: list[Any], net: ActorCritic, args: argparse.Namespace) -> None:
        self.envs, self.net, self.args = envs, net, args
        self.rng = np.random.default_rng([args.seed, 1])
        self.generator = torch.Generator().manual_seed(args.seed)
        self.episodes = 0
        self.finished: list[dict[str, Any]] = []  # per agent-episode: return, goal, collision
        self._start_episode()

    def _start_episode(self) -> None:
        self.env = self.envs[self.episodes % len(self.envs)]
        seed = int(self.rng.integers(EVAL_SEED_BASE))
        self.obs, _ = self.env.reset(seed=seed)
        self.goal = dict.fromkeys(self.env.possible_agents, False)
        self.collision: dict[str, str | None] = dict.fromkeys(self.env.possible_agents)
        self.open: dict[str, list[int]] = {a: [] for a in self.env.agents}
        self.episodes += 1

    @torch.no_grad()
    def collect(self, steps: int, buffer: Rollout, bar: tqdm | None = None) -> None:
        scale = self.args.reward_scale
        for _ in range(steps):
            agents = list(self.env.agents)
            batch = stack_observations([self.obs[a] for a in agents])
            u, log_prob, _, value = self.net.act(batch, generator=self.generator)
            env_actions = self.net.to_env_action(u).numpy()
            index = {}
            for k, agent in enumerate(agents):
                index[agent] = buffer.add(
                    self.obs[agent], u[k].numpy(), float(log_prob[k]), float(value[k])
                )
                self.open[agent].append(index[agent])
            actions = {a: env_actions[k].astype(np.float32) for k, a in enumerate(agents)}
            obs, rewards, terms, truncs, infos = self.env.step(actions)
            ended = []
            for agent in agents:
                buffer.reward[index[agent]] = scale * float(rewards[agent])
                self.goal[agent] |= bool(infos[agent].get("reached_goal"))
                self.collision[agent] = self.collision[agent] or infos[agent].get("collision")
                if terms[agent] or truncs[agent]:
                    ended.append(agent)
                    self.finished.append(
                        {
                            "return": float(infos[agent]["episode"]["r"]),
                            "goal": self.goal[agent],
                            "collision": self.collision[agent] is not None,
                        }
                    )
            # Truncated agents bootstrap from V(final observation); terminated ones from 0.
            truncated = [a for a in ended if not terms[a]]
            values = {}
            if truncated:
                final = stack_observations([obs[a] for a in truncated])
                values = dict(zip(truncated, self.net.value(final).tolist(), strict=True))
            for agent in ended:
                buffer.segments.append((self.open.pop(agent), terms[agent], values.get(agent, 0.0)))
            self.obs = {a: obs[a] for a in self.env.agents}
            if not self.env.agents:
                self._start_episode()
            if bar is not None:
                bar.update()
        # Cut the open trajectories at the rollout's end: bootstrap from V(current observation).
        live = [a for a in self.open if self.open[a]]
        if live:
            batch = stack_observations([self.obs[a] for a in live])
            for agent, v in zip(live, self.net.value(batch).tolist(), strict=True):
                buffer.segments.append((self.open[agent], False, v))
                self.open[agent] = []


# ------------------------------------------------------------------------------ PPO update


def ppo_update(
    net: ActorCritic,
    optimizer: torch.optim.Optimizer,
    buffer: Rollout,
    args: argparse.Namespace,
    order_rng: np.random.Generator,
) -> dict[str, float]:
    adv, returns = buffer.advantages(args.gamma, args.gae_lambda)
    obs = stack_observations(buffer.obs)
    u = torch.from_numpy(np.stack(buffer.u))
    old_log_prob = torch.tensor(buffer.log_prob)
    adv_t = torch.tensor(adv, dtype=torch.float32)
    ret_t = torch.tensor(returns, dtype=torch.float32)
    n = len(buffer.obs)
    stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [], "kl": []}
    for _ in range(args.epochs):
        kls = []
        perm = torch.from_numpy(order_rng.permutation(n))
        for start in range(0, n, args.minibatch):
            mb = perm[start : start + args.minibatch]
            log_prob, entropy, value = net.evaluate(select_observations(obs, mb), u[mb])
            ratio = (log_prob - old_log_prob[mb]).exp()
            a = adv_t[mb]
            if len(mb) > 1:  # per-minibatch normalisation, as in CleanRL
                a = (a - a.mean()) / (a.std() + 1e-8)
            policy_loss = torch.max(-a * ratio, -a * ratio.clamp(1 - args.clip, 1 + args.clip))
            policy_loss = policy_loss.mean()
            value_loss = 0.5 * (value - ret_t[mb]).pow(2).mean()
            loss = policy_loss + args.vf_coef * value_loss - args.ent_coef * entropy.mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.max_grad_norm)
            optimizer.step()
            with torch.no_grad():  # k3 estimator of KL(old || new)
                kl = ((ratio - 1) - (log_prob - old_log_prob[mb])).mean().item()
            kls.append(kl)
            stats["policy_loss"].append(policy_loss.item())
            stats["value_loss"].append(value_loss.item())
            stats["entropy"].append(entropy.mean().item())
        stats["kl"].append(float(np.mean(kls)))
        if args.target_kl and np.mean(kls) > args.target_kl:
            break
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    var = float(np.var(returns))
    residual = float(np.var(returns - np.asarray(buffer.value)))
    out["explained_variance"] = 1.0 - residual / var if var > 0 else float("nan")
    return out


# ------------------------------------------------------------------------------ training


def observation_wrappers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The wrappers between the bare env and the network, as the checkpoint records them."""
    if args.observation == "image":
        return []
    return [
        {
            "name": "DictObservation",
            "route_points": args.route_points,
            "route_spacing": args.route_spacing,
        }
    ]


def make_env(args: argparse.Namespace, **kwargs: Any) -> Any:
    """An env of the run's settings (``kwargs``: backend, town, weather …) in its wrappers."""
    env = shareverse_env.parallel_env(
        num_agents=args.agents,
        max_cycles=args.max_cycles,
        goal_distance=args.goal_distance,
        chunk_frames="last",  # the policy sees the last frame only: skip rendering the others
        **kwargs,
    )
    if args.observation == "dict":
        env = DictObservation(env, route_points=args.route_points, route_spacing=args.route_spacing)
    return env


def make_train_envs(args: argparse.Namespace) -> list[Any]:
    """One world env per (town, weather) of the training pool: each renderer is built once."""
    rng = np.random.default_rng([args.seed, 0])
    weathers = sorted(WEATHERS)
    envs = []
    for _ in range(args.train_towns):
        env = make_env(
            args,
            backend="world",
            view_hw=args.view_hw,
            town_seed=int(rng.integers(EVAL_SEED_BASE)),
            weather=weathers[int(rng.integers(len(weathers)))],
        )
        envs.append(RecordEpisodeStatistics(env))
    return envs


def behaviour_cloning(net: ActorCritic, envs: list[Any], args: argparse.Namespace) -> float:
    """Fit the actor's mean to the route-following expert's actions; return the final loss.

    The expert drives ``--bc-episodes`` training episodes (seeds from the training range); the
    mean of the network's Gaussian is regressed onto its normalised actions (mean squared error,
    targets clipped to ±0.98 so that ``tanh`` need not saturate). The critic and the noise are
    left to PPO.
    """
    rng = np.random.default_rng([args.seed, 3])
    observations, targets = [], []
    for k in tqdm(range(args.bc_episodes), desc="expert demonstrations", unit="episode"):
        env = envs[k % len(envs)]
        expert = make_policy("expert", env)
        obs, _ = env.reset(seed=int(rng.integers(EVAL_SEED_BASE)))
        while env.agents:
            actions = expert(obs)
            for agent in env.agents:
                observations.append(obs[agent])
                targets.append(actions[agent])
            obs, *_ = env.step(actions)
    batch = stack_observations(observations)
    u = torch.from_numpy(np.stack(targets)).float()
    u = ((u - net.action_centre) / net.action_half_range).clamp(-0.98, 0.98)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.bc_lr)
    order = np.random.default_rng([args.seed, 4])
    n = len(u)
    loss = torch.tensor(math.nan)
    net.train()
    for _ in tqdm(range(args.bc_epochs), desc="behaviour cloning", unit="epoch"):
        perm = torch.from_numpy(order.permutation(n))
        for start in range(0, n, args.minibatch):
            mb = perm[start : start + args.minibatch]
            dist, _ = net.distribution(select_observations(batch, mb))
            loss = (dist.mean - u[mb]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    tqdm.write(f"behaviour cloning: {n} expert transitions, final minibatch MSE {loss.item():.4f}")
    return float(loss.item())


def train(
    args: argparse.Namespace,
) -> tuple[ActorCritic, dict[str, ActorCritic], list[dict[str, float]]]:
    """Run PPO; return the trained network, the reference networks (untrained and, with
    ``--bc-episodes``, after behaviour cloning) and the per-update log."""
    envs = make_train_envs(args)
    log_std = args.init_log_std
    log_std = log_std[0] if log_std is not None and len(log_std) == 1 else log_std
    net = ActorCritic.for_env(envs[0], init_log_std=log_std)
    references = {REFERENCE: copy.deepcopy(net).eval()}
    if args.bc_episodes:
        behaviour_cloning(net, envs, args)
        references["bc"] = copy.deepcopy(net).eval()
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr, eps=1e-5)
    collector = Collector(envs, net, args)
    order_rng = np.random.default_rng([args.seed, 2])  # minibatch order
    updates = math.ceil(args.total_steps / args.rollout_steps)
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    steps = 0
    bar = tqdm(total=updates * args.rollout_steps, desc="train (env steps)", unit="step")
    for update in range(updates):
        for group in optimizer.param_groups:  # linear decay to 0 over the run
            group["lr"] = args.lr * (1.0 - update / updates)
        buffer = Rollout()
        seen = len(collector.finished)
        net.eval()
        collector.collect(args.rollout_steps, buffer, bar)
        steps += args.rollout_steps
        net.train()
        stats = ppo_update(net, optimizer, buffer, args, order_rng)
        episodes = collector.finished[seen:]
        row = {
            "update": update + 1,
            "env_steps": steps,
            "agent_steps": len(buffer.obs),
            "episodes": len(episodes),
            "return": float(np.mean([e["return"] for e in episodes])) if episodes else math.nan,
            "collision_rate": float(np.mean([e["collision"] for e in episodes]))
            if episodes
            else math.nan,
            "goal_rate": float(np.mean([e["goal"] for e in episodes])) if episodes else math.nan,
            "std": float(net.log_std.detach().exp().mean()),
            "seconds": time.perf_counter() - start,
            **stats,
        }
        log.append(row)
        write_log(args.out / "train_log.csv", log)  # every update: a run can be watched
        bar.set_postfix(ret=f"{row['return']:+.2f}", coll=f"{row['collision_rate']:.2f}")
    bar.close()
    return net.eval(), references, log


# ------------------------------------------------------------------------------ evaluation


def make_eval_policies(
    env: Any,
    net: ActorCritic,
    names: tuple[str, ...],
    references: dict[str, ActorCritic] | None = None,
) -> dict[str, Any]:
    policies = {}
    references = references or {}
    for name in names:
        if name == "ppo":
            policies[name] = LearnedPolicy(net, env, deterministic=True)
        elif name in references:
            policies[name] = LearnedPolicy(references[name], env, deterministic=True)
        else:
            policies[name] = make_policy(name, env, seed=0)  # run_episode re-seeds per episode
    return policies


def run_policies(
    env: Any, policies: dict[str, Any], seeds: list[int], desc: str
) -> dict[str, list[dict[str, Outcome]]]:
    """Every policy on every seed; seeds outer so that a seed's town is generated once."""
    results: dict[str, list[dict[str, Outcome]]] = {name: [] for name in policies}
    with tqdm(total=len(seeds) * len(policies), desc=desc, unit="episode") as bar:
        for seed in seeds:
            for name, policy in policies.items():
                results[name].append(run_episode(env, policy, seed=seed))
                bar.update()
    return results


def summarise(episodes: list[dict[str, Outcome]]) -> dict[str, float]:
    """Rates and mean return over agent-episodes (each car's episode counts once)."""
    outcomes = [o for episode in episodes for o in episode.values()]
    returns = np.array([o.episode_return for o in outcomes])
    return {
        "episodes": len(episodes),
        "agent_episodes": len(outcomes),
        "goal_rate": float(np.mean([o.reached_goal for o in outcomes])),
        "collision_rate": float(np.mean([o.collision is not None for o in outcomes])),
        "mean_return": float(returns.mean()),
        "return_se": float(returns.std(ddof=1) / np.sqrt(len(returns)))
        if len(returns) > 1
        else 0.0,
        "mean_steps": float(np.mean([o.steps for o in outcomes])),
    }


def same_outcomes(a: dict[str, Outcome], b: dict[str, Outcome]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].reached_goal == b[k].reached_goal
        and a[k].collision == b[k].collision
        and a[k].steps == b[k].steps
        and abs(a[k].episode_return - b[k].episode_return) < 1e-6
        for k in a
    )


def evaluate(
    net: ActorCritic, references: dict[str, ActorCritic], args: argparse.Namespace
) -> dict[str, Any]:
    """World: all four policies; generative: the trained one (and checked or full baselines)."""
    seeds = [EVAL_SEED_BASE + k for k in range(args.eval_episodes)]
    table: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}

    start = time.perf_counter()
    world = make_env(args, backend="world", view_hw=args.view_hw)
    names = ("ppo", *references, *POLICIES[1:])
    world_policies = make_eval_policies(world, net, names, references)
    world_runs = run_policies(world, world_policies, seeds, "eval world")
    for name, episodes in world_runs.items():
        table[f"{name}/world"] = summarise(episodes)
    timings["world"] = time.perf_counter() - start
    world.close()

    checked = None
    if args.gen_eval_episodes > 0:
        start = time.perf_counter()
        gen = make_env(  # backend "auto": the shipped generative model
            args, **({"model": args.gen_model} if args.gen_model else {})
        )
        gen_shape = gen.unwrapped.observation_space(gen.possible_agents[0]).shape
        world_shape = world.unwrapped.observation_space(world.possible_agents[0]).shape
        if gen_shape != world_shape:
            raise SystemExit(
                f"the generative model's frames {gen_shape} differ from the training frames "
                f"{world_shape}; pass --view-hw to match the model's view size"
            )
        gen_seeds = [EVAL_SEED_BASE + k for k in range(args.gen_eval_episodes)]
        full = args.gen_baselines == "run"
        names = POLICIES if full else ("ppo",)
        gen_runs = run_policies(gen, make_eval_policies(gen, net, names), gen_seeds, "eval gen")
        if not full:
            check_seeds = seeds[: min(args.gen_check_episodes, len(seeds))]
            baselines = tuple(p for p in POLICIES if p != "ppo")
            check = run_policies(
                gen, make_eval_policies(gen, net, baselines), check_seeds, "check gen baselines"
            )
            checked = all(
                same_outcomes(check[name][i], world_runs[name][i])
                for name in baselines
                for i in range(len(check_seeds))
            )
            if not checked:
                tqdm.write("baselines differ between backends: running them in full")
                more = run_policies(
                    gen, make_eval_policies(gen, net, baselines), gen_seeds, "eval gen baselines"
                )
                gen_runs.update(more)
                checked = None
            else:
                for name in baselines:
                    gen_runs[name] = world_runs[name][: len(gen_seeds)]  # the same seeds as ppo
        for name, episodes in gen_runs.items():
            table[f"{name}/generative"] = summarise(episodes)
            reused = checked and name != "ppo"
            table[f"{name}/generative"]["reused_world"] = bool(reused)
        timings["generative"] = time.perf_counter() - start
        gen.close()
    return {
        "table": table,
        "timings": timings,
        "baselines_checked_on": min(args.gen_check_episodes, len(seeds)) if checked else 0,
    }


def markdown_table(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| policy | backend | episodes | goal reached | collision | mean return ± s.e. |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, row in results["table"].items():
        name, backend = key.split("/")
        mark = " †" if row.get("reused_world") else ""
        lines.append(
            f"| {name} | {backend}{mark} | {row['episodes']} | {row['goal_rate']:.0%} | "
            f"{row['collision_rate']:.0%} | {row['mean_return']:+.2f} ± {row['return_se']:.2f} |"
        )
    notes = [
        "",
        f"Rates and returns per car-episode ({args.agents} cars, episodes of ≤ "
        f"{args.max_cycles} chunks, held-out seeds {EVAL_SEED_BASE}+k). ppo and {REFERENCE}: "
        f"the network's mean action after and before training ({REFERENCE}: world only).",
    ]
    if any(key.startswith("bc/") for key in results["table"]):
        lines_bc = "bc: the network's mean action after behaviour cloning, before PPO (world only)."
        notes.append(lines_bc)
    if any(row.get("reused_world") for row in results["table"].values()):
        checked = results["baselines_checked_on"]
        how = (
            f"were checked to equal the world ones on {checked} seed(s)"
            if checked
            else "were not checked (--gen-check-episodes 0)"
        )
        notes.append(
            "† random, still and expert ignore the frames, so their episodes are the same in "
            f"both backends for the same seed: on the generative backend they {how}, and the "
            "world figures are shown."
        )
    return "\n".join(lines + notes) + "\n"


# ------------------------------------------------------------------------------ outputs


def write_log(path: Path, log: list[dict[str, float]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)


def plot_curve(path: Path, log: list[dict[str, float]], results: dict[str, Any] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["env_steps"] for r in log])
    fig, (ax_r, ax_c) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in (
        (ax_r, "return", "episode return per car"),
        (ax_c, "collision_rate", "collision rate"),
    ):
        y = np.array([r[key] for r in log], dtype=float)
        ax.plot(steps, y, "o-", ms=3, lw=1, color="C0", label="PPO (training, sampled actions)")
        if results is not None:
            names = [key.split("/")[0] for key in results["table"] if key.endswith("/world")]
            for k, name in enumerate(names):
                row = results["table"].get(f"{name}/world")
                value = row and (row["mean_return"] if key == "return" else row["collision_rate"])
                if row is not None:
                    style = "-" if name == "ppo" else "--"
                    ax.axhline(value, ls=style, lw=1, color=f"C{k + 1}", label=f"{name} (eval)")
        ax.set_xlabel("env steps (2.8 s chunks)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_r.legend(fontsize=7, loc="best")
    fig.suptitle("PPO on the ShareVerse world backend (shared CNN actor-critic)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()

    net, references, log = train(args)
    train_seconds = time.perf_counter() - wall
    meta = {
        "trainer": "examples/train_ppo.py",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "env_steps": log[-1]["env_steps"],
        "updates": len(log),
        "train_seconds": round(train_seconds, 1),
    }
    wrappers = observation_wrappers(args)
    save_policy(args.out / "policy.safetensors", net, meta, wrappers)
    write_log(args.out / "train_log.csv", log)
    plot_curve(args.out / "learning_curve.png", log, None)  # refined after evaluation
    tqdm.write(f"trained {meta['env_steps']} env steps in {train_seconds:.0f} s")

    results = evaluate(net, references, args)
    results["timings"]["train"] = train_seconds
    results["timings"]["total"] = time.perf_counter() - wall
    plot_curve(args.out / "learning_curve.png", log, results)
    table = markdown_table(results, args)
    (args.out / "results.md").write_text(table)
    (args.out / "results.json").write_text(json.dumps({**results, "meta": meta}, indent=2) + "\n")
    save_policy(
        args.out / "policy.safetensors", net, {**meta, "results": results["table"]}, wrappers
    )
    print(table)
    times = ", ".join(f"{k} {v / 60:.1f} min" for k, v in results["timings"].items())
    print(f"times: {times}")
    print(f"wrote {args.out}/: policy.safetensors, policy.json, learning_curve.png, results.md")


if __name__ == "__main__":
    main()
