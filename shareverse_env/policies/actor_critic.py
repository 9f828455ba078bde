"""A shared CNN actor-critic for the ShareVerse env, and safe checkpoints for it.

One network drives every agent (parameter sharing): the agents' observations go through it as
one batch, and each agent's action is drawn from its own output row. It reads the env's image
observation as it comes — by default the tiled ``(128, 192, 3)`` uint8 frame — and downsamples
inside the network with a stride-4 stem, so a checkpoint runs on the raw env in both backends
without wrappers to rebuild. Any uint8 image space works: ``(H, W)``, ``(H, W, C)`` or a stack
``(k, H, W, C)`` from :class:`~shareverse_env.wrappers.StackChunkFrames` (stacked frames become
channels), for example a :class:`~shareverse_env.wrappers.ResizeObservation`-wrapped env.

It also reads a ``Dict`` observation such as
:class:`~shareverse_env.wrappers.DictObservation`'s: the ``"image"`` key goes through the
CNN, and the chosen vector keys (by default every other key but the world-frame ``"pose"``:
speed, the goal and the route ahead in the ego frame) are flattened, squashed with
``symlog(x) = sign(x)·log(1 + |x|)`` (metres from 0.5 to 200 in one sensible range without
statistics to keep), passed through a small ReLU layer and joined to the image features.

==========  ====================================================================================
trunk       conv 8×8/4 → conv 4×4/2 → conv 3×3/2 (ReLU) → linear (ReLU); pixels scaled to
            [-0.5, 0.5]
actor       Gaussian over the action *normalised* to [-1, 1] per field: mean ``tanh(linear)``,
            state-independent log std; a sample is clipped to [-1, 1] and mapped affinely onto
            the env's bounds, so every action the network emits is within the action space.
            Log-probabilities are of the unclipped sample (as in CleanRL's continuous PPO).
vectors     (``Dict`` observations) ``symlog → linear (ReLU)``, concatenated to the trunk's
            output before the heads
critic      ``linear → V(s)`` on the same trunk
==========  ====================================================================================

The normalised mean 0 is the centre of the bounds: (11.5 m forward, 0 m lateral, 0 rad), i.e.
an untrained network drives straight ahead at about 4 m/s.

Checkpoints are two files written atomically: ``NAME.safetensors`` (the weights) and the JSON
sidecar ``NAME.json`` (format, architecture, the spaces it was made for, the observation
wrappers it was trained behind, free metadata). :func:`~shareverse_env.wrappers.wrap_for_policy` rebuilds those wrappers
around a bare env, so ``shareverse-env rollout --policy PATH`` runs any checkpoint.
Nothing is unpickled when loading; a checkpoint made for other spaces is refused with an error
that names both.

Example:
    >>> import tempfile, shareverse_env
    >>> from pathlib import Path
    >>> env = shareverse_env.parallel_env(backend="world", max_cycles=2)
    >>> net = ActorCritic.for_env(env)
    >>> path = Path(tempfile.mkdtemp()) / "policy.safetensors"
    >>> save_policy(path, net, {"note": "untrained"})
    >>> policy = load_policy(path, env)
    >>> obs, infos = env.reset(seed=0)
    >>> actions = policy(obs)
    >>> all(env.action_space(a).contains(x) for a, x in actions.items())
    True
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from pettingzoo import ParallelEnv
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

CHECKPOINT_FORMAT = "shareverse-actor-critic"
"""The ``format`` field of the JSON sidecar."""
CHECKPOINT_VERSION = 1
Observation = torch.Tensor | dict[str, torch.Tensor]
"""A batch of observations: an image tensor, or a dict of tensors for ``Dict`` observations."""
DEFAULT_LOG_STD = (-1.6, -2.5, -2.5)
"""Initial log std of the normalised (forward, lateral, yaw): see :class:`ActorCriticConfig`."""


@dataclass(frozen=True)
class ActorCriticConfig:
    """The architecture and the spaces an :class:`ActorCritic` is made for (all JSON-able).

    Attributes:
        obs_shape: the observation's shape: ``(H, W)``, ``(H, W, C)`` or ``(k, H, W, C)``.
        action_low: lower bounds of the ``Box`` action space.
        action_high: upper bounds.
        channels: output channels of the three convolutions.
        hidden: width of the linear layer after them.
        init_log_std: initial log standard deviation of the normalised action, one per field
            or one for all. ``None`` (default): (-1.6, -2.5, -2.5) for the env's
            (forward, lateral, yaw) pose delta, -1.6 for other action sizes: ±0.2 of the
            forward half-range (±3.3 m per chunk), ±0.08 of the others (±0.25 m lateral,
            ±0.13 rad yaw). A pose delta acts for a whole 2.8 s chunk: with ±0.2 on every
            field, 79 % of the untrained network's sampled car-episodes ended in a collision
            (21 % with its mean action); the per-field noise brought PPO's training episodes
            from about 0.8 to about 0.6 collisions.

    Example:
        >>> cfg = ActorCriticConfig((128, 192, 3), (-5.0, -3.0, -1.57), (28.0, 3.0, 1.57))
        >>> cfg.in_channels, cfg.action_dim
        (3, 3)
    """

    obs_shape: tuple[int, ...]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    channels: tuple[int, int, int] = (16, 32, 32)
    hidden: int = 256
    init_log_std: float | tuple[float, ...] | None = None
    image_key: str | None = None
    vectors: tuple[tuple[str, int], ...] = ()
    vector_hidden: int = 64

    def __post_init__(self) -> None:
        # Normalise sequences (e.g. lists read from JSON) so that configs compare equal.
        object.__setattr__(self, "obs_shape", tuple(int(v) for v in self.obs_shape))
        object.__setattr__(self, "action_low", tuple(float(v) for v in self.action_low))
        object.__setattr__(self, "action_high", tuple(float(v) for v in self.action_high))
        object.__setattr__(self, "channels", tuple(int(v) for v in self.channels))
        log_std = self.init_log_std
        if log_std is None:
            log_std = DEFAULT_LOG_STD if len(self.action_low) == 3 else DEFAULT_LOG_STD[0]
        if not isinstance(log_std, int | float):
            log_std = tuple(float(v) for v in log_std)
        object.__setattr__(self, "init_log_std", log_std)
        object.__setattr__(
            self, "vectors", tuple((str(key), int(size)) for key, size in self.vectors)
        )
        if self.vectors and self.image_key is None:
            raise ValueError("ActorCriticConfig: vectors need a Dict observation (image_key)")
        if any(size < 1 for _, size in self.vectors) or self.vector_hidden < 1:
            raise ValueError(
                f"ActorCriticConfig: vector sizes and vector_hidden must be ≥ 1; got "
                f"{self.vectors}, {self.vector_hidden}"
            )
        if self.image_key is not None and self.image_key in dict(self.vectors):
            raise ValueError(f"ActorCriticConfig: {self.image_key!r} is both image and vector")
        if len(self.obs_shape) not in (2, 3, 4) or min(self.obs_shape) < 1:
            raise ValueError(
                "ActorCriticConfig: obs_shape must be (H, W), (H, W, C) or (k, H, W, C) with "
                f"positive sizes; got {self.obs_shape}"
            )
        height, width = self.image_hw
        if height < 36 or width < 36:
            # Smaller frames vanish under the three strided convolutions.
            raise ValueError(
                f"ActorCriticConfig: frames must be at least 36×36 pixels; got {height}×{width}"
            )
        low, high = np.array(self.action_low), np.array(self.action_high)
        if low.shape != high.shape or low.ndim != 1 or not len(low):
            raise ValueError(
                "ActorCriticConfig: action_low and action_high must be equal-length vectors; "
                f"got {self.action_low} and {self.action_high}"
            )
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)):
            raise ValueError(
                "ActorCriticConfig: action bounds must be finite with high > low; got "
                f"low={self.action_low}, high={self.action_high}"
            )
        if not isinstance(self.init_log_std, int | float) and len(self.init_log_std) != len(low):
            raise ValueError(
                f"ActorCriticConfig: init_log_std needs one value or one per action field "
                f"({len(low)}); got {self.init_log_std}"
            )
        if len(self.channels) != 3 or min(self.channels) < 1 or self.hidden < 1:
            raise ValueError(
                f"ActorCriticConfig: channels must be 3 positive ints and hidden ≥ 1; got "
                f"{self.channels}, {self.hidden}"
            )

    @property
    def image_hw(self) -> tuple[int, int]:
        """Height and width of one frame."""
        if len(self.obs_shape) == 4:
            return self.obs_shape[1], self.obs_shape[2]
        return self.obs_shape[0], self.obs_shape[1]

    @property
    def in_channels(self) -> int:
        """Input channels of the first convolution (stacked frames × colour channels)."""
        shape = self.obs_shape
        if len(shape) == 2:
            return 1
        if len(shape) == 3:
            return shape[2]
        return shape[0] * shape[3]

    @property
    def action_dim(self) -> int:
        return len(self.action_low)

    @property
    def vector_dim(self) -> int:
        """Values of all vector inputs together (0 for a plain image observation)."""
        return sum(size for _, size in self.vectors)

    @classmethod
    def for_spaces(
        cls,
        observation_space: gymnasium.Space,
        action_space: gymnasium.Space,
        vector_keys: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ActorCriticConfig:
        """The config for one agent's spaces; ``kwargs`` set the architecture fields.

        For a ``Dict`` observation the image is the ``"image"`` key and ``vector_keys`` (default:
        every other key except the world-frame ``"pose"``, in sorted order) the vector inputs.
        """
        image_space, image_key, vectors = observation_space, None, ()
        if isinstance(observation_space, gymnasium.spaces.Dict):
            image_key = "image"
            if image_key not in observation_space.spaces:
                raise ValueError(
                    "ActorCritic: a Dict observation needs an 'image' key (DictObservation's "
                    f"layout); got keys {sorted(observation_space.spaces)}"
                )
            image_space = observation_space[image_key]
            if vector_keys is None:
                vector_keys = sorted(
                    k for k in observation_space.spaces if k not in ("image", "pose")
                )
            vectors = tuple((key, _vector_size(observation_space, key)) for key in vector_keys)
        elif vector_keys:
            raise ValueError(
                f"ActorCritic: vector_keys {list(vector_keys)} need a Dict observation; got "
                f"{observation_space}"
            )
        check_spaces(image_space, action_space)
        return cls(
            tuple(image_space.shape),
            tuple(np.asarray(action_space.low, np.float64).tolist()),
            tuple(np.asarray(action_space.high, np.float64).tolist()),
            image_key=image_key,
            vectors=vectors,
            **kwargs,
        )


def _vector_size(space: gymnasium.spaces.Dict, key: str) -> int:
    """Flattened size of the float ``Box`` at ``space[key]``, or a ``ValueError`` saying why not."""
    sub = space.spaces.get(key)
    if not isinstance(sub, gymnasium.spaces.Box) or not np.issubdtype(sub.dtype, np.floating):
        raise ValueError(
            f"ActorCritic: vector input {key!r} must be a float Box of the Dict observation; "
            f"got {sub} (keys: {sorted(space.spaces)})"
        )
    return int(np.prod(sub.shape))


def check_spaces(observation_space: gymnasium.Space, action_space: gymnasium.Space) -> None:
    """Raise ``ValueError`` unless the spaces are a uint8 image ``Box`` and a 1-D float ``Box``."""
    obs_ok = (
        isinstance(observation_space, gymnasium.spaces.Box)
        and observation_space.dtype == np.uint8
        and len(observation_space.shape) in (2, 3, 4)
    )
    if not obs_ok:
        raise ValueError(
            "ActorCritic needs a uint8 image observation Box of shape (H, W), (H, W, C) or "
            f"(k, H, W, C), or a Dict with such an 'image'; got {observation_space}"
        )
    act_ok = isinstance(action_space, gymnasium.spaces.Box) and len(action_space.shape) == 1
    if not act_ok:
        raise ValueError(
            "ActorCritic needs a 1-D Box action space (the env's pose deltas; not MetaActions' "
            f"Discrete); got {action_space}"
        )


def _layer(layer: nn.Module, gain: float) -> nn.Module:
    # Orthogonal weights, zero bias: the usual PPO initialisation (Engstrom et al. 2020).
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """The shared CNN actor-critic; see the module docstring for the architecture.

    Args:
        config: the spaces and the architecture.

    Example:
        >>> import torch
        >>> net = ActorCritic(ActorCriticConfig((128, 192, 3), (-1.0,), (1.0,)))
        >>> obs = torch.zeros(5, 128, 192, 3, dtype=torch.uint8)
        >>> u, log_prob, entropy, value = net.act(obs)
        >>> u.shape, log_prob.shape, value.shape
        (torch.Size([5, 1]), torch.Size([5]), torch.Size([5]))
        >>> net.to_env_action(torch.tensor([[-3.0], [0.5]])).tolist()  # clipped, then mapped
        [[-1.0], [0.5]]
    """

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        root2 = float(np.sqrt(2.0))
        self.trunk = nn.Sequential(
            _layer(nn.Conv2d(config.in_channels, c1, 8, stride=4), root2),
            nn.ReLU(),
            _layer(nn.Conv2d(c1, c2, 4, stride=2), root2),
            nn.ReLU(),
            _layer(nn.Conv2d(c2, c3, 3, stride=2), root2),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.trunk(torch.zeros(1, config.in_channels, *config.image_hw)).shape[1]
        self.trunk.append(_layer(nn.Linear(flat, config.hidden), root2))
        self.trunk.append(nn.ReLU())
        head_in = config.hidden
        self.vector_net: nn.Module | None = None
        if config.vectors:
            self.vector_net = nn.Sequential(
                _layer(nn.Linear(config.vector_dim, config.vector_hidden), root2), nn.ReLU()
            )
            head_in += config.vector_hidden
        # Small actor gain: the initial mean sits at the centre of the bounds for every input.
        self.actor_mean = _layer(nn.Linear(head_in, config.action_dim), 0.01)
        self.critic = _layer(nn.Linear(head_in, 1), 1.0)
        log_std = torch.zeros(config.action_dim) + torch.tensor(config.init_log_std)
        self.log_std = nn.Parameter(log_std.float())
        low = torch.tensor(config.action_low, dtype=torch.float32)
        high = torch.tensor(config.action_high, dtype=torch.float32)
        # Buffers travel with .to(device) and are saved, so a checkpoint knows its own bounds.
        self.register_buffer("action_centre", (high + low) / 2)
        self.register_buffer("action_half_range", (high - low) / 2)

    @classmethod
    def for_env(cls, env: ParallelEnv, agent: str | None = None, **kwargs: Any) -> ActorCritic:
        """A network for ``env``'s spaces (those of ``agent``, default the first possible agent;
        parameter sharing assumes every agent has the same spaces, which is checked)."""
        agents = list(env.possible_agents)
        agent = agents[0] if agent is None else agent
        obs_space, act_space = env.observation_space(agent), env.action_space(agent)
        for other in agents:
            if env.observation_space(other) != obs_space or env.action_space(other) != act_space:
                raise ValueError(
                    f"ActorCritic.for_env: parameter sharing needs equal spaces for all agents; "
                    f"{other!r} has {env.observation_space(other)}, {env.action_space(other)} and "
                    f"{agent!r} has {obs_space}, {act_space}"
                )
        return cls(ActorCriticConfig.for_spaces(obs_space, act_space, **kwargs))

    # ------------------------------------------------------------------ forward passes

    def features(self, obs: Observation) -> torch.Tensor:
        """``(B, *obs_shape)`` uint8 (or float in [0, 255]) → ``(B, hidden)``; for a ``Dict``
        observation, a dict of batched tensors → ``(B, hidden + vector_hidden)``."""
        if self.config.image_key is None:
            return self._image_features(obs)
        if not isinstance(obs, dict):
            raise TypeError("this ActorCritic reads Dict observations: pass a dict of tensors")
        image = self._image_features(obs[self.config.image_key])
        if self.vector_net is None:
            return image
        device = self.action_centre.device
        parts = [
            obs[key].to(device, torch.float32).reshape(len(image), -1)
            for key, _ in self.config.vectors
        ]
        x = torch.cat(parts, dim=1)
        x = torch.sign(x) * torch.log1p(x.abs())  # symlog: metres from 0.5 to 200 in one range
        return torch.cat([image, self.vector_net(x)], dim=1)

    def _image_features(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.to(self.action_centre.device, torch.float32)
        shape = self.config.obs_shape
        if len(shape) == 2:
            x = x[:, None]
        elif len(shape) == 3:
            x = x.permute(0, 3, 1, 2)
        else:  # (B, k, H, W, C) → (B, k·C, H, W): stacked frames become channels
            x = x.permute(0, 1, 4, 2, 3).flatten(1, 2)
        return self.trunk(x / 255.0 - 0.5)

    def distribution(self, obs: Observation) -> tuple[torch.distributions.Normal, torch.Tensor]:
        """The Gaussian over normalised actions and the value, ``(B,)``."""
        hidden = self.features(obs)
        mean = torch.tanh(self.actor_mean(hidden))
        std = self.log_std.exp().expand_as(mean)
        return torch.distributions.Normal(mean, std), self.critic(hidden)[:, 0]

    def value(self, obs: Observation) -> torch.Tensor:
        """``V(s)``, ``(B,)``."""
        return self.critic(self.features(obs))[:, 0]

    def act(
        self,
        obs: Observation,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample (or take the mean of) the normalised action ``u``.

        Returns ``(u (B, A), log_prob (B,), entropy (B,), value (B,))``; map ``u`` to the env
        with :meth:`to_env_action`.
        """
        dist, value = self.distribution(obs)
        if deterministic:
            u = dist.mean
        else:
            noise = torch.randn(
                dist.mean.shape,
                generator=generator,
                device=None if generator is None else generator.device,
            )
            u = dist.mean + dist.stddev * noise.to(dist.mean.device)
        return u, dist.log_prob(u).sum(-1), dist.entropy().sum(-1), value

    def evaluate(
        self, obs: Observation, u: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log_prob, entropy, value)`` of given normalised actions ``u`` (for the PPO loss)."""
        dist, value = self.distribution(obs)
        return dist.log_prob(u).sum(-1), dist.entropy().sum(-1), value

    def to_env_action(self, u: torch.Tensor) -> torch.Tensor:
        """Normalised ``u`` → env actions: clip to [-1, 1], then map onto the bounds."""
        return self.action_centre + self.action_half_range * u.clamp(-1.0, 1.0)


def stack_observations(observations: Sequence[Any]) -> Observation:
    """One batch from per-agent observations: arrays stack into a tensor, dicts key by key.

    Example:
        >>> batch = stack_observations([{"image": np.zeros((2, 2)), "goal": np.ones(2)}] * 3)
        >>> {k: tuple(v.shape) for k, v in sorted(batch.items())}
        {'goal': (3, 2), 'image': (3, 2, 2)}
    """
    if observations and isinstance(observations[0], dict):
        return {
            key: torch.from_numpy(np.stack([np.asarray(o[key]) for o in observations]))
            for key in observations[0]
        }
    return torch.from_numpy(np.stack([np.asarray(o) for o in observations]))


def select_observations(batch: Observation, index: Any) -> Observation:
    """Rows ``index`` of a batch made by :func:`stack_observations` (tensor or dict)."""
    if isinstance(batch, dict):
        return {key: value[index] for key, value in batch.items()}
    return batch[index]


# ---------------------------------------------------------------------- the Policy wrapper


class LearnedPolicy:
    """A :class:`~shareverse_env.policies.base.Policy` backed by an :class:`ActorCritic`.

    Drives every live agent of ``env`` (one batched forward pass). Deterministic by default:
    the mean action, clipped to the bounds. With ``deterministic=False`` it samples, seeded by
    ``seed`` and again by ``reset(seed)``.

    Args:
        net: the network.
        env: the env (or wrapper) whose live agents it drives; its spaces must match ``net``.
        deterministic: take the mean action instead of sampling.
        seed: seed of the sampling noise.

    Example:
        >>> import shareverse_env
        >>> env = shareverse_env.parallel_env(backend="world", max_cycles=2)
        >>> policy = LearnedPolicy(ActorCritic.for_env(env), env)
        >>> obs, infos = env.reset(seed=0)
        >>> actions = policy(obs)  # untrained: about the centre of the bounds, straight ahead
        >>> sorted(actions), [bool(abs(a[0] - 11.5) < 1.0) for a in actions.values()]
        (['agent_0', 'agent_1'], [True, True])
    """

    def __init__(
        self,
        net: ActorCritic,
        env: ParallelEnv,
        deterministic: bool = True,
        seed: int | None = 0,
    ) -> None:
        check_compatible(net.config, env)
        self.net = net.eval()
        self.env = env
        self.deterministic = bool(deterministic)
        self.device = net.action_centre.device
        self._generator = torch.Generator(device=self.device)
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Re-seed the sampling noise (``None``: fresh entropy)."""
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(int(seed))

    @torch.no_grad()
    def __call__(self, observations: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        agents = list(self.env.agents)
        if not agents:
            return {}
        if observations is None:
            raise ValueError("LearnedPolicy needs the observations of the live agents; got None")
        missing = [a for a in agents if a not in observations]
        if missing:
            raise KeyError(f"LearnedPolicy: no observation for live agents {missing}")
        obs = stack_observations([observations[a] for a in agents])
        u, *_ = self.net.act(obs, self.deterministic, self._generator)
        actions = self.net.to_env_action(u).cpu().numpy().astype(np.float32)
        return dict(zip(agents, actions, strict=True))


# ---------------------------------------------------------------------- checkpoints


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a weights file: ``NAME.safetensors`` → ``NAME.json``."""
    return Path(path).with_suffix(".json")


def _weights_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix == ".json":  # the sidecar was given: its weights sit beside it
        return path.with_suffix(".safetensors")
    if path.suffix != ".safetensors":
        raise ValueError(f"policy checkpoint paths end in .safetensors (or .json); got {path}")
    return path


def _atomic_write(target: Path, write: Any) -> None:
    """``write(tmp_path)`` then rename onto ``target``: a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes owner-only files; give the checkpoint the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_policy(
    path: str | os.PathLike[str],
    net: ActorCritic,
    meta: dict[str, Any] | None = None,
    observation_wrappers: Sequence[dict[str, Any]] = (),
) -> None:
    """Write ``net`` to ``path`` (``.safetensors``) and its JSON sidecar (``.json``).

    Args:
        path: the weights file, ending in ``.safetensors``.
        net: the network to save.
        meta: free JSON-able metadata (training settings, results); stored under ``"meta"``.
        observation_wrappers: the observation wrappers between the bare env and the network,
            innermost first, as ``{"name": CLASS_NAME, **keywords}`` with a name from
            :data:`WRAPPERS`; :func:`~shareverse_env.wrappers.wrap_for_policy` rebuilds them.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> net = ActorCritic(ActorCriticConfig((64, 96, 3), (-1.0, -1.0), (1.0, 1.0)))
        >>> path = Path(tempfile.mkdtemp()) / "net.safetensors"
        >>> save_policy(path, net, {"updates": 0})
        >>> sorted(p.name for p in path.parent.iterdir())
        ['net.json', 'net.safetensors']
    """
    weights = _weights_path(path)
    if weights.suffix != ".safetensors":
        raise ValueError(f"save_policy: path must end in .safetensors; got {path}")
    sidecar = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(net.config),
        "observation": {
            "shape": list(net.config.obs_shape),
            "dtype": "uint8",
            "image_key": net.config.image_key,
            "vectors": [list(v) for v in net.config.vectors],
        },
        "observation_wrappers": check_wrapper_specs(list(observation_wrappers), "save_policy"),
        "action": {"low": list(net.config.action_low), "high": list(net.config.action_high)},
        "meta": meta or {},
    }
    text = json.dumps(sidecar, indent=2, allow_nan=False) + "\n"  # fails early if not JSON-able
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    _atomic_write(
        weights, lambda tmp: save_file(state, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
    )
    _atomic_write(sidecar_path(weights), lambda tmp: tmp.write_text(text))


def read_policy_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked JSON sidecar of a checkpoint (``.safetensors`` or ``.json`` path)."""
    weights = _weights_path(path)
    sidecar = sidecar_path(weights)
    for file in (weights, sidecar):
        if not file.is_file():
            raise FileNotFoundError(f"policy checkpoint incomplete: no file {file}")
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"policy checkpoint {sidecar}: corrupt JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{sidecar} is not a {CHECKPOINT_FORMAT!r} checkpoint sidecar")
    if data.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{sidecar}: checkpoint version {data.get('version')!r} is not supported "
            f"(this code reads version {CHECKPOINT_VERSION})"
        )
    if not isinstance(data.get("config"), dict):
        raise ValueError(f"{sidecar} lacks the network config")
    return data


def read_policy_config(path: str | os.PathLike[str]) -> ActorCriticConfig:
    """The network config of a checkpoint's sidecar (``.safetensors`` or ``.json`` path)."""
    data = read_policy_sidecar(path)
    try:
        return ActorCriticConfig(**data["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{sidecar_path(_weights_path(path))}: bad network config ({err})"
        ) from err


def load_network(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ActorCritic:
    """The :class:`ActorCritic` saved at ``path`` (safetensors + JSON only; nothing unpickled)."""
    weights = _weights_path(path)
    config = read_policy_config(weights)
    net = ActorCritic(config)
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as err:
        raise ValueError(f"policy checkpoint {weights}: corrupt safetensors file ({err})") from err
    expected = net.state_dict()
    wrong = sorted(set(state) ^ set(expected))
    wrong += [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if wrong:
        raise ValueError(
            f"policy checkpoint {weights} does not match its sidecar's architecture "
            f"(mismatched tensors: {', '.join(wrong[:5])}{' …' if len(wrong) > 5 else ''})"
        )
    net.load_state_dict(state)
    return net.to(device).eval()


def _space_text(config: ActorCriticConfig) -> str:
    lows = ", ".join(f"{v:.4g}" for v in config.action_low)
    highs = ", ".join(f"{v:.4g}" for v in config.action_high)
    image = f"{tuple(config.obs_shape)} uint8"
    if config.image_key is not None:
        parts = [f"{config.image_key!r}: {image}"]
        parts += [f"{key!r}: {size} floats" for key, size in config.vectors]
        image = "Dict(" + ", ".join(parts) + ")"
    return f"observation {image}, action Box(low=[{lows}], high=[{highs}])"


def check_compatible(config: ActorCriticConfig, env: ParallelEnv, source: str = "policy") -> None:
    """Raise ``ValueError`` naming both sides when ``env``'s spaces differ from ``config``'s."""
    wanted = _space_text(config)
    is_dict = config.image_key is not None
    for agent in env.possible_agents:
        obs_space, act_space = env.observation_space(agent), env.action_space(agent)
        try:
            vector_keys = [key for key, _ in config.vectors] if is_dict else None
            got_config = ActorCriticConfig.for_spaces(obs_space, act_space, vector_keys)
        except ValueError as err:
            hint = ""
            if is_dict and not isinstance(obs_space, gymnasium.spaces.Dict):
                hint = (
                    "; wrap the env with shareverse_env.wrappers.wrap_for_policy(env, path) first"
                )
            raise ValueError(
                f"{source} made for {wanted} cannot drive {agent!r}: {err}{hint}"
            ) from err
        same = (
            got_config.obs_shape == config.obs_shape
            and got_config.image_key == config.image_key
            and got_config.vectors == config.vectors
            and got_config.action_dim == config.action_dim
            and np.allclose(act_space.low, config.action_low, atol=1e-5)
            and np.allclose(act_space.high, config.action_high, atol=1e-5)
        )
        if not same:
            hint = "use the same wrappers and view size as in training"
            if is_dict != isinstance(obs_space, gymnasium.spaces.Dict):
                hint = "wrap the env with shareverse_env.wrappers.wrap_for_policy(env, path) first"
            raise ValueError(
                f"{source} was made for {wanted}, but {agent!r} of this env has "
                f"{_space_text(got_config)}; {hint}"
            )


WRAPPERS: tuple[str, ...] = (
    "SelectViews",
    "ResizeObservation",
    "GrayscaleObservation",
    "StackChunkFrames",
    "DictObservation",
)
"""Observation wrappers a checkpoint may record (``observation_wrappers``) and
:func:`~shareverse_env.wrappers.wrap_for_policy` rebuilds, by class name of :mod:`shareverse_env.wrappers`."""


def check_wrapper_specs(specs: Any, source: str) -> list[dict[str, Any]]:
    """``specs`` checked as a list of :data:`WRAPPERS` entries (dicts with a ``name``); errors
    name ``source``."""
    if not isinstance(specs, list | tuple):
        raise ValueError(f"{source}: observation_wrappers must be a list; got {specs!r}")
    checked = []
    for spec in specs:
        if not isinstance(spec, dict) or spec.get("name") not in WRAPPERS:
            raise ValueError(
                f"{source}: each observation wrapper must be a dict with a 'name' in {WRAPPERS} "
                f"(plus its keyword arguments); got {spec!r}"
            )
        checked.append(dict(spec))
    return checked


def load_policy(
    path: str | os.PathLike[str],
    env: ParallelEnv,
    deterministic: bool = True,
    device: str | torch.device = "cpu",
    seed: int | None = 0,
) -> LearnedPolicy:
    """Load a checkpoint written by :func:`save_policy` as a policy driving ``env``.

    Raises:
        FileNotFoundError: when the weights or the sidecar is missing.
        ValueError: for a corrupt checkpoint, or one made for other spaces than ``env``'s (the
            message names both).

    Example:
        >>> import tempfile, shareverse_env
        >>> from pathlib import Path
        >>> env = shareverse_env.parallel_env(backend="world", max_cycles=2)
        >>> path = Path(tempfile.mkdtemp()) / "p.safetensors"
        >>> save_policy(path, ActorCritic.for_env(env))
        >>> other = shareverse_env.parallel_env(backend="world", view_hw=(48, 64))
        >>> load_policy(path, other)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: policy checkpoint ... was made for observation (128, 192, 3) uint8, ...
    """
    weights = _weights_path(path)
    config = read_policy_config(weights)
    # Check the spaces before reading the weights: the cheap, likely error first.
    check_compatible(config, env, source=f"policy checkpoint {weights}")
    net = load_network(weights, device)
    return LearnedPolicy(net, env, deterministic=deterministic, seed=seed)
