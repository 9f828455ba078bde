"""Tests of the spatial memory cache (Eq. 3) and of the query positions along a trajectory."""

import doctest

import numpy as np
import pytest
import torch

import shareverse_env.memory.spatial as memory_module
from shareverse_env.memory import SOURCES, Retrieval, SpatialMemory, sample_query_positions

ENTRY = (2, 3)


def brute_force(entries: list[dict], agent: int, queries: np.ndarray, source: str) -> list[dict]:
    """Nearest entry per query by a plain Python scan; ties go to the lowest id."""
    cands = [
        e
        for e in entries
        if source == "all"
        or (source == "own" and e["agent"] == agent)
        or (source == "others" and e["agent"] != agent)
    ]
    if not cands:
        return []
    out = []
    for qx, qy in queries.tolist():
        best = None
        for e in cands:
            dx, dy = qx - e["pose"][0], qy - e["pose"][1]
            key = (dx * dx + dy * dy, e["id"])
            if best is None or key < best[0]:
                best = (key, e)
        out.append(best[1])
    return out


def fill(memory: SpatialMemory, rng: np.random.Generator, batches: int, agents: int) -> list[dict]:
    """Add random batches (with some duplicated positions) and return the records added."""
    records = []
    time = 0
    for _ in range(batches):
        k = int(rng.integers(1, 12))
        poses = rng.uniform(-20, 20, (k, 3))
        poses[:, :2] = np.round(poses[:, :2])  # coarse grid: many exact position ties
        agent = rng.integers(0, agents, k)
        payload = torch.from_numpy(rng.normal(size=(k, *ENTRY))).float()
        ids = memory.add(payload, poses, agent, np.arange(time, time + k))
        for i in range(k):
            records.append(
                dict(
                    id=int(ids[i]),
                    pose=poses[i],
                    agent=int(agent[i]),
                    time=time + i,
                    payload=payload[i],
                )
            )
        time += k
    return records


def assert_matches(result: Retrieval, expected: list[dict], queries: np.ndarray) -> None:
    assert result.count == len(result) == len(expected)
    if not expected:
        return
    np.testing.assert_array_equal(result.ids, [e["id"] for e in expected])
    np.testing.assert_array_equal(result.agents, [e["agent"] for e in expected])
    np.testing.assert_array_equal(result.times, [e["time"] for e in expected])
    np.testing.assert_array_equal(result.poses, np.stack([e["pose"] for e in expected]))
    torch.testing.assert_close(result.payload, torch.stack([e["payload"] for e in expected]))
    want = [np.hypot(*(q - e["pose"][:2])) for q, e in zip(queries, expected, strict=True)]
    np.testing.assert_allclose(result.distances, want, rtol=1e-12, atol=1e-12)
    assert result.ids.dtype == np.int64 and result.payload.dtype == torch.float32


def snapshot(memory: SpatialMemory) -> tuple:
    hit = memory.retrieve(0, np.zeros((1, 2)))
    return len(memory), memory.entry_shape, hit.ids.tolist(), hit.payload.clone()


# --------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------


def test_docstring_examples_run():
    result = doctest.testmod(memory_module)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize("seed", range(20))
def test_retrieve_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    memory = SpatialMemory()
    records = fill(memory, rng, batches=int(rng.integers(1, 15)), agents=3)
    assert len(memory) == len(records)
    queries = np.round(rng.uniform(-22, 22, (6, 2)) * 2) / 2  # half-metre grid: ties happen
    for agent in range(4):  # agent 3 never added anything: "own" is empty, "others" is all
        for source in SOURCES:
            result = memory.retrieve(agent, queries, source)
            assert_matches(result, brute_force(records, agent, queries, source), queries)


def test_exact_ties_go_to_lowest_id():
    memory = SpatialMemory()
    for agent, time in [(1, 0), (0, 1), (1, 2), (0, 3)]:
        memory.add(
            torch.full((1, 2), float(time)), np.array([[1.0, 2.0, float(time)]]), agent, time
        )
    hit = memory.retrieve(0, np.array([[1.0, 2.0], [5.0, 5.0]]))
    np.testing.assert_array_equal(hit.ids, [0, 0])
    assert memory.retrieve(0, np.array([[1.0, 2.0]]), "own").ids.tolist() == [1]
    assert memory.retrieve(0, np.array([[1.0, 2.0]]), "others").ids.tolist() == [0]
    # Symmetric points at equal distance from the query: the earlier one wins as well.
    memory.clear()
    ids = memory.add(torch.zeros(2, 2), np.array([[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]), 0, 0)
    assert memory.retrieve(0, np.zeros((1, 2))).ids.tolist() == [ids[0]]


def test_ties_after_ring_wraps_go_to_lowest_id():
    memory = SpatialMemory(capacity=3)
    at = {"x": [0.0, 0.0, 0.0], "y": [5.0, 0.0, 0.0], "z": [9.0, 9.0, 0.0]}
    for time, name in enumerate("xyyzy"):  # ids 0..4; the last y lands in a lower slot than id 2
        memory.add(torch.full((1, 1), float(time)), np.array([at[name]]), 0, time)
    hit = memory.retrieve(0, np.array([[5.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(hit.ids, [2, 2])
    np.testing.assert_array_equal(hit.payload[:, 0].numpy(), [2.0, 2.0])


def test_retrieve_others_is_per_agent():
    rng = np.random.default_rng(7)
    memory = SpatialMemory()
    records = fill(memory, rng, batches=6, agents=2)
    queries = rng.uniform(-20, 20, (3, 4, 2))
    for a in range(3):  # agent 2 archived nothing: every entry is another's
        result = memory.retrieve(a, queries[a], source="others")
        assert_matches(result, brute_force(records, a, queries[a], "others"), queries[a])


def test_empty_cache_and_empty_source_give_zero_entries():
    memory = SpatialMemory()
    result = memory.retrieve(0, np.zeros((4, 2)))
    assert result.count == 0 and len(result) == 0
    assert result.payload.shape == (0,) and result.poses.shape == (0, 3)
    memory.add(torch.ones(3, *ENTRY), np.zeros((3, 3)), agent=0, time=0)
    others = memory.retrieve(0, np.zeros((4, 2)), "others")
    assert others.count == 0 and others.payload.shape == (0, *ENTRY)
    assert memory.retrieve(1, np.zeros((4, 2)), "own").count == 0
    assert memory.retrieve(0, np.zeros((4, 2)), "own").count == 4
    assert memory.retrieve(0, np.zeros((0, 2))).count == 0


def test_payload_does_not_alias_storage():
    memory = SpatialMemory(capacity=2)
    memory.add(torch.ones(1, *ENTRY), np.zeros((1, 3)), 0, 0)
    hit = memory.retrieve(0, np.zeros((1, 2)))
    before = hit.payload.clone()
    # Overwrites slot 0 (ring eviction) and grows storage: the result must not change either way.
    memory.add(torch.full((2, *ENTRY), 7.0), np.zeros((2, 3)), 0, 1)
    torch.testing.assert_close(hit.payload, before)
    hit.payload.fill_(-1.0)  # nor may writing to the result reach the storage
    assert memory.retrieve(0, np.zeros((1, 2))).payload.max().item() == 7.0


# --------------------------------------------------------------------------------------------
# Capacity, growth, dtypes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_capacity_evicts_oldest_first(seed):
    rng = np.random.default_rng(100 + seed)
    capacity = int(rng.integers(1, 40))
    memory = SpatialMemory(capacity=capacity)
    records = fill(memory, rng, batches=int(rng.integers(5, 25)), agents=3)
    survivors = records[-capacity:]
    assert len(memory) == min(capacity, len(records))
    assert memory.capacity == capacity
    assert [r["id"] for r in records] == list(range(len(records)))  # ids keep increasing
    survivor_ids = {r["id"] for r in survivors}
    queries = rng.uniform(-22, 22, (8, 2))
    for agent in range(3):
        for source in SOURCES:
            result = memory.retrieve(agent, queries, source)
            assert set(result.ids.tolist()) <= survivor_ids  # evicted entries never come back
            assert_matches(result, brute_force(survivors, agent, queries, source), queries)


def test_add_larger_than_capacity_keeps_last_entries():
    memory = SpatialMemory(capacity=3)
    memory.add(torch.zeros(2, 1), np.zeros((2, 3)), 0, 0)
    payload = torch.arange(5.0)[:, None]
    poses = np.stack([np.arange(5.0), np.zeros(5), np.zeros(5)], axis=1)
    ids = memory.add(payload, poses, 1, np.arange(5))
    np.testing.assert_array_equal(ids, [2, 3, 4, 5, 6])
    assert len(memory) == 3
    hit = memory.retrieve(0, poses[:, :2])
    np.testing.assert_array_equal(hit.ids, [4, 4, 4, 5, 6])
    np.testing.assert_array_equal(hit.payload[:, 0].numpy(), [2, 2, 2, 3, 4])


def test_ids_never_reused_after_clear():
    memory = SpatialMemory()
    memory.add(torch.zeros(3, 4), np.zeros((3, 3)), 0, 0)
    memory.clear()
    assert len(memory) == 0 and memory.entry_shape is None
    assert memory.retrieve(0, np.zeros((1, 2))).count == 0
    ids = memory.add(torch.zeros(2, 5), np.zeros((2, 3)), 0, 0)  # a new entry shape is allowed
    np.testing.assert_array_equal(ids, [3, 4])
    assert ids.dtype == np.int64 and memory.entry_shape == (5,)


def test_growth_keeps_earlier_payloads():
    memory = SpatialMemory()
    total = 0
    for k in (1, 50, 100, 300, 7):  # crosses several doublings of the allocation
        payload = torch.arange(total, total + k, dtype=torch.float32)[:, None, None].expand(k, 2, 3)
        poses = np.stack([np.arange(total, total + k) * 10.0, np.zeros(k), np.zeros(k)], axis=1)
        memory.add(payload, poses, 0, np.arange(total, total + k))
        total += k
    assert len(memory) == total
    queries = np.stack([np.arange(total) * 10.0, np.zeros(total)], axis=1)
    hit = memory.retrieve(0, queries)
    np.testing.assert_array_equal(hit.ids, np.arange(total))
    np.testing.assert_array_equal(hit.times, np.arange(total))
    expected = torch.arange(total, dtype=torch.float32)[:, None, None].expand(total, 2, 3)
    torch.testing.assert_close(hit.payload, expected)


def test_float16_storage_round_trips_approximately():
    rng = np.random.default_rng(3)
    data = rng.normal(size=(10, *ENTRY))
    memory = SpatialMemory(storage_dtype=torch.float16)
    memory.add(data, np.stack([np.arange(10.0), np.zeros(10), np.zeros(10)], axis=1), 0, 0)
    hit = memory.retrieve(0, np.stack([np.arange(10.0), np.zeros(10)], axis=1))
    assert hit.payload.dtype == torch.float32
    np.testing.assert_allclose(hit.payload.numpy(), data, rtol=2e-3, atol=2e-3)
    assert not np.array_equal(hit.payload.numpy(), data.astype(np.float32))  # really was halved
    assert memory.nbytes >= 64 * 6 * 2  # payload storage is float16


def test_scalar_and_array_agent_time():
    memory = SpatialMemory()
    memory.add(torch.zeros(2, 1), np.array([[0.0, 0, 0], [5, 0, 0]]), 2, 9)
    memory.add(torch.zeros(2, 1), np.array([[10.0, 0, 0], [15, 0, 0]]), np.array([0, 1]), [3, 4])
    hit = memory.retrieve(0, np.array([[0.0, 0], [5, 0], [10, 0], [15, 0]]))
    np.testing.assert_array_equal(hit.agents, [2, 2, 0, 1])
    np.testing.assert_array_equal(hit.times, [9, 9, 3, 4])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_bad_inputs_raise_and_leave_memory_unchanged():
    memory = SpatialMemory(capacity=5)
    memory.add(torch.ones(4, *ENTRY), np.zeros((4, 3)), 0, 0)
    before = snapshot(memory)
    bad_adds = [
        (
            (torch.ones(2, 3, 2), np.zeros((2, 3)), 0, 0),
            r"expected \(K, \*\(2, 3\)\), got \(2, 3, 2\)",
        ),
        ((torch.ones(2, *ENTRY), np.array([[0, 0, 0], [np.nan, 0, 0]]), 0, 0), "finite"),
        ((torch.ones(2, *ENTRY), np.array([[0, 0, 0], [0, np.inf, 0]]), 0, 0), "finite"),
        ((torch.ones(2, *ENTRY), np.zeros((3, 3)), 0, 0), r"poses must have shape \(K, 3\)"),
        ((torch.ones(2, *ENTRY), np.zeros((2, 2)), 0, 0), r"poses must have shape \(K, 3\)"),
        ((torch.ones(2, *ENTRY), np.zeros((2, 3)), [0, 1, 2], 0), r"agent .*\(K,\) = \(2,\)"),
        ((torch.ones(2, *ENTRY), np.zeros((2, 3)), 0.5, 0), "agent must be an int"),
        ((torch.ones(2, *ENTRY), np.zeros((2, 3)), -1, 0), "agent must be non-negative"),
        ((torch.ones(2, *ENTRY), np.zeros((2, 3)), 0, [1, 2, 3]), r"time .*\(K,\)"),
        ((torch.tensor(1.0), np.zeros((1, 3)), 0, 0), r"payload must have shape \(K"),
    ]
    for args, message in bad_adds:
        with pytest.raises(ValueError, match=message):
            memory.add(*args)
        now = snapshot(memory)
        assert now[:3] == before[:3]
        torch.testing.assert_close(now[3], before[3])
    assert memory.add(torch.ones(1, *ENTRY), np.zeros((1, 3)), 0, 0).tolist() == [4]  # no id gap


def test_bad_retrieve_arguments_raise():
    memory = SpatialMemory()
    memory.add(torch.ones(1, 1), np.zeros((1, 3)), 0, 0)
    with pytest.raises(ValueError, match=r"source must be one of \('all', 'others', 'own'\)"):
        memory.retrieve(0, np.zeros((1, 2)), source="mine")
    with pytest.raises(ValueError, match=r"queries must have shape \(Q, 2\).*\(2,\)"):
        memory.retrieve(0, np.zeros(2))
    with pytest.raises(ValueError, match=r"queries must have shape \(Q, 2\).*\(4, 3\)"):
        memory.retrieve(0, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="queries must be finite"):
        memory.retrieve(0, np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="agent must be a non-negative int"):
        memory.retrieve(-1, np.zeros((1, 2)))
    assert len(memory) == 1


def test_bad_constructor_arguments_raise():
    for capacity in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="capacity must be a positive int"):
            SpatialMemory(capacity=capacity)
    with pytest.raises(ValueError, match="storage_dtype"):
        SpatialMemory(storage_dtype=torch.int32)
    assert SpatialMemory().capacity is None and SpatialMemory().entry_shape is None


# --------------------------------------------------------------------------------------------
# Query positions
# --------------------------------------------------------------------------------------------


def test_query_positions_on_a_straight_line():
    poses = np.stack([np.linspace(0, 12, 29), np.full(29, 3.0), np.zeros(29)], axis=1)
    q = sample_query_positions(poses)
    assert q.shape == (4, 2)
    np.testing.assert_allclose(q, [[3, 3], [6, 3], [9, 3], [12, 3]], atol=1e-12)
    assert np.array_equal(q[-1], poses[-1, :2])  # the end, exactly
    # Uneven frame spacing does not matter: spacing is by arc length, not by frame.
    uneven = poses.copy()
    uneven[:, 0] = 12 * np.linspace(0, 1, 29) ** 2
    np.testing.assert_allclose(sample_query_positions(uneven), q, atol=1e-12)


def test_query_positions_follow_a_bent_path_and_pauses():
    # 4 m east, pause (repeated pose), 4 m north: 8 m total, queries every 2 m.
    poses = np.array([[0, 0, 0], [4, 0, 0], [4, 0, 0], [4, 4, 1.57]], dtype=float)
    q = sample_query_positions(poses, count=4)
    np.testing.assert_allclose(q, [[2, 0], [4, 0], [4, 2], [4, 4]], atol=1e-12)
    np.testing.assert_allclose(sample_query_positions(poses, count=1), [[4, 4]])


def test_query_positions_stationary_and_single_pose():
    start = np.array([2.5, -1.0, 0.3])
    stationary = np.tile(start, (29, 1))
    np.testing.assert_array_equal(sample_query_positions(stationary), np.tile(start[:2], (4, 1)))
    np.testing.assert_array_equal(
        sample_query_positions(start[None], 3), np.tile(start[:2], (3, 1))
    )


def test_query_positions_batched():
    rng = np.random.default_rng(5)
    poses = np.cumsum(rng.uniform(0, 1, (3, 29, 3)), axis=1)
    batched = sample_query_positions(poses, count=5)
    assert batched.shape == (3, 5, 2)
    for a in range(3):
        np.testing.assert_allclose(batched[a], sample_query_positions(poses[a], count=5))
    # The last query is the end exactly, free of rounding in the summed segment lengths.
    np.testing.assert_array_equal(batched[:, -1], poses[:, -1, :2])
    wiggly = np.random.default_rng(4).normal(size=(8, 29, 3)) * [50, 50, 1] + [1000, -300, 0]
    np.testing.assert_array_equal(sample_query_positions(wiggly)[:, -1], wiggly[:, -1, :2])
    # Agents with straight paths of different lengths along y: each is spaced by its own length.
    lengths = np.array([0.0, 4.0, 8.0])
    line = np.zeros((3, 29, 3))
    line[:, :, 1] = lengths[:, None] * np.linspace(0, 1, 29)
    expected_y = lengths[:, None] * np.array([0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(sample_query_positions(line)[..., 1], expected_y, atol=1e-12)


def test_query_positions_validate():
    with pytest.raises(
        ValueError, match=r"poses must have shape \(F, 3\) or \(A, F, 3\).*\(29, 2\)"
    ):
        sample_query_positions(np.zeros((29, 2)))
    with pytest.raises(ValueError, match=r"poses must have shape .*\(0, 3\)"):
        sample_query_positions(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="poses must be finite"):
        sample_query_positions(np.array([[0, 0, 0], [1, np.nan, 0]]))
    with pytest.raises(ValueError, match="count must be a positive int"):
        sample_query_positions(np.zeros((3, 3)), count=0)
