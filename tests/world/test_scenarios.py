"""Scenarios: the six interaction modes on hand-made and generated towns, N agents, errors."""

import dataclasses
import doctest
import json

import numpy as np
import pytest
from _towns import block_buildings, grid_roads, grid_town

import shareverse_env.world.scenarios as scenarios_module
from shareverse_env.core.geometry import plan_chunk, relative_se2, world_to_ego, wrap_angle
from shareverse_env.envs.rewards import RewardConfig, chunk_reward
from shareverse_env.world.collision import CAR_HALF_EXTENT, first_collisions, rectangles_overlap
from shareverse_env.world.routes import Route
from shareverse_env.world.scenarios import (
    MIN_START_GAP,
    MIN_TRAVEL,
    ROLES,
    SCENARIOS,
    TRAVEL_RANGE,
    AgentPlan,
    Scenario,
    make_scenario,
)
from shareverse_env.world.scene import BoxSet, Surface
from shareverse_env.world.town import Town

SEEDS = range(4)


@pytest.fixture(scope="module")
def town() -> Town:
    """A 5×5 grid, 70 m blocks with buildings; two dropped roads make inner T-junctions."""
    roads = grid_roads(5, 5, 70.0)
    return grid_town(5, 5, 70.0, drop=[(6, 7), (12, 17)], boxes=block_buildings(roads, 70.0, 5, 5))


@pytest.fixture(scope="module")
def generated_towns():
    generator = pytest.importorskip("shareverse_env.world.generator")
    return [generator.generate_town(seed) for seed in (0, 1)]


def test_doctests():
    result = doctest.testmod(scenarios_module)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ invariants


def check_invariants(town: Town, scenario: Scenario, num_agents: int) -> None:
    assert scenario.name in SCENARIOS
    assert len(scenario.agents) == num_agents
    roles = ROLES[scenario.name]
    starts = np.array([plan.start for plan in scenario.agents])
    for k, plan in enumerate(scenario.agents):
        assert plan.role == roles[k % 2]
        assert plan.follows == (None if k < 2 else k % 2)
        route = plan.route
        # The start is the route's first pose and lies on the lane, on the road.
        np.testing.assert_allclose(plan.start, route.pose_at(0.0), atol=1e-9)
        s, lat = route.project(plan.start[:2])
        assert abs(float(s)) < 1e-6 and abs(float(lat)) < 1e-6
        assert town.ground.surface_at(plan.start[:2]) == Surface.ROAD
        # The goal is the route's end.
        np.testing.assert_allclose(plan.goal, route.points[-1])
        assert plan.goal_s == pytest.approx(route.length)
        assert MIN_TRAVEL - 1e-6 <= route.length <= 250.0
        # The route is drivable: on the road and clear of static boxes.
        poses = route.pose_at(np.arange(0.0, route.length, 1.0))
        assert first_collisions(town, poses[None], check_cars=False) == [None]
    # Starts are apart and collision-free.
    gaps = np.linalg.norm(starts[:, None, :2] - starts[None, :, :2], axis=-1)
    assert gaps[~np.eye(num_agents, dtype=bool)].min(initial=np.inf) >= MIN_START_GAP
    assert first_collisions(town, starts[:, None, :]) == [None] * num_agents
    # No route runs into a car parked at another agent's goal after that agent got there.
    for j, pj in enumerate(scenario.agents):
        s = np.arange(0.0, pj.route.length, 0.5)
        poses = pj.route.pose_at(s)
        for i, pi in enumerate(scenario.agents):
            if i == j:
                continue
            parked = pi.route.pose_at(pi.goal_s)
            hit = rectangles_overlap(
                poses[:, :2], CAR_HALF_EXTENT, poses[:, 2], parked[:2], CAR_HALF_EXTENT, parked[2]
            )
            if hit.any():
                assert s[np.argmax(hit)] < pi.goal_s - 5.0, (i, j)
    # JSON-friendly infos.
    for k in range(num_agents):
        info = scenario.to_info(k)
        assert json.loads(json.dumps(info)) == info
        assert info["name"] == scenario.name and info["role"] == roles[k % 2]
        assert len(info["route"]) >= 2 and info["route_length"] > 0


def _heading(route: Route, s: float) -> float:
    return float(route.pose_at(s)[2])


def _turn_through(route: Route, xy: np.ndarray) -> float:
    """Heading change of ``route`` from 15 m before to 15 m after the point nearest ``xy``."""
    s = float(route.project(xy)[0])
    return float(wrap_angle(_heading(route, s + 15.0) - _heading(route, s - 15.0)))


def _meeting_point(a: Route, b: Route, within: float = 4.0) -> tuple[np.ndarray, float]:
    """The first point of route ``a`` that comes within ``within`` metres of route ``b`` (both
    cut to their first 80 m), and the closest distance between those parts."""
    pa = a.pose_at(np.arange(0.0, min(80.0, a.length), 0.5))[:, :2]
    pb = b.pose_at(np.arange(0.0, min(80.0, b.length), 0.5))[:, :2]
    d = np.linalg.norm(pa[:, None] - pb[None], axis=-1).min(axis=1)
    return pa[int(np.argmax(d < within))], float(d.min())


def check_layout(town: Town, scenario: Scenario) -> None:
    """The two primary agents do what the scenario says, and meet early."""
    a, b = scenario.agents[:2]
    ha, hb = float(a.start[2]), float(b.start[2])
    meet, closest = _meeting_point(a.route, b.route)
    # Both routes come within a lane width of each other within their first 80 m.
    assert closest < 4.0
    assert np.linalg.norm(a.start[:2] - b.start[:2]) < 80.0
    nodes = town.roads.nodes
    junction = int(np.argmin(np.linalg.norm(nodes - meet, axis=1)))
    name = scenario.name
    if name == "head_on":
        assert abs(abs(wrap_angle(ha - hb)) - np.pi) < 1e-6
        # b starts in the opposite lane: one lane width to a's left, measured on a's straight
        # part (a's route may already turn at a junction near b's start on short blocks).
        lat = float(world_to_ego(a.start, b.start[:2])[1])
        assert lat == pytest.approx(town.roads.lane_width, abs=1e-6)
        assert 40.0 <= np.linalg.norm(a.start[:2] - b.start[:2]) <= 80.0
    elif name == "following":
        assert abs(wrap_angle(ha - hb)) < 1e-6
        # The follower is behind the leader on the same lane.
        s_b, lat_b = b.route.project(a.start[:2])
        assert abs(float(lat_b)) < 1e-6 and 15.0 - 1e-6 <= float(s_b) <= 30.0 + 1e-6
        # The follower stops behind the leader's goal, where the leader's car will stand.
        assert float(a.route.project(b.goal)[0]) <= a.goal_s - 5.0
    elif name == "crossing":
        assert town.roads.junction_kind(junction) == "X"
        assert abs(abs(wrap_angle(ha - hb)) - np.pi / 2) < 1e-6
        assert abs(_turn_through(a.route, nodes[junction])) < 1e-6
        assert abs(_turn_through(b.route, nodes[junction])) < 1e-6
    elif name == "t_junction":
        # The junction is where b turns (its sharpest heading change), not the first near point.
        sb = np.arange(0.0, min(80.0, b.route.length), 0.5)
        turn = np.abs(wrap_angle(np.diff(b.route.pose_at(sb)[:, 2])))
        corner = b.route.pose_at(sb[int(np.argmax(turn))])[:2]
        junction = int(np.argmin(np.linalg.norm(nodes - corner, axis=1)))
        assert town.roads.junction_kind(junction) == "T"
        assert abs(_turn_through(a.route, nodes[junction])) < 1e-6
        assert abs(abs(_turn_through(b.route, nodes[junction])) - np.pi / 2) < 1e-6
    elif name == "left_turn_across":
        assert town.roads.junction_kind(junction) == "X"
        assert abs(abs(wrap_angle(ha - hb)) - np.pi) < 1e-6
        assert abs(_turn_through(a.route, nodes[junction])) < 1e-6
        assert _turn_through(b.route, nodes[junction]) == pytest.approx(np.pi / 2, abs=1e-6)
    elif name == "diverge":
        assert abs(wrap_angle(ha - hb)) < 1e-6
        # Same lane: one start lies on the other's route (behind it or ahead).
        lat_ab = abs(float(a.route.project(b.start[:2])[1]))
        lat_ba = abs(float(b.route.project(a.start[:2])[1]))
        assert min(lat_ab, lat_ba) < 1e-6
        assert 15.0 - 1e-6 <= np.linalg.norm(a.start[:2] - b.start[:2]) <= 25.0 + 1e-6
        # They split at a junction ahead of both: a turns left, b right.
        lead, follow = (b, a) if lat_ab < 1e-6 else (a, b)
        split = lead.route.pose_at(np.arange(0.0, 80.0, 0.5))[:, :2]
        apart = np.abs(follow.route.project(split)[1]) > 0.5
        fork = split[np.argmax(apart)]
        junction = int(np.argmin(np.linalg.norm(nodes - fork, axis=1)))
        assert town.roads.junction_kind(junction) in ("X", "T")
        assert _turn_through(a.route, nodes[junction]) == pytest.approx(np.pi / 2, abs=1e-6)
        assert _turn_through(b.route, nodes[junction]) == pytest.approx(-np.pi / 2, abs=1e-6)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_on_a_hand_made_town(town, name):
    for seed in SEEDS:
        scenario = make_scenario(town, name, 2, np.random.default_rng(seed))
        assert scenario.name == name
        check_invariants(town, scenario, 2)
        check_layout(town, scenario)


@pytest.mark.parametrize("name", SCENARIOS)
def test_one_and_more_agents(town, name):
    for n in (1, 3, 5):
        scenario = make_scenario(town, name, n, np.random.default_rng(10 + n))
        check_invariants(town, scenario, n)
        for k in range(2, n):
            # Extra agents share their role's lane: one of the two starts lies on the other's route.
            lead = scenario.agents[k % 2]
            plan = scenario.agents[k]
            on_lead = abs(float(lead.route.project(plan.start[:2])[1])) < 1e-6
            on_extra = abs(float(plan.route.project(lead.start[:2])[1])) < 1e-6
            assert on_lead or on_extra


# The env's action bounds (docs/conventions.md): forward, lateral, yaw over one chunk.
ACTION_LOW = np.array([-5.0, -3.0, -np.pi / 2])
ACTION_HIGH = np.array([28.0, 3.0, np.pi / 2])


def follow_route(town: Town, plan: AgentPlan, max_steps: int = 30):
    """Drive ``plan`` with a simple look-ahead controller inside the env's action bounds.

    Returns ``(steps, total reward, reached goal, first collision)``.
    """
    pose, prev, total = plan.start.copy(), np.zeros(3), 0.0
    for step in range(1, max_steps + 1):
        s = float(plan.route.project(pose[:2])[0])
        ahead = 16.0
        while True:  # shorten the look-ahead in turns until the action is feasible
            target = plan.route.pose_at(min(s + ahead, plan.route.length))
            action = relative_se2(pose, target)
            if (abs(action[1]) <= 3.0 and abs(action[2]) <= 0.8) or ahead < 3.0:
                break
            ahead *= 0.8
        action = np.clip(action, ACTION_LOW, ACTION_HIGH)
        poses = plan_chunk(pose, action)
        hit = first_collisions(town, poses[None], check_cars=False)[0]
        reward, _, reached = chunk_reward(
            RewardConfig(), plan.route, plan.goal, poses, action, prev, hit
        )
        total += reward
        pose, prev = poses[-1], action
        if hit is not None or reached:
            return step, total, reached, hit
    return max_steps, total, False, None


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_route_follower_reaches_every_goal(town, name):
    scenario = make_scenario(town, name, 2, np.random.default_rng(3))
    for plan in scenario.agents:
        steps, total, reached, hit = follow_route(town, plan)
        assert hit is None and reached, (plan.role, steps, hit)
        assert total > 0.1 * MIN_TRAVEL


@pytest.mark.parametrize("name", SCENARIOS)
def test_travel_range(town, name):
    for n, seed in ((2, 0), (2, 1), (3, 2)):
        short = make_scenario(town, name, n, np.random.default_rng(seed), travel_range=(60, 90))
        check_invariants(town, short, n)
        lengths = [plan.route.length for plan in short.agents]
        # Never longer than the range (parked goals only shorten); at least MIN_TRAVEL.
        assert max(lengths) <= 90.0 + 1e-6 and min(lengths) >= MIN_TRAVEL - 1e-6
        default = make_scenario(town, name, n, np.random.default_rng(seed))
        same = make_scenario(town, name, n, np.random.default_rng(seed), travel_range=TRAVEL_RANGE)
        assert [default.to_info(k) for k in range(n)] == [same.to_info(k) for k in range(n)]


def goal_distances(scenario: Scenario) -> list[float]:
    """Metres of route from each agent's start to its goal."""
    return [plan.goal_s for plan in scenario.agents]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_goal_lies_in_the_travel_range(town, generated_towns, name):
    # The end shift used to take goals up to 10 m under lo: (60, 60) failed everywhere ("route
    # too short") and the default range gave goals under 140 m.
    for where in (town, *generated_towns):
        for seed in range(3):
            exact = make_scenario(
                where, name, 2, np.random.default_rng(seed), travel_range=(60, 60)
            )
            check_invariants(where, exact, 2)
            assert goal_distances(exact) == pytest.approx([60.0, 60.0], abs=1e-6)
        default = make_scenario(where, name, 3, np.random.default_rng(7))
        assert all(
            TRAVEL_RANGE[0] - 1e-6 <= d <= TRAVEL_RANGE[1] + 1e-6 for d in goal_distances(default)
        )
    # A third agent drives as far as the first of its role.
    three = make_scenario(town, name, 3, np.random.default_rng(0), travel_range=(60, 60))
    assert goal_distances(three) == pytest.approx([60.0] * 3, abs=1e-6)


@pytest.mark.parametrize("name", ["head_on", "following", "crossing"])
def test_a_long_travel_range_is_reached(generated_towns, name):
    # Routes used to end 300 m after the interaction: (1000, 1000) gave goals 324–437 m away.
    town = generated_towns[0]
    for seed in range(3):
        scenario = make_scenario(
            town, name, 2, np.random.default_rng(seed), travel_range=(1000, 1000)
        )
        assert goal_distances(scenario) == pytest.approx([1000.0, 1000.0], abs=1e-6)
        for plan in scenario.agents:  # still drivable from start to goal
            poses = plan.route.pose_at(np.arange(0.0, plan.route.length, 1.0))
            assert first_collisions(town, poses[None], check_cars=False) == [None]


def test_an_out_of_reach_travel_range_says_what_the_town_allows(generated_towns):
    town = generated_towns[0]
    for name in ("following", None):
        with pytest.raises(ValueError) as err:
            make_scenario(town, name, 2, np.random.default_rng(0), travel_range=(5000, 5000))
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"town {town.seed} cannot host ")
        assert "travel_range=(5000, 5000) is out of reach" in message
        longest = int(message.split("at most ")[1].split(" m")[0])
        assert 300 < longest < 5000
    # The env names its own keyword.
    with pytest.raises(ValueError, match=r"goal_distance=\(5000, 6000\) is out of reach"):
        make_scenario(town, "head_on", 2, 0, travel_range=(5000, 6000), range_name="goal_distance")


def test_determinism_and_variety(town):
    a = make_scenario(town, "crossing", 2, np.random.default_rng(5))
    b = make_scenario(town, "crossing", 2, np.random.default_rng(5))
    assert [a.to_info(k) for k in range(2)] == [b.to_info(k) for k in range(2)]
    # The recorded seed reproduces the scenario.
    c = make_scenario(town, "crossing", 2, a.seed)
    assert [a.to_info(k) for k in range(2)] == [c.to_info(k) for k in range(2)]
    starts = {
        tuple(make_scenario(town, "head_on", 2, s).agents[0].start.round(3)) for s in range(8)
    }
    assert len(starts) == 8
    # Shifts: the same site with other draws moves starts by metres, not only between sites.
    names = {make_scenario(town, None, 2, s).name for s in range(30)}
    assert names == set(SCENARIOS)


def test_random_name_falls_back_to_what_the_town_can_host():
    # A plus-shaped town: one X-junction and no T-junction.
    town = grid_town(
        3, 3, 80.0, drop=[(0, 1), (1, 2), (6, 7), (7, 8), (0, 3), (3, 6), (2, 5), (5, 8)]
    )
    assert [town.roads.junction_kind(j) for j in range(9)].count("X") == 1
    with pytest.raises(ValueError, match="T-junction"):
        make_scenario(town, "t_junction", 2, np.random.default_rng(0))
    # Its arms end 80 m from the junction, so no route runs the default 140 m: ask for less.
    for seed in range(10):
        scenario = make_scenario(town, None, 2, np.random.default_rng(seed), travel_range=(60, 90))
        assert scenario.name != "t_junction"
        check_invariants(town, scenario, 2)
    with pytest.raises(ValueError, match=r"'crossing': travel_range=\(140, 220\) is out of reach"):
        make_scenario(town, "crossing", 2, np.random.default_rng(0))


def test_errors():
    town = grid_town(2, 1, 40.0)  # a single 40 m road: too short for anything
    with pytest.raises(ValueError, match="cannot host scenario 'head_on'"):
        make_scenario(town, "head_on", 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="X-junction"):
        make_scenario(town, "crossing", 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="cannot host any scenario"):
        make_scenario(town, None, 2, np.random.default_rng(0))
    big = grid_town(3, 3, 70.0)
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scenario(big, "drag_race", 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_agents"):
        make_scenario(big, "head_on", 0, np.random.default_rng(0))
    for bad in ((30, 90), (90, 60), (np.nan, 90), (60, 70, 80), None, ("60", "90")):
        with pytest.raises(ValueError, match=r"travel_range.*60 <= lo <= hi"):
            make_scenario(big, "head_on", 2, np.random.default_rng(0), travel_range=bad)


def test_blocked_sites_are_avoided():
    # Parked boxes across every lane of the road from node 0 to node 1 (x in [0, 70], y = 0):
    # no scenario may start or route through it.
    roads = grid_roads(4, 4, 70.0)
    block = BoxSet.from_rows(
        [
            dict(
                center=(35.0, 0.0),
                half_extent=(1.0, 6.0),
                z_range=(0.0, 1.0),
                colour=(0.5, 0.5, 0.5),
            )
        ]
    )
    town = grid_town(
        4, 4, 70.0, boxes=BoxSet.concatenate([block, block_buildings(roads, 70.0, 4, 4)])
    )
    for name in SCENARIOS:
        for seed in range(3):
            scenario = make_scenario(town, name, 2, np.random.default_rng(seed))
            check_invariants(town, scenario, 2)


def test_agent_plan_and_scenario_types():
    route = Route.from_points(np.array([[0.0, 0.0], [100.0, 0.0]]))
    plan = AgentPlan(route.pose_at(0.0), route, route.points[-1], route.length, "leader")
    scenario = Scenario("following", (plan,), seed=1)
    assert len(scenario) == 1 and scenario.to_info(0)["follows"] is None


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_on_generated_towns(generated_towns, name):
    for town in generated_towns:
        for seed in range(3):
            scenario = make_scenario(town, name, 2, np.random.default_rng(seed))
            check_invariants(town, scenario, 2)
            check_layout(town, scenario)
        scenario = make_scenario(town, name, 3, np.random.default_rng(7))
        check_invariants(town, scenario, 3)
        for plan in scenario.agents[:2]:
            steps, _, reached, hit = follow_route(town, plan)
            assert hit is None and reached, (town.seed, plan.role, steps, hit)


def test_a_network_without_road_surface_is_rejected_clearly():
    # The road network says there is a 300 m road, the ground raster has no asphalt anywhere.
    painted = grid_town(2, 1, 300.0)
    grass = dataclasses.replace(painted.ground, surface=np.zeros_like(painted.ground.surface))
    town = dataclasses.replace(painted, ground=grass)
    # The road ends both ways, so few head-on draws leave both cars 140 m (the default lo) of
    # road ahead; a shorter range lets every draw reach the road-surface check.
    with pytest.raises(ValueError, match="off the road"):
        make_scenario(town, "head_on", 2, np.random.default_rng(0), travel_range=(60, 90))
