"""Connected components on a Ray cluster, for near-dup clusters whose union-find would not fit one
process: the alternating large-star / small-star algorithm (Kiveris et al. 2014, "Connected
Components in MapReduce and Beyond"; text-dedup's Spark MinHash used it) over numpy edge arrays.

Edges are int64 (k, 2) arrays hash-partitioned by node into P partitions held as Ray objects; every
wave is P tasks, each sorting its partition (np.unique / lexsort) and taking segment minima
(np.minimum.reduceat), and returning its output already split into the P partitions of the next wave
(`num_returns`), so no process ever holds all edges or an array over all nodes:

- large-star at node x (all neighbours): every neighbour larger than x is linked to m(x), the
  smallest of x and its neighbours;
- small-star at node x (neighbours smaller than x): x and those neighbours are linked to their
  smallest.

Both keep the components and shrink them towards stars around their smallest node. A large-star
wave also checks its input: the graph is a forest of stars centred on their minima exactly when
every node either has no smaller neighbour (a centre) or has one neighbour, a smaller one (a leaf);
then that wave's output equals its input and the loop stops. The result is (node, component min) for
every node of an edge that is not its component's minimum, range-partitioned by node and sorted, so
a reader can walk it in node order one partition at a time; root = smallest id, as `UnionFind` gives.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads consecutive ids over partitions
EDGES_PER_PARTITION = 1 << 22  # a wave's task sorts ~2x this many directed edges (~64 MB each way)
MAX_PARTITIONS = 256
MAX_ROUNDS = 200  # large-star/small-star needs O(log^2 n) rounds; this is a guard, not a tuning knob


class ComponentsError(RuntimeError):
    pass


def _empty() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.int64)


def _part_of(x: np.ndarray, parts: int) -> np.ndarray:
    if parts == 1:
        return np.zeros(len(x), dtype=np.int64)
    return (((x.astype(np.uint64) * _GOLDEN) >> np.uint64(32)) % np.uint64(parts)).astype(np.int64)


def _split(edges: np.ndarray, key: np.ndarray, parts: int) -> list[np.ndarray]:
    """Rows of `edges` grouped by the partition of `key` (P arrays)."""
    if parts == 1:
        return [edges]
    part = _part_of(key, parts)
    order = np.argsort(part, kind="stable")
    cuts = np.cumsum(np.bincount(part, minlength=parts))[:-1]
    return np.split(edges[order], cuts)


def _returns(parts: list, *extra) -> Any:
    out = [*parts, *extra]
    return out[0] if len(out) == 1 else out


def _sorted_unique(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (x, y) pairs sorted by x then y."""
    if not len(x):
        return x, y
    if x.min() >= 0 and y.min() >= 0 and max(x.max(), y.max()) < 2**32:
        packed = np.unique((x.astype(np.uint64) << np.uint64(32)) | y.astype(np.uint64))
        return (packed >> np.uint64(32)).astype(np.int64), (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    keep = np.concatenate(([True], (x[1:] != x[:-1]) | (y[1:] != y[:-1])))
    return x[keep], y[keep]


def _concat(arrays: Iterable[np.ndarray]) -> np.ndarray:
    arrays = [a for a in arrays if len(a)]
    return np.concatenate(arrays) if arrays else _empty()


def _groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start of every run of equal values in sorted x, and each row's run number."""
    new = np.concatenate(([True], x[1:] != x[:-1]))
    return np.flatnonzero(new), np.cumsum(new) - 1


# ---- the tasks (plain functions over numpy arrays; Ray runs them) ----------------------------

def scatter(parts: int, edges: np.ndarray):
    """Raw undirected edges (any orientation, duplicates, self-loops) -> directed both ways, split
    by the partition of their source: the input of a large-star wave."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    edges = edges[edges[:, 0] != edges[:, 1]]
    both = np.concatenate((edges, edges[:, ::-1]))
    return _returns(_split(both, both[:, 0], parts))


def large_star(parts: int, *blocks: np.ndarray):
    """One partition of a large-star wave: (P output partitions keyed by the larger node, number of
    nodes that are neither centre nor leaf, output edges)."""
    edges = _concat(blocks)
    x, y = _sorted_unique(edges[:, 0], edges[:, 1])
    if not len(x):
        return _returns([_empty()] * parts, 0, 0)
    starts, group = _groups(x)
    m = np.minimum(np.minimum.reduceat(y, starts), x[starts])  # m(x) over x and its neighbours
    smaller = np.add.reduceat((y < x).astype(np.int64), starts)
    size = np.diff(np.append(starts, len(x)))
    bad = int(((smaller >= 1) & (size >= 2)).sum())
    up = y > x
    out = np.stack((y[up], m[group[up]]), axis=1)
    return _returns(_split(out, out[:, 0], parts), bad, len(out))


def small_star(parts: int, *blocks: np.ndarray):
    """One partition of a small-star wave: edges (larger, smaller) keyed by the larger node; links
    each node and its smaller neighbours to their smallest. Output directed both ways for the next
    large-star wave, plus the number of (undirected) output edges."""
    edges = _concat(blocks)
    x, y = _sorted_unique(edges[:, 0], edges[:, 1])
    if not len(x):
        return _returns([_empty()] * parts, 0)
    starts, group = _groups(x)
    m = np.minimum.reduceat(y, starts)  # every y < x here
    others = y != m[group]
    out = np.concatenate((np.stack((y[others], m[group[others]]), axis=1),
                          np.stack((x[starts], m), axis=1)))
    both = np.concatenate((out, out[:, ::-1]))
    return _returns(_split(both, both[:, 0], parts), len(out))


def to_ranges(bounds: np.ndarray, *blocks: np.ndarray):
    """(leaf, root) edges -> split by leaf into the node ranges [bounds[r], bounds[r+1])."""
    edges = _concat(blocks)
    r = np.searchsorted(bounds[1:-1], edges[:, 0], side="right")
    order = np.argsort(r, kind="stable")
    cuts = np.cumsum(np.bincount(r, minlength=len(bounds) - 1))[:-1]
    return _returns(np.split(edges[order], cuts))


def merge_range(*blocks: np.ndarray) -> np.ndarray:
    """One node range of the result: (node, root) sorted by node, each node once."""
    edges = _concat(blocks)
    edges = edges[np.argsort(edges[:, 0], kind="stable")]
    if len(edges) > 1 and (edges[1:, 0] == edges[:-1, 0]).any():
        raise ComponentsError("large-star/small-star ended with a node under two roots")
    return edges


# ---- the driver side ------------------------------------------------------------------------

@dataclass
class Components:
    """(node, component min) of every non-minimum node, in node ranges [bounds[r], bounds[r+1]), one
    Ray object per range, each sorted by node. Nodes not listed are their own root."""

    bounds: np.ndarray
    parts: list  # ObjectRefs of (k, 2) int64 arrays
    rounds: int
    edges: int  # non-root nodes listed

    def part(self, r: int) -> np.ndarray:
        import ray

        return ray.get(self.parts[r])

    def range_of(self, i: int) -> int:
        return int(np.searchsorted(self.bounds[1:-1], i, side="right"))

    def roots_of(self, nodes: np.ndarray) -> np.ndarray:
        """Root of each node, reading one range partition at a time."""
        nodes = np.asarray(nodes, dtype=np.int64)
        out = nodes.copy()
        r = np.searchsorted(self.bounds[1:-1], nodes, side="right")
        order = np.argsort(r, kind="stable")
        cuts = np.cumsum(np.bincount(r, minlength=len(self.parts)))
        for k in range(len(self.parts)):
            at = order[(cuts[k - 1] if k else 0):cuts[k]]
            if not len(at):
                continue
            table = self.part(k)
            pos = np.searchsorted(table[:, 0], nodes[at])
            pos_c = np.minimum(pos, max(0, len(table) - 1))
            hit = (pos < len(table)) & (table[pos_c, 0] == nodes[at]) if len(table) else np.zeros(len(at), bool)
            out[at[hit]] = table[pos_c[hit], 1]
        return out


@dataclass
class RayComponents:
    """Large-star / small-star over edge chunks already in the Ray object store (`ray.put` refs or
    task results of (k, 2) int64 arrays). Needs a connected Ray (`ray.init`)."""

    partitions: int | None = None  # P; None: from the cluster's CPUs and the edge count
    range_rows: int = EDGES_PER_PARTITION  # at most this many result rows per range partition
    max_rounds: int = MAX_ROUNDS
    history: list = field(default_factory=list)  # per run: rounds
    last_partitions: int = 0

    @cached_property
    def _remote(self) -> dict:
        import ray

        opts = dict(num_cpus=1, max_retries=3)
        return {name: ray.remote(**opts)(fn) for name, fn in
                (("scatter", scatter), ("large_star", large_star), ("small_star", small_star),
                 ("to_ranges", to_ranges), ("merge_range", merge_range))}

    def choose_partitions(self, edges: int) -> int:
        if self.partitions:
            return int(self.partitions)
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(1, min(MAX_PARTITIONS, max(cpus, math.ceil(2 * edges / EDGES_PER_PARTITION))))

    def run(self, chunks: list, nodes: int, edges: int | None = None) -> Components:
        """Components of the graph whose edges are `chunks` (node ids in [0, nodes))."""
        import ray

        fn = self._remote
        p = self.choose_partitions(edges if edges is not None else 0)

        def wave(task, columns: list[list], returns: int, head: tuple = ()) -> list[list]:
            """One task per partition over its column of blocks; each returns `returns` values."""
            outs = []
            for col in columns:
                res = fn[task].options(num_returns=returns).remote(*head, *col)
                outs.append(res if returns > 1 else [res])
            return outs

        def columns(rows: list[list], width: int) -> list[list]:
            return [[row[q] for row in rows] for q in range(width)]

        rows = wave("scatter", [[c] for c in chunks], p, (p,))
        rounds = 0
        while True:
            rounds += 1
            if rounds > self.max_rounds:
                raise ComponentsError(f"connected components did not converge in {self.max_rounds} rounds")
            out = wave("large_star", columns(rows, p), p + 2, (p,))
            stats = ray.get([o[p] for o in out] + [o[p + 1] for o in out])
            rows = [o[:p] for o in out]
            if sum(stats[:p]) == 0:  # the input was already a star forest, and so is this output
                listed = sum(stats[p:])
                break
            out = wave("small_star", columns(rows, p), p + 1, (p,))
            rows = [o[:p] for o in out]
        ranges = max(p, math.ceil(listed / max(1, self.range_rows)))
        bounds = np.unique(np.linspace(0, max(1, nodes), ranges + 1).astype(np.int64))
        ranges = len(bounds) - 1
        split = wave("to_ranges", columns(rows, p), ranges, (bounds,))
        parts = [fn["merge_range"].remote(*col) for col in columns(split, ranges)]
        self.history.append(rounds)
        self.last_partitions = p
        return Components(bounds, parts, rounds, listed)


class EdgeChunks:
    """Edges streamed into the Ray object store: buffered up to `chunk` edges, then `ray.put`, so the
    driver never holds more than one chunk."""

    def __init__(self, chunk: int = 1 << 16):
        self.chunk = max(1024, int(chunk))
        self.refs: list = []
        self._buf: list[np.ndarray] = []
        self._one = array("q")  # single edges (verified borderline pairs), flat u, v, u, v, ...
        self._held = 0
        self.total = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        if not len(a):
            return
        self._buf.append(np.stack((np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)), axis=1))
        self._grow(len(a))

    def add_one(self, a: int, b: int) -> None:
        self._one.extend((a, b))
        self._grow(1)

    def _grow(self, k: int) -> None:
        self._held += k
        self.total += k
        if self._held >= self.chunk:
            self.flush()

    def flush(self) -> list:
        if self._held:
            import ray

            if self._one:
                self._buf.append(np.frombuffer(self._one, dtype=np.int64).reshape(-1, 2).copy())
            self.refs.append(ray.put(np.concatenate(self._buf)))
            self._buf, self._one, self._held = [], array("q"), 0
        return self.refs


ALGORITHM = "ray large-star/small-star"

__all__ = ["ALGORITHM", "Components", "ComponentsError", "EdgeChunks", "RayComponents", "large_star",
           "merge_range", "scatter", "small_star", "to_ranges"]
