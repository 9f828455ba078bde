"""Tests of the shared scene cache: lifting, car removal, FIFO, splatting, selection, validation.

Real frames come from the exact renderer in a hand-made town (a road past three buildings, as in
``tests/evaluation/_scenes.py``) at 32×48 views; the tolerances of the moved-pose tests were set
from measurements (see each test).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from shareverse_env.core.geometry import CameraRig
from shareverse_env.core.tiling import untile_views
from shareverse_env.scene import cache as scene_cache
from shareverse_env.scene.cache import SceneBuffer, SceneCache
from shareverse_env.world.renderer import Renderer


def _load_scenes():
    """The hand-made town of the evaluation tests (``tests/evaluation/_scenes.py``), loaded by
    path: that folder is not on ``sys.path`` when this file runs alone."""
    path = Path(__file__).parents[1] / "evaluation" / "_scenes.py"
    spec = importlib.util.spec_from_file_location("_scene_cache_town", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_SCENES = _load_scenes()
building, flat_town = _SCENES.building, _SCENES.flat_town

HW = (32, 48)
RIG = CameraRig()
# Agent 0 on the right lane heading +x; agent 1 ahead on the other lane, facing it.
POSES = np.array([[0.0, -1.75, 0.0], [12.0, 1.75, np.pi]])


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    town = flat_town(
        [
            building(25.0, 16.0),
            building(-10.0, -15.0, 5.0, 5.0, 20.0),
            building(15.0, -12.0, 4.0, 4.0, 8.0),
        ]
    )
    return Renderer(town, "clear_noon", view_hw=HW)


@pytest.fixture(scope="module")
def frame(renderer):
    """Both agents' exact frames at POSES: (rgb (2, 2H, 2W, 3), depth (2, 2H, 2W))."""
    out = renderer.render_agents(POSES[:, None])
    return out.rgb[:, 0], out.depth[:, 0]


def _buffer(rgb, depth, pose, agent=0, time=0) -> SceneBuffer:
    return SceneBuffer(rgb, depth, np.asarray(pose, dtype=np.float64), agent, time)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_module_imports_only_core_numpy_torch():
    tree = ast.parse(Path(scene_cache.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    assert names <= {
        "__future__",
        "collections",
        "collections.abc",
        "dataclasses",
        "numpy",
        "torch",
    } | {
        "shareverse_env.core.geometry",
        "shareverse_env.core.tiling",
        "shareverse_env.core.vehicle",
    }, names


def test_frame_rerendered_from_its_own_pose_reproduces_itself(frame):
    _, depth = frame
    rgb = np.random.default_rng(0).integers(0, 256, (2 * HW[0], 2 * HW[1], 3), dtype=np.uint8)
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(rgb, depth[0], POSES[0]))
    out = cache.render(POSES[:1])
    assert out.rgb.shape == (1, 64, 96, 3) and out.rgb.dtype == np.uint8
    assert out.depth.shape == (1, 64, 96) and out.depth.dtype == np.float32
    assert out.valid.shape == (1, 64, 96) and out.valid.dtype == bool
    # Every pixel (ground, walls, the other car and sky) is drawn, by its own point.
    assert out.valid.all()
    np.testing.assert_array_equal(out.rgb[0], rgb)
    np.testing.assert_array_equal(np.isinf(out.depth[0]), np.isinf(depth[0]))
    fin = np.isfinite(depth[0])
    np.testing.assert_allclose(out.depth[0][fin], depth[0][fin], rtol=1e-5)


def test_sky_stays_put_under_pure_translation():
    rgb = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    sky = np.full((64, 96), np.inf, np.float32)
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(rgb, sky, [3.0, -2.0, 0.4]))
    out = cache.render(np.array([[3.0, -2.0, 0.4], [40.0, 25.0, 0.4], [-300.0, 90.0, 0.4]]))
    assert out.valid.all() and np.isinf(out.depth).all()
    for f in range(3):
        np.testing.assert_array_equal(out.rgb[f], rgb)
    # A quarter turn to the left: the right camera now looks where the front one did.
    turned = cache.render(np.array([[50.0, 7.0, 0.4 + np.pi / 2]]))
    np.testing.assert_array_equal(untile_views(turned.rgb[0])[3], untile_views(rgb)[0])


def test_sky_loses_to_any_surface(frame):
    rgb, depth = frame
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(rgb[0], depth[0], POSES[0]))
    out = cache.render(POSES[:1] + np.array([[1.0, 0.0, 0.0]]))
    # Sky never covers a pixel the buffer's surfaces reach: where both are drawn, depth is finite.
    near = np.isfinite(out.depth[0])
    assert near.mean() > 0.4


def test_points_on_cars_are_dropped(renderer):
    poses = np.array([[0.0, -1.75, 0.0], [7.0, 1.75, np.pi]])
    out = renderer.render_agents(poses[:, None])
    rgb, depth = out.rgb[0, 0], out.depth[0, 0]
    # The pixels where agent 1's car stands in agent 0's frame.
    empty = renderer.render(poses[:1]).depth[0]
    with np.errstate(invalid="ignore"):
        on_car = ~(np.abs(empty - depth) <= 1e-3) & ~(np.isinf(empty) & np.isinf(depth))
    assert on_car.sum() > 50
    kept = SceneCache(RIG, HW)
    kept.add(_buffer(rgb, depth, poses[0]))
    assert kept.render(poses[:1]).valid[0][on_car].all()
    dropped = SceneCache(RIG, HW)
    dropped.add(_buffer(rgb, depth, poses[0]), car_poses=poses)
    valid = dropped.render(poses[:1]).valid[0]
    assert not valid[on_car].any()
    # Only the car (and the ground within the margin right around it) goes.
    assert (~valid & ~on_car).sum() < 0.1 * on_car.sum()


def test_capacity_and_fifo(frame):
    rgb, depth = frame
    cache = SceneCache(RIG, HW, capacity=3, eviction="oldest")
    for t in range(5):
        cache.add(_buffer(rgb[0], depth[0], POSES[0] + [t, 0.0, 0.0], agent=t % 2, time=t))
        assert len(cache) == min(t + 1, 3)
    assert [b.time for b in cache.buffers] == [2, 3, 4]
    assert [b.agent for b in cache.buffers] == [0, 1, 0]
    cache.clear()
    assert len(cache) == 0
    empty = cache.render(POSES[:1])
    assert not empty.valid.any() and np.isinf(empty.depth).all() and not empty.rgb.any()


def test_coverage_eviction_drops_what_the_cars_cannot_see_not_the_oldest(frame):
    rgb, depth = frame
    far = POSES[0] + [300.0, 0.0, 0.0]  # the same views, 300 m down the road
    kept = {}
    for policy in scene_cache.EVICTION_POLICIES:
        cache = SceneCache(RIG, HW, capacity=2, eviction=policy)
        cache.add(_buffer(rgb[0], depth[0], POSES[0], time=0))
        cache.add(_buffer(rgb[0], depth[0], far, time=1))
        cache.add(_buffer(rgb[1], depth[1], POSES[1], agent=1, time=2), car_poses=POSES)
        kept[policy] = [b.time for b in cache.buffers]
    # From the cars at POSES the far buffer covers least (its sky only): it goes, not the oldest.
    assert kept == {"coverage": [0, 2], "oldest": [1, 2]}
    coverage = SceneCache(RIG, HW).coverage(POSES)  # an empty cache: nothing to rank
    assert coverage.shape == (0,)


def test_coverage_eviction_ranks_new_buffers_too_and_looks_from_the_newest(frame):
    rgb, depth = frame
    far = POSES[0] + [300.0, 0.0, 0.0]
    cache = SceneCache(RIG, HW, capacity=1)
    cache.add(_buffer(rgb[0], depth[0], POSES[0], time=0))
    # Seen from the cars, a new buffer 300 m away covers least: it goes at once.
    cache.add(_buffer(rgb[0], depth[0], far, time=1), car_poses=POSES)
    assert [b.time for b in cache.buffers] == [0]
    # Without car poses the cache looks from the new buffer's own pose: now the near one goes.
    cache.add(_buffer(rgb[0], depth[0], far, time=2))
    assert [b.time for b in cache.buffers] == [2]
    # One add ranks all its buffers together: the two at POSES[0] stay, the far one goes.
    cache = SceneCache(RIG, HW, capacity=2)
    cache.add_many(
        [_buffer(rgb[0], depth[0], p, time=t) for t, p in enumerate([POSES[0], far, POSES[0]])]
    )
    assert [b.time for b in cache.buffers] == [0, 2]


def test_add_many_validates_everything_first(frame):
    rgb, depth = frame
    cache = SceneCache(RIG, HW, capacity=4)
    cache.add(_buffer(rgb[0], depth[0], POSES[0], time=0))
    good = _buffer(rgb[1], depth[1], POSES[1], agent=1, time=1)
    small = SceneBuffer(rgb[0][:32, :48].copy(), depth[0][:32, :48].copy(), POSES[0], 0, 2)
    with pytest.raises(ValueError, match=r"rgb.*\(buffer 1\)"):
        cache.add_many([good, small])
    with pytest.raises(ValueError, match="one entry per buffer"):
        cache.add_many([good], [POSES, POSES])
    with pytest.raises(ValueError, match="car_poses"):
        cache.add_many([good, good], [POSES, np.array([[0.0, np.nan, 0.0]])])
    assert [b.time for b in cache.buffers] == [0]
    with pytest.raises(ValueError, match="eviction must be one of"):
        SceneCache(RIG, HW, eviction="newest")
    for bad in (0, 17, True, (6,), (6, 0), (6.0, 3)):
        with pytest.raises(ValueError, match="max_footprint must be an integer"):
            SceneCache(RIG, HW, max_footprint=bad)
    assert SceneCache(RIG, HW, max_footprint=[4, 2]).max_footprint == (4, 2)
    assert SceneCache(RIG, HW).max_footprint == scene_cache.MAX_FOOTPRINT == (6, 3)


def test_render_a_subset(frame):
    rgb, depth = frame
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(rgb[0], depth[0], POSES[0]))
    cache.add(_buffer(rgb[1], depth[1], POSES[1], agent=1))
    both = cache.render(POSES[:1])
    first = cache.render(POSES[:1], indices=[0])
    np.testing.assert_array_equal(first.rgb[0][first.valid[0]], rgb[0][first.valid[0]])
    assert both.valid.sum() >= first.valid.sum()
    with pytest.raises(ValueError, match="indices"):
        cache.render(POSES[:1], indices=[2])


def test_nearest_depth_wins_over_background(frame):
    """Agent 1's buffer sees the background behind agent 0's front wall; it must not bleed."""
    rgb, depth = frame
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(rgb[0], depth[0], POSES[0]), car_poses=POSES)
    cache.add(_buffer(rgb[1], depth[1], POSES[1], agent=1), car_poses=POSES)
    out = cache.render(POSES[:1])
    fin = np.isfinite(depth[0]) & out.valid[0]
    # Nowhere is the drawn surface farther than agent 0's own exact depth (beyond a splat's slack).
    assert np.mean(out.depth[0][fin] > depth[0][fin] * 1.05 + 0.1) < 0.01


def test_select_returns_the_buffer_that_covers_most(frame):
    rgb, depth = frame
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(rgb[1], depth[1], POSES[1], agent=1))  # 0: the other agent's view
    cache.add(_buffer(rgb[0], depth[0], POSES[0] + [-60.0, 30.0, 0.0]))  # 1: far away
    cache.add(_buffer(rgb[0], depth[0], POSES[0]))  # 2: this very view
    cache.add(_buffer(rgb[0], depth[0], POSES[0] + [30.0, 20.0, 2.0]))  # 3: elsewhere, turned
    plan = POSES[0] + np.linspace(0.0, 2.0, 8)[:, None] * np.array([1.0, 0.0, 0.0])
    cov = cache.coverage(plan)
    assert cov.shape == (4,) and np.all((0 <= cov) & (cov <= 1))
    assert int(np.argmax(cov)) == 2
    sel = cache.select(plan, 2)
    assert sel.dtype == np.int64 and sel[0] == 2 and len(sel) == 2
    assert len(cache.select(plan, 10)) == 4
    assert len(cache.select(plan, 0)) == 0


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("depth", lambda r, d, p: (r, np.where(np.arange(d.size).reshape(d.shape) == 5, np.nan, d).astype(np.float32), p)),
        ("depth", lambda r, d, p: (r, np.where(np.arange(d.size).reshape(d.shape) == 7, -1.0, d).astype(np.float32), p)),
        ("depth", lambda r, d, p: (r, d.astype(np.float64), p)),
        ("depth", lambda r, d, p: (r, d[:-2], p)),
        ("rgb", lambda r, d, p: (r.astype(np.float32), d, p)),
        ("rgb", lambda r, d, p: (r[..., :2], d, p)),
        ("rgb", lambda r, d, p: (r[:-1], d[:-1], p)),
        ("pose", lambda r, d, p: (r, d, np.array([0.0, np.nan, 0.0]))),
        ("pose", lambda r, d, p: (r, d, np.zeros(2))),
    ],
)  # fmt: skip
def test_bad_buffers_raise_naming_the_field(frame, field, change):
    rgb, depth = frame
    args = change(rgb[0], depth[0], POSES[0])
    with pytest.raises(ValueError, match=field):
        SceneBuffer(*args, agent=0, time=0)


@pytest.mark.parametrize(("agent", "time"), [(-1, 0), (0, -3), (0, 1.5), (True, 0)])
def test_bad_agent_or_time(frame, agent, time):
    rgb, depth = frame
    with pytest.raises(ValueError, match="agent" if agent != 0 else "time"):
        SceneBuffer(rgb[0], depth[0], POSES[0], agent, time)


def test_bad_input_leaves_the_cache_unchanged(frame):
    rgb, depth = frame
    cache = SceneCache(RIG, HW, capacity=1)
    cache.add(_buffer(rgb[0], depth[0], POSES[0]))
    before = cache.render(POSES[:1])
    small = SceneBuffer(rgb[0][:32, :48].copy(), depth[0][:32, :48].copy(), POSES[0], 0, 1)
    bad_calls = [
        (lambda: cache.add(small), "rgb"),
        (lambda: cache.add(_buffer(rgb[1], depth[1], POSES[1]), np.array([[0, np.nan, 0]])), "car_poses"),
        (lambda: cache.add(_buffer(rgb[1], depth[1], POSES[1]), np.zeros((2, 2))), "car_poses"),
        (lambda: cache.add((rgb[1], depth[1], POSES[1])), "buffer"),
        (lambda: cache.render(np.array([[0.0, 0.0, np.inf]])), "poses"),
        (lambda: cache.render(np.zeros(3)), "poses"),
    ]  # fmt: skip
    for call, field in bad_calls:
        with pytest.raises(ValueError, match=field):
            call()
        assert len(cache) == 1 and cache.buffers[0].time == 0
    after = cache.render(POSES[:1])
    np.testing.assert_array_equal(after.rgb, before.rgb)
    np.testing.assert_array_equal(after.valid, before.valid)


@pytest.mark.parametrize(
    ("forward", "min_coverage", "min_psnr"),
    # Measured: 1 m → coverage 0.917, 28.96 dB, median relative depth error 0.22 %, sky agrees
    #           on 99.56 % of covered pixels; 2 m → 0.908, 27.62 dB, 0.56 %, 99.37 %
    # (uncovered: the dropped car and the ground it hid, newly seen ground, the view edges).
    [(1.0, 0.88, 27.5), (2.0, 0.87, 26.0)],
)
def test_moved_pose_matches_the_exact_renderer(renderer, frame, forward, min_coverage, min_psnr):
    rgb, depth = frame
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(rgb[0], depth[0], POSES[0]), car_poses=POSES)
    moved = POSES.copy()
    moved[0, 0] += forward
    exact = renderer.render_agents(moved[:, None])
    out = cache.render(moved[:1])
    valid = out.valid[0]
    assert valid.mean() >= min_coverage
    assert _psnr(out.rgb[0][valid], exact.rgb[0, 0][valid]) >= min_psnr
    both = valid & np.isfinite(exact.depth[0, 0]) & np.isfinite(out.depth[0])
    rel = np.abs(out.depth[0][both] - exact.depth[0, 0][both]) / exact.depth[0, 0][both]
    assert np.median(rel) < 0.015
    # Sky where the exact renderer sees sky, on all but the horizon's pixels.
    assert np.mean(np.isinf(out.depth[0][valid]) == exact.sky[0, 0][valid]) > 0.99


def test_forward_move_leaves_no_pinholes_on_the_near_road(renderer):
    """With no other car in view, the lower half of the front view stays covered after 2 m."""
    poses = np.array([[0.0, -1.75, 0.0], [60.0, 1.75, np.pi]])
    out = renderer.render_agents(poses[:, None])
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(out.rgb[0, 0], out.depth[0, 0], poses[0]), car_poses=poses)
    moved = poses[:1] + np.array([[2.0, 0.0, 0.0]])
    front = cache.render(moved).valid[0][: HW[0], : HW[1]]
    lower = front[HW[0] // 2 + 1 :]  # below the horizon row
    assert lower.all()


@pytest.mark.parametrize("forward", [10.0, 14.0, 18.0])
def test_a_facade_seen_at_a_slant_shows_nothing_behind_it_when_faced_with_larger_splats(forward):
    """A facade along the road, seen ahead at a slant by the front camera, then faced by the
    left camera from up to 18 m further on: each source pixel then spans several target pixels
    across, and the splats must close over it (no sky or far points between them, few holes).

    Measured on these views (share of the facade's pixels above the horizon that show something
    over 1.3× farther / stay uncovered): with footprints capped at 3 × 3 (the default until
    2026-12-06), 10 m 1.7 % / 7.4 %, 14 m 12.5 % / 4.2 %, 18 m 28.6 % / 13.0 %; at 4 × 4, 18 m
    19.3 % / 9.9 %; at 6 × 6 and at the default 6 wide × 3 high, 0 % / 0 % at 10 and 14 m and
    0.8 % / 3.4 % at 18 m (the gaps are across, so the height cap does not matter here).
    """
    town = flat_town([building(30.0, 14.0, 12.0, 6.0, 12.0)])  # its facade along y = 8 m
    renderer = Renderer(town, "clear_noon", view_hw=HW)
    start = np.array([[0.0, -1.75, 0.0]])
    first = renderer.render_agents(start[:, None])
    moved = start + np.array([[forward, 0.0, 0.0]])
    exact = untile_views(renderer.render_agents(moved[:, None]).depth[0, 0][..., None])[2, ..., 0]
    facade = np.isfinite(exact) & (exact < 15.0)
    facade[HW[0] // 2 :] = False  # above the horizon: the wall, not the road
    assert facade.sum() > 100
    shares = {}
    for largest in (3, 6, None):
        cache = (
            SceneCache(RIG, HW) if largest is None else SceneCache(RIG, HW, max_footprint=largest)
        )
        cache.add(_buffer(first.rgb[0, 0], first.depth[0, 0], start[0]))
        out = cache.render(moved)
        depth = untile_views(out.depth[0][..., None])[2, ..., 0]  # the left view
        valid = untile_views(out.valid[0][..., None])[2, ..., 0]
        behind = facade & valid & (depth > 1.3 * exact)
        shares[largest] = (behind.sum() / facade.sum(), (facade & ~valid).sum() / facade.sum())
    for closed in (shares[6], shares[None]):  # None: the default, 6 × 3
        assert closed[0] < 0.02 and closed[1] < 0.05
    assert sum(shares[3]) > sum(shares[None])  # the old cap left gaps there


def test_own_view_wins_over_a_coarser_buffer_of_the_same_surfaces(renderer, frame):
    """A buffer 6 m behind also covers this pose; the frame's own buffer still wins its pixels
    (finest footprint, then nearest the pixel centre, among candidates within the depth
    tolerance). Measured: 91.4 % of the covered pixels identical with splats capped at 3 × 3
    (the rest: near the horizon, where one pixel spans tens of metres of depth and the far
    buffer is nearer by > 10 %, and along silhouettes). With 6 × 6, 86.3 %: the far buffer's
    larger splats reach half a source pixel past an edge and, being nearer, win over the
    background there (the extra mismatches, 312 pixels, all lie within 3 px of a depth
    edge). At the default 6 × 3, 90.4 %."""
    rgb, depth = frame
    back = POSES.copy()
    back[0, 0] -= 6.0
    behind = renderer.render_agents(back[:, None])
    cache = SceneCache(RIG, HW)
    cache.add(_buffer(behind.rgb[0, 0], behind.depth[0, 0], back[0]), car_poses=back)
    cache.add(_buffer(rgb[0], depth[0], POSES[0], time=1), car_poses=POSES)
    out = cache.render(POSES[:1])
    same = (out.rgb[0] == rgb[0]).all(-1)[out.valid[0]]
    assert same.mean() > 0.88


# ------------------------------------------------------------------------ partial-depth buffers


def _half_mask(left: bool, frac: float = 0.5) -> np.ndarray:
    """Tiled bool mask: the left (or right) ``frac`` of the columns of every view."""
    cols = np.arange(HW[1])
    view = np.broadcast_to(cols < frac * HW[1] if left else cols >= (1 - frac) * HW[1], HW)
    return np.tile(view, (2, 2))


def test_masked_buffer_reproduces_exactly_its_masked_in_pixels(frame):
    _, depth = frame
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (2 * HW[0], 2 * HW[1], 3), dtype=np.uint8)
    mask = rng.random(depth[0].shape) < 0.6
    holes = np.where(mask, depth[0], np.nan).astype(np.float32)  # NaN where not lifted: allowed
    cache = SceneCache(RIG, HW)
    cache.add(SceneBuffer(rgb, holes, POSES[0], 0, 0, mask=mask))
    out = cache.render(POSES[:1])
    np.testing.assert_array_equal(out.valid[0], mask)
    np.testing.assert_array_equal(out.rgb[0][mask], rgb[mask])
    np.testing.assert_array_equal(np.isinf(out.depth[0][mask]), np.isinf(depth[0][mask]))
    fin = mask & np.isfinite(depth[0])
    np.testing.assert_allclose(out.depth[0][fin], depth[0][fin], rtol=1e-5)


def test_masked_pixels_are_never_drawn(frame):
    """Masked-out pixels carry a colour (255) no kept pixel has; no pose may show it."""
    _, depth = frame
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 200, (2 * HW[0], 2 * HW[1], 3), dtype=np.uint8)
    mask = np.ones(depth[0].shape, dtype=bool)
    mask[10:40, 20:70] = False  # ground, walls and sky of several views
    mask[::7] = False
    rgb[~mask] = 255
    cache = SceneCache(RIG, HW)
    cache.add(SceneBuffer(rgb, depth[0], POSES[0], 0, 0, mask=mask))
    poses = POSES[0] + np.array([[0.0, 0.0, 0.0], [1.5, 0.2, 0.05], [3.0, 0.0, -0.1]])
    out = cache.render(poses)
    assert out.valid.mean() > 0.5
    assert out.rgb.max() < 255
    # With the mask all True, the same frame draws those pixels.
    full = SceneCache(RIG, HW)
    full.add(SceneBuffer(rgb, depth[0], POSES[0], 0, 0, mask=np.ones_like(mask)))
    assert (full.render(poses[:1]).rgb == 255).any()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d, m: (d, m.astype(np.uint8)), "mask"),
        (lambda d, m: (d, m[:-2]), "mask"),
        (lambda d, m: (np.where(np.arange(d.size).reshape(d.shape) == 5, np.nan, d).astype(np.float32), m), "depth"),
        (lambda d, m: (np.where(np.arange(d.size).reshape(d.shape) == 7, -1.0, d).astype(np.float32), m), "depth"),
    ],
)  # fmt: skip
def test_bad_masks_raise_naming_the_field(frame, change, field):
    rgb, depth = frame
    mask = np.ones(depth[0].shape, dtype=bool)
    mask[0, 0] = False  # index 5 and 7 stay lifted
    d, m = change(depth[0], mask)
    with pytest.raises(ValueError, match=field):
        SceneBuffer(rgb[0], d, POSES[0], 0, 0, mask=m)


def test_nan_and_negative_depth_are_fine_where_masked_out(frame):
    rgb, depth = frame
    mask = np.ones(depth[0].shape, dtype=bool)
    mask[:4] = False
    d = depth[0].copy()
    d[:2], d[2:4] = np.nan, -1.0
    buffer = SceneBuffer(rgb[0], d, POSES[0], 0, 0, mask=mask)
    assert buffer.mask is mask or np.array_equal(buffer.mask, mask)
    assert SceneBuffer(rgb[0], depth[0], POSES[0], 0, 0).mask is None


# ------------------------------------------------------------------------ selection methods


def _plan() -> np.ndarray:
    return POSES[0] + np.linspace(0.0, 2.0, 8)[:, None] * np.array([1.0, 0.0, 0.0])


def test_selection_takes_the_highest_coverage_newest_first(frame):
    rgb, depth = frame
    cache = SceneCache(RIG, HW)
    left, right = _half_mask(True), _half_mask(False, 0.4)
    cache.add(SceneBuffer(rgb[0], depth[0], POSES[0], 0, 0, mask=left))  # 0
    cache.add(SceneBuffer(rgb[0], depth[0], POSES[0], 0, 1, mask=right))  # 1: the other side
    cache.add(SceneBuffer(rgb[0], depth[0], POSES[0], 0, 2, mask=left))  # 2: duplicate of 0
    plan = _plan()
    cov = cache.coverage(plan)
    assert cov[1] < cov[0] == cov[2]
    picked = cache.select(plan, 2)
    assert picked.dtype == np.int64 and list(picked) == [2, 0]  # the duplicates, newest first
    assert list(cache.select(plan, 3)) == [2, 0, 1]
    assert len(cache.select(plan, 0)) == 0
