"""The spatial memory cache of ShareVerse (paper Sec. 3.4, Eq. 3).

During an episode every generated frame is archived with its payload (typically a VAE latent such
as a ``(16, 8, 12)`` tensor), the ego pose ``(x, y, yaw)`` it was generated at, the index of the
agent that produced it and its time (frame index in the episode). Before generating a new chunk
for agent ``a``, :func:`sample_query_positions` places :data:`~shareverse_env.core.geometry.MEMORY_FRAMES`
query positions evenly along the agent's planned trajectory and :meth:`SpatialMemory.retrieve`
returns, for each one, the archived frame whose position is nearest (Eq. 3)::

    i_j = argmin_i || p_a^(j) - p_b^i ||_2        (over the 2-D positions x, y)

pooled over the frames of all agents by default, so that one car can see what another car saw.

This module depends only on numpy, torch and :mod:`shareverse_env.core.geometry`; the env and the
backends build on it, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shareverse_env.core.geometry import MEMORY_FRAMES

SOURCES: tuple[str, ...] = ("all", "others", "own")
"""Which archived frames :meth:`SpatialMemory.retrieve` may return (see there)."""

_INITIAL_ALLOCATION = 64
"""Entries allocated by the first :meth:`SpatialMemory.add` (at least the entries it adds)."""


# --------------------------------------------------------------------------------------------
# Query positions
# --------------------------------------------------------------------------------------------


def sample_query_positions(poses: np.ndarray, count: int = MEMORY_FRAMES) -> np.ndarray:
    """Positions evenly spaced by arc length along a planned trajectory, for memory retrieval.

    Args:
        poses: ``(F, 3)`` planned per-frame ego poses ``(x, y, yaw)`` of one agent for the chunk,
            row 0 being the chunk's start (conditioning) pose; or ``(A, F, 3)`` for ``A`` agents.
        count: number of query positions, a positive int.

    Returns:
        ``(count, 2)`` (or ``(A, count, 2)``) float64 x, y positions on the piecewise-linear path
        through the poses' x, y, at arc-length fractions ``k / count`` for ``k = 1 .. count``: the
        start is skipped (its frame is already known) and the last query is the trajectory's end.
        A stationary trajectory (zero length) gives its start position repeated.

    Example:
        >>> sample_query_positions(np.array([[0.0, 0, 0], [4, 0, 0], [4, 4, 0]]))
        array([[2., 0.],
               [4., 0.],
               [4., 2.],
               [4., 4.]])
    """
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
        raise ValueError(f"count must be a positive int; got {count!r}")
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim not in (2, 3) or arr.shape[-1] != 3 or arr.shape[-2] < 1:
        raise ValueError(
            f"poses must have shape (F, 3) or (A, F, 3) of (x, y, yaw) with F >= 1; got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"poses must be finite; got non-finite values in {arr.shape} array")
    batched = arr.ndim == 3
    xy = arr[..., :2] if batched else arr[None, :, :2]  # (A, F, 2)
    num_frames = xy.shape[1]
    if num_frames == 1:
        out = np.repeat(xy, count, axis=1)
        return out if batched else out[0]

    seg = np.linalg.norm(np.diff(xy, axis=1), axis=-1)  # (A, F-1)
    cum = np.concatenate([np.zeros_like(seg[:, :1]), np.cumsum(seg, axis=1)], axis=1)  # (A, F)
    targets = cum[:, -1:] * (np.arange(1, count + 1) / count)  # (A, count)
    # The segment holding each target: the last vertex whose arc length is <= the target. Zero
    # length segments are thereby skipped; the end (target == total) is clamped to the last one.
    idx = (cum[:, None, :] <= targets[:, :, None]).sum(axis=-1) - 1
    idx = np.clip(idx, 0, num_frames - 2)
    seg_len = np.take_along_axis(seg, idx, axis=1)
    start = np.take_along_axis(cum, idx, axis=1)
    safe = np.where(seg_len > 0, seg_len, 1.0)
    frac = np.clip(np.where(seg_len > 0, (targets - start) / safe, 0.0), 0.0, 1.0)
    a = np.take_along_axis(xy, idx[..., None], axis=1)
    b = np.take_along_axis(xy, idx[..., None] + 1, axis=1)
    out = a + frac[..., None] * (b - a)
    out[:, -1] = xy[:, -1]  # exactly the end, free of rounding in the cumulative sum
    return out if batched else out[0]


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Retrieval:
    """The archived frames retrieved for ``Q`` queries, one row per query, in query order.

    ``Q`` is 0 when there was nothing to retrieve from (empty cache or empty source set): the
    caller then generates without memory.

    Attributes:
        ids: ``(Q,)`` int64 entry ids (insertion numbers).
        payload: ``(Q, *entry_shape)`` float32 torch tensor, a copy (later adds never change it);
            ``(0,)`` when the cache has never held an entry.
        poses: ``(Q, 3)`` float64 poses ``(x, y, yaw)`` the frames were generated at.
        agents: ``(Q,)`` int64 agents that generated them.
        times: ``(Q,)`` int64 frame indices in the episode.
        distances: ``(Q,)`` float64 Euclidean x, y distances from each query to its frame.
    """

    ids: np.ndarray
    payload: torch.Tensor
    poses: np.ndarray
    agents: np.ndarray
    times: np.ndarray
    distances: np.ndarray

    @property
    def count(self) -> int:
        """Number of retrieved frames ``Q``."""
        return len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class SpatialMemory:
    """Archive of generated frames, queried by position (paper Sec. 3.4, Eq. 3).

    Each entry holds a payload of a fixed shape (fixed by the first :meth:`add`, reset by
    :meth:`clear`), a pose ``(x, y, yaw)``, the agent that generated it and its time. Payloads are
    kept on the CPU in one preallocated torch tensor of ``storage_dtype`` that doubles when full
    (amortised O(1) appends, no per-entry Python objects); poses in a float64 numpy array.

    Entry ids are insertion numbers (int64), increasing and never reused, not even after
    :meth:`clear`. With a ``capacity``, adding past it evicts the oldest entries (lowest ids
    first, FIFO); an add of more entries than the capacity keeps only its last ``capacity``.

    :meth:`retrieve` returns, per query position, the entry nearest in x, y (ties go to the lowest
    id, the earliest archived) among all entries, the other agents' or the agent's own; with no
    candidate at all it returns zero entries and the caller generates without memory.

    Example:
        >>> memory = SpatialMemory(capacity=1000, storage_dtype=torch.float16)
        >>> poses = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 1.57]])
        >>> memory.add(torch.zeros(3, 16, 8, 12), poses, agent=np.array([0, 0, 1]), time=0)
        array([0, 1, 2])
        >>> len(memory), memory.entry_shape
        (3, (16, 8, 12))
        >>> hit = memory.retrieve(0, np.array([[9.0, 1.0], [1.0, 8.0]]))
        >>> hit.ids, hit.agents, hit.payload.shape, hit.payload.dtype
        (array([1, 2]), array([0, 1]), torch.Size([2, 16, 8, 12]), torch.float32)
        >>> memory.retrieve(0, np.array([[9.0, 1.0]]), source="others").ids
        array([2])
        >>> memory.retrieve(2, np.array([[9.0, 1.0]]), source="own").count
        0
    """

    def __init__(self, capacity: int | None = None, storage_dtype: torch.dtype = torch.float32):
        if capacity is not None and (
            isinstance(capacity, bool) or not isinstance(capacity, int | np.integer) or capacity < 1
        ):
            raise ValueError(f"capacity must be a positive int or None; got {capacity!r}")
        if not isinstance(storage_dtype, torch.dtype) or not storage_dtype.is_floating_point:
            raise ValueError(f"storage_dtype must be a floating torch dtype; got {storage_dtype!r}")
        self._capacity = None if capacity is None else int(capacity)
        self._storage_dtype = storage_dtype
        self._next_id = 0
        self.clear()

    # ---- state ----------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every entry and the entry shape; ids keep counting from where they were."""
        self._entry_shape: tuple[int, ...] | None = None
        self._alloc = 0
        self._size = 0
        # Slot of the oldest entry. Nonzero only once the ring is full (size == capacity), and
        # then the allocation equals the capacity, so growth never has to unwrap the ring.
        self._head = 0
        self._payload: torch.Tensor | None = None
        self._poses = np.empty((0, 3), np.float64)
        self._agents = np.empty(0, np.int64)
        self._times = np.empty(0, np.int64)
        self._ids = np.empty(0, np.int64)

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int | None:
        """Most entries kept (oldest evicted first), or ``None`` for unbounded."""
        return self._capacity

    @property
    def entry_shape(self) -> tuple[int, ...] | None:
        """Shape of one payload, or ``None`` before the first add (and after :meth:`clear`)."""
        return self._entry_shape

    @property
    def storage_dtype(self) -> torch.dtype:
        """Dtype payloads are stored in."""
        return self._storage_dtype

    @property
    def nbytes(self) -> int:
        """Bytes allocated for all entries (payloads, poses, agents, times, ids), used or not."""
        payload = (
            0 if self._payload is None else self._payload.numel() * self._payload.element_size()
        )
        arrays = (self._poses, self._agents, self._times, self._ids)
        return payload + sum(a.nbytes for a in arrays)

    # ---- adding ---------------------------------------------------------------------------

    def add(
        self,
        payload: torch.Tensor | np.ndarray,
        poses: np.ndarray,
        agent: int | np.ndarray,
        time: int | np.ndarray,
    ) -> np.ndarray:
        """Archive ``K`` frames and return their ids, a ``(K,)`` int64 array.

        Args:
            payload: ``(K, *entry_shape)`` torch tensor or numpy array, any real dtype and device
                (stored on the CPU in ``storage_dtype``).
            poses: ``(K, 3)`` finite poses ``(x, y, yaw)``.
            agent: non-negative int, or ``(K,)`` ints, the agent that generated each frame.
            time: non-negative int, or ``(K,)`` ints, each frame's index in the episode.

        Everything is validated before anything changes: on ``ValueError`` the memory is as it was.
        """
        data = _as_payload(payload)
        k = data.shape[0]
        entry_shape = tuple(data.shape[1:])
        if self._entry_shape is not None and entry_shape != self._entry_shape:
            raise ValueError(
                f"payload entry shape mismatch: expected (K, *{self._entry_shape}), "
                f"got {tuple(data.shape)}"
            )
        pose_arr = np.asarray(poses, dtype=np.float64)
        if pose_arr.shape != (k, 3):
            raise ValueError(
                f"poses must have shape (K, 3) = ({k}, 3) to match the payload; "
                f"got {pose_arr.shape}"
            )
        if not np.all(np.isfinite(pose_arr)):
            raise ValueError("poses must be finite; got non-finite values")
        agents = _as_index_array(agent, k, "agent")
        times = _as_index_array(time, k, "time")
        ids = np.arange(self._next_id, self._next_id + k, dtype=np.int64)
        if k == 0:
            return ids

        # ---- validated: mutate from here on ----
        if self._entry_shape is None:
            self._entry_shape = entry_shape
        self._next_id += k
        data = data.to(device="cpu", dtype=self._storage_dtype)
        keep = k if self._capacity is None else min(k, self._capacity)
        if keep < k:  # the earlier ones would be evicted by the later ones of the same add
            data, pose_arr, agents, times = (
                data[-keep:],
                pose_arr[-keep:],
                agents[-keep:],
                times[-keep:],
            )
        write_ids = ids[k - keep :]

        new_size = self._size + keep
        cap = self._capacity
        self._reserve(new_size if cap is None else min(new_size, cap))
        if cap is None or new_size <= cap:  # append contiguously (head is 0 below capacity)
            slots: slice | np.ndarray = slice(self._size, new_size)
            self._size = new_size
            self._write(slots, data, pose_arr, agents, times, write_ids)
        else:  # ring at capacity: overwrite the oldest slots
            evicted = new_size - cap
            slot_arr = (self._head + self._size + np.arange(keep)) % cap
            self._write(slot_arr, data, pose_arr, agents, times, write_ids)
            self._head = (self._head + evicted) % cap
            self._size = cap
        return ids

    def _reserve(self, entries: int) -> None:
        """Grow the storage (by doubling, capped at the capacity) to hold ``entries`` entries."""
        if entries <= self._alloc:
            return
        new_alloc = max(entries, 2 * self._alloc, _INITIAL_ALLOCATION)
        if self._capacity is not None:
            new_alloc = min(new_alloc, self._capacity)
        assert self._entry_shape is not None and self._head == 0
        n = self._size
        payload = torch.empty((new_alloc, *self._entry_shape), dtype=self._storage_dtype)
        if self._payload is not None:
            payload[:n] = self._payload[:n]
        self._payload = payload
        self._poses = _grown(self._poses, new_alloc, n)
        self._agents = _grown(self._agents, new_alloc, n)
        self._times = _grown(self._times, new_alloc, n)
        self._ids = _grown(self._ids, new_alloc, n)
        self._alloc = new_alloc

    def _write(
        self,
        slots: slice | np.ndarray,
        data: torch.Tensor,
        poses: np.ndarray,
        agents: np.ndarray,
        times: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        assert self._payload is not None
        index = slots if isinstance(slots, slice) else torch.from_numpy(slots)
        self._payload[index] = data
        self._poses[slots] = poses
        self._agents[slots] = agents
        self._times[slots] = times
        self._ids[slots] = ids

    # ---- retrieval ------------------------------------------------------------------------

    def retrieve(self, agent: int, queries: np.ndarray, source: str = "all") -> Retrieval:
        """The archived frame nearest (in x, y) to each query position.

        Args:
            agent: the querying agent (a non-negative int); used by ``source``.
            queries: ``(Q, 2)`` finite x, y query positions, e.g. from
                :func:`sample_query_positions`.
            source: the candidates: ``"all"`` entries, ``"others"`` (entries whose agent is not
                ``agent``) or ``"own"`` (entries whose agent is ``agent``).

        Returns:
            A :class:`Retrieval` of ``Q`` rows in query order (one entry may serve several
            queries); ties in distance go to the lowest id. Zero rows when there is no candidate.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}; got {source!r}")
        agent = _as_agent(agent)
        q = _as_queries(queries)
        n = self._size
        if source == "all":
            cand: slice | np.ndarray = slice(0, n)
            num = n
        else:
            mine = self._agents[:n] == agent
            cand = np.flatnonzero(mine if source == "own" else ~mine)
            num = len(cand)
        if num == 0 or len(q) == 0:
            return self._empty()

        xy = self._poses[cand, :2]  # (N, 2)
        dx = q[:, 0:1] - xy[None, :, 0]
        dy = q[:, 1:2] - xy[None, :, 1]
        d2 = dx * dx + dy * dy  # (Q, N)
        # argmin returns the first minimum, i.e. the lowest slot. Slots are in id order except
        # once the ring wraps: then ids ascend from the head slot to the end and on from slot 0.
        # So take each part's first minimum and let the older part (from the head on) win ties.
        split = self._head if isinstance(cand, slice) else int(np.searchsorted(cand, self._head))
        split %= num  # every candidate below the head: they are in id order by themselves
        rows = np.arange(len(q))
        pick = d2[:, split:].argmin(axis=1) + split
        if split > 0:
            young = d2[:, :split].argmin(axis=1)
            pick = np.where(d2[rows, young] < d2[rows, pick], young, pick)
        best = d2[rows, pick]
        slots = pick if isinstance(cand, slice) else cand[pick]
        assert self._payload is not None
        # index_select copies, so later writes to the storage never reach the result.
        payload = self._payload.index_select(0, torch.from_numpy(slots)).to(torch.float32)
        return Retrieval(
            ids=self._ids[slots],
            payload=payload,
            poses=self._poses[slots],
            agents=self._agents[slots],
            times=self._times[slots],
            distances=np.sqrt(best),
        )

    def _empty(self) -> Retrieval:
        shape = (0,) if self._entry_shape is None else (0, *self._entry_shape)
        return Retrieval(
            ids=np.empty(0, np.int64),
            payload=torch.empty(shape, dtype=torch.float32),
            poses=np.empty((0, 3), np.float64),
            agents=np.empty(0, np.int64),
            times=np.empty(0, np.int64),
            distances=np.empty(0, np.float64),
        )

    def __repr__(self) -> str:
        return (
            f"SpatialMemory(len={self._size}, capacity={self._capacity}, "
            f"entry_shape={self._entry_shape}, storage_dtype={self._storage_dtype})"
        )


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_payload(payload: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(payload, torch.Tensor):
        data = payload.detach()
    else:
        arr = np.asarray(payload)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"payload must be a real numeric array; got dtype {arr.dtype}")
        data = torch.as_tensor(arr)
    if data.is_complex():
        raise ValueError(f"payload must be real; got dtype {data.dtype}")
    if data.ndim < 1:
        raise ValueError(f"payload must have shape (K, *entry_shape); got {tuple(data.shape)}")
    return data


def _as_index_array(value: int | np.ndarray, k: int, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an int or (K,) ints; got dtype {arr.dtype}")
    if arr.ndim == 0:
        arr = np.full(k, arr, np.int64)
    elif arr.shape != (k,):
        raise ValueError(f"{name} must be an int or have shape (K,) = ({k},); got {arr.shape}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative; got min {int(arr.min())}")
    return arr.astype(np.int64)


def _as_agent(agent: int) -> int:
    if isinstance(agent, bool) or not isinstance(agent, int | np.integer) or agent < 0:
        raise ValueError(f"agent must be a non-negative int; got {agent!r}")
    return int(agent)


def _as_queries(queries: np.ndarray) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 2:
        raise ValueError(f"queries must have shape (Q, 2) of x, y; got {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("queries must be finite; got non-finite values")
    return q


def _grown(arr: np.ndarray, alloc: int, used: int) -> np.ndarray:
    out = np.empty((alloc, *arr.shape[1:]), arr.dtype)
    out[:used] = arr[:used]
    return out
