"""The monocular DepthNet: shapes, sky, metrics, loading and the shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from shareverse_env.models import depth as depth_mod
from shareverse_env.models.depth import (
    DepthNet,
    absrel,
    frames_to_views,
    load_depth_model,
    predict_depth,
    save_depth_model,
    sky_accuracy,
    views_to_frames,
)


def tiny_net(seed: int = 0) -> DepthNet:
    torch.manual_seed(seed)
    return DepthNet(widths=(4, 8, 8)).eval()


def test_view_split_round_trip() -> None:
    from shareverse_env.core.tiling import untile_views

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 128, 192, 3), dtype=np.uint8)
    views = frames_to_views(frames)
    assert views.shape == (8, 3, 64, 96)
    expected = untile_views(frames).reshape(8, 64, 96, 3).transpose(0, 3, 1, 2) / 255.0
    np.testing.assert_allclose(views.numpy(), expected, atol=1e-6)
    tiled = views_to_frames(views[:, 0])
    np.testing.assert_allclose(tiled.numpy(), frames[..., 0] / 255.0, atol=1e-6)


def test_predict_depth_shapes_and_dtype() -> None:
    net = tiny_net()
    frames = np.random.default_rng(1).integers(0, 256, (3, 128, 192, 3), dtype=np.uint8)
    out = predict_depth(net, frames, batch_size=2)
    assert out.shape == (3, 128, 192) and out.dtype == np.float32
    assert np.all(out > 0)
    single = predict_depth(net, frames[1])
    np.testing.assert_allclose(single, out[1], rtol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        predict_depth(net, frames.astype(np.float32))


def test_sky_logit_gives_inf() -> None:
    net = tiny_net()
    with torch.no_grad():
        net.head.bias[1] = 10.0  # sky everywhere
    out = predict_depth(net, np.zeros((1, 128, 192, 3), np.uint8))
    assert np.isinf(out).all()
    with torch.no_grad():
        net.head.bias[1] = -10.0
    assert np.isfinite(predict_depth(net, np.zeros((1, 128, 192, 3), np.uint8))).all()


def test_absrel_and_sky_accuracy() -> None:
    truth = np.array([[10.0, 20.0], [np.inf, 5.0]], np.float32)
    assert absrel(truth, truth) == 0.0
    assert absrel(truth * 1.1, truth) == pytest.approx(0.1)
    # a pixel wrongly called sky counts as max_depth, not inf
    pred = np.array([[np.inf, 20.0], [np.inf, 5.0]], np.float32)
    assert absrel(pred, truth, max_depth=100.0) == pytest.approx((90.0 / 10.0) / 3)
    assert np.isnan(absrel(truth, np.full((2, 2), np.inf)))
    assert sky_accuracy(pred, truth) == 0.75


def test_save_load_round_trip(tmp_path) -> None:
    net = tiny_net()
    save_depth_model(net, tmp_path / "run")
    loaded = load_depth_model(tmp_path / "run")
    frames = np.random.default_rng(2).integers(0, 256, (1, 128, 192, 3), dtype=np.uint8)
    # float16 storage: a small relative difference at most
    np.testing.assert_allclose(predict_depth(loaded, frames), predict_depth(net, frames), rtol=2e-2)
    same = load_depth_model(tmp_path / "run" / "depth.safetensors")
    assert same.widths == [4, 8, 8]


def test_load_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no depth weights"):
        load_depth_model(tmp_path)
    save_depth_model(tiny_net(), tmp_path / "a")
    (tmp_path / "a" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_depth_model(tmp_path / "a")
    save_depth_model(tiny_net(), tmp_path / "b")
    (tmp_path / "b" / "config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="format"):
        load_depth_model(tmp_path / "b")
    save_depth_model(tiny_net(), tmp_path / "c")
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["widths"] = [4, 8, 16]
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit"):
        load_depth_model(tmp_path / "c")


def test_shipped_weights_beat_constant_depth() -> None:
    from shareverse_env.backends import WorldBackend
    from shareverse_env.world.generator import generate_town

    shipped = depth_mod.WEIGHTS_DIR / depth_mod.WEIGHTS_FILE
    assert shipped.is_file(), f"{shipped} is not shipped"
    assert shipped.stat().st_size < 3_500_000
    model = load_depth_model()
    first = WorldBackend((64, 96)).first_frames(generate_town(0), "clear_noon", np.zeros((1, 3)))
    pred = predict_depth(model, first.rgb)
    truth = first.depth
    constant = np.full_like(truth, np.median(truth[np.isfinite(truth)]))
    assert absrel(pred, truth) < 0.8 * absrel(constant, truth)
    assert sky_accuracy(pred, truth) > 0.9
