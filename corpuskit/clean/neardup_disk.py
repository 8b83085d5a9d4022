"""Near-duplicate clustering past one machine's memory, as map -> sort by key -> reduce.

The same decisions as the in-memory `NearDupIndex` (same band keys, so the same candidate pairs;
the same estimate, margin and exact Jaccard check; union-find whose root is the smallest index),
with only small per-document arrays in memory:

1. map: each batch's signatures go to an append-only file (`SignatureStore`) and its band keys to
   a buffer that is spilled as a sorted run per band (`BandRuns`) when it reaches its budget.
2. shuffle / sort: for each band, one key range at a time is read from every run and sorted;
   records with equal keys are candidates (`band_pairs`). Pairs from all bands are spilled as
   sorted unique runs (`PairRuns`) and merged the same way, so each pair is judged once.
3. reduce: each unique pair is judged on its estimated Jaccard; accepted pairs are joined at once
   (`UnionFind`, vectorised over int arrays), borderline ones (within the margin) are kept for the
   exact check in clean's verify pass, unless their records are already joined.

With `--engine ray`, when the union-find (4 bytes per record) does not fit the buffers, accepted
pairs are streamed into Ray edge chunks instead and joined by connected components on the cluster
(components.py); verified borderline pairs become extra edges of a second components run.

Every piece is a plain class over numpy arrays and files in one scratch folder, so a shard can run
each step on its own and an engine can replace the file shuffle by its own.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from corpuskit.clean.components import ALGORITHM
from corpuskit.clean.minhash import BorderlineResolver, MinHashParams, NearDupIndex, band_key_matrix, choose_bands

GRID = 4096  # key ranges indexed in every run, so a merge can read one range of each run at a time
MAX_IDS = 2**32 - 1  # record ids are stored as uint32 in runs and packed pairs
_JUDGE = 4096  # pairs judged per batch: <= 8192 signature pages (32 MB) mapped at once


class TooManyRecords(ValueError):
    pass


# ---- memory budget -------------------------------------------------------------------------

MB = 1 << 20
DEFAULT_FIXED = 400 * MB  # the default budget: 400 MB + 300 bytes per document
DEFAULT_PER_DOC = 300
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": MB, "MB": MB, "G": 1 << 30, "GB": 1 << 30,
          "T": 1 << 40, "TB": 1 << 40}


def parse_size(text: str) -> int:
    """'512M', '2G', '1.5GB', '100000' -> bytes (binary units)."""
    s = text.strip().upper().replace("IB", "B")
    num = s.rstrip("KMGTB")
    unit = s[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{text!r}: not a size (use e.g. 512M, 2G or a number of bytes)")
    return int(value * _UNITS[unit])


@dataclass(frozen=True)
class MemoryBudget:
    """Target for the peak RSS of clean's whole process tree: `fixed` bytes plus `per_doc` bytes
    for each record that reached near-dup. The in-memory index is used while it fits; buffers
    of the disk path are sized from what the fixed part leaves."""

    fixed: int = DEFAULT_FIXED
    per_doc: int = DEFAULT_PER_DOC
    auto: bool = True  # the default budget, not one the user gave

    @classmethod
    def parse(cls, spec: str | None) -> "MemoryBudget":
        if spec is None or spec == "auto":
            return cls()
        return cls(fixed=parse_size(spec), per_doc=0, auto=False)

    def allows(self, n: int) -> int:
        return self.fixed + self.per_doc * n


def tree_rss() -> int:
    """Resident bytes of this process and its live child processes (Linux /proc; 0 elsewhere)."""
    import multiprocessing

    pids = [os.getpid()] + [p.pid for p in multiprocessing.active_children() if p.pid]
    total = 0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


# ---- on-disk pieces ------------------------------------------------------------------------

class SignatureStore:
    """Signatures of all records in one file, row i = record i. Rows are read back in batches
    through a read-only mapping whose pages are dropped after each batch (MADV_DONTNEED), so
    reading never grows the resident set beyond one batch."""

    def __init__(self, path: Path, num_perm: int):
        self.path, self.num_perm = path, num_perm
        self._fh = open(path, "wb")
        self.rows = 0
        self._mm: mmap.mmap | None = None

    def append(self, sigs: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(sigs, dtype=np.uint32).tobytes())
        self.rows += len(sigs)

    def _matrix(self) -> np.ndarray:
        if self._mm is None:
            self._fh.close()
            if self.rows == 0:
                return np.zeros((0, self.num_perm), dtype=np.uint32)
            with open(self.path, "rb") as fh:
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return np.frombuffer(self._mm, dtype=np.uint32).reshape(self.rows, self.num_perm)

    def get(self, ids: np.ndarray) -> np.ndarray:
        out = self._matrix()[ids]
        self.release()
        return out

    def release(self) -> None:
        if self._mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a caller still holds a view; the mapping goes with it
                pass
            self._mm = None


def _grid_index(sorted_keys: np.ndarray, top: int) -> np.ndarray:
    """Positions where each of GRID equal ranges of [0, top) starts in sorted keys (GRID + 1)."""
    bounds = (np.arange(GRID + 1, dtype=np.float64) * (top / GRID)).astype(np.uint64) if top < 2**64 else \
        (np.arange(GRID + 1, dtype=np.uint64) << np.uint64(52))
    idx = np.searchsorted(sorted_keys, bounds[:-1]).astype(np.int64)
    return np.concatenate((idx, [len(sorted_keys)]))


class BandRuns:
    """Map side of the band-key shuffle: (record id, band keys) buffered, then spilled as one run
    file holding, for every band, the keys sorted with their record ids, plus a range index."""

    def __init__(self, folder: Path, bands: int, buffer_records: int):
        self.folder, self.bands = folder, bands
        self.buffer_records = max(64, buffer_records)
        self._ids: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._buffered = 0
        self.runs: list[tuple[Path, int]] = []  # (file, records)

    def add(self, first_id: int, keys: np.ndarray) -> None:
        if not len(keys):
            return
        if first_id + len(keys) > MAX_IDS:
            raise TooManyRecords(f"near-dup handles at most {MAX_IDS:,} records per run")
        self._ids.append(np.arange(first_id, first_id + len(keys), dtype=np.uint32))
        self._keys.append(keys)
        self._buffered += len(keys)
        if self._buffered >= self.buffer_records:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        ids = np.concatenate(self._ids)
        keys = np.concatenate(self._keys)
        self._ids, self._keys, self._buffered = [], [], 0
        path = self.folder / f"bands-{len(self.runs):05d}.bin"
        with open(path, "wb") as fh:
            for b in range(self.bands):
                order = np.argsort(keys[:, b], kind="stable")  # ids stay ascending within a key
                k = keys[order, b]
                fh.write(_grid_index(k, 2**64).tobytes())
                fh.write(k.tobytes())
                fh.write(ids[order].tobytes())
        self.runs.append((path, len(ids)))

    def band_range(self, band: int, lo_cell: int, hi_cell: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys and ids of one band whose key falls in grid cells [lo_cell, hi_cell), from every
        run, sorted by key (ids ascending within a key, since runs hold ascending id ranges)."""
        keys, ids = [], []
        for path, n in self.runs:
            block = (GRID + 1) * 8 + n * 12
            base = band * block
            grid = np.fromfile(path, dtype=np.int64, count=GRID + 1, offset=base)
            a, b = int(grid[lo_cell]), int(grid[hi_cell])
            if b > a:
                keys.append(np.fromfile(path, dtype=np.uint64, count=b - a, offset=base + (GRID + 1) * 8 + a * 8))
                ids.append(np.fromfile(path, dtype=np.uint32, count=b - a,
                                       offset=base + (GRID + 1) * 8 + n * 8 + a * 4))
        if not keys:
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint32)
        k, i = np.concatenate(keys), np.concatenate(ids)
        order = np.argsort(k, kind="stable")
        return k[order], i[order]

    @property
    def records(self) -> int:
        return sum(n for _, n in self.runs)


def band_pairs(keys: np.ndarray, ids: np.ndarray, block: int = 1 << 20) -> Iterator[np.ndarray]:
    """Every pair (earlier, later) of records with equal keys, packed as earlier << 32 | later
    (`ids` ascend within a key), in blocks of about `block` pairs (a bucket of m records gives m(m-1)/2 pairs, as the in-memory
    index compares a new record with every earlier one in its buckets)."""
    if len(keys) < 2:
        return
    new = np.concatenate(([True], keys[1:] != keys[:-1]))
    starts = np.flatnonzero(new)
    sizes = np.diff(np.concatenate((starts, [len(keys)])))
    ids64 = ids.astype(np.uint64)
    big = 512  # larger buckets: one row of the pair triangle at a time, so memory stays ~block
    for size in np.unique(sizes[sizes > 1]).tolist():
        first = starts[sizes == size]
        if size > big:
            for f in first.tolist():
                group = ids64[f:f + size]
                out, held = [], 0
                for r in range(size - 1):
                    out.append((group[r] << np.uint64(32)) | group[r + 1:])
                    held += size - 1 - r
                    if held >= block:
                        yield np.concatenate(out)
                        out, held = [], 0
                if out:
                    yield np.concatenate(out)
            continue
        iu, ju = np.triu_indices(size, 1)
        per = max(1, block // len(iu))
        for s in range(0, len(first), per):
            rows = first[s:s + per, None]
            yield ((ids64[rows + iu] << np.uint64(32)) | ids64[rows + ju]).ravel()


class PairRuns:
    """Candidate pairs (packed uint64) spilled as sorted unique runs with a range index over the
    earlier record id, merged back one id range at a time (each pair comes out once)."""

    def __init__(self, folder: Path, records: int, buffer_pairs: int):
        self.folder, self.records = folder, max(1, records)
        self.buffer_pairs = max(1024, buffer_pairs)
        self._parts: list[np.ndarray] = []
        self._buffered = 0
        self.runs: list[tuple[Path, int]] = []

    def add(self, packed: np.ndarray) -> None:
        self._parts.append(packed)
        self._buffered += len(packed)
        if self._buffered >= self.buffer_pairs:
            self.flush()

    def flush(self) -> None:
        if not self._buffered:
            return
        run = np.unique(np.concatenate(self._parts))
        self._parts, self._buffered = [], 0
        path = self.folder / f"pairs-{len(self.runs):05d}.bin"
        with open(path, "wb") as fh:
            fh.write(_grid_index(run, self.records << 32).tobytes())
            fh.write(run.tobytes())
        self.runs.append((path, len(run)))

    def total(self) -> int:
        return sum(n for _, n in self.runs)

    def merged(self, cells_per_read: int) -> Iterator[np.ndarray]:
        """Sorted unique pairs, one group of grid cells at a time."""
        self.flush()
        grids = [np.fromfile(p, dtype=np.int64, count=GRID + 1) for p, _ in self.runs]
        for lo in range(0, GRID, cells_per_read):
            hi = min(GRID, lo + cells_per_read)
            parts = []
            for (path, _), grid in zip(self.runs, grids):
                a, b = int(grid[lo]), int(grid[hi])
                if b > a:
                    parts.append(np.fromfile(path, dtype=np.uint64, count=b - a, offset=(GRID + 1) * 8 + a * 8))
            if parts:
                yield np.unique(np.concatenate(parts)) if len(parts) > 1 else parts[0]


# ---- union-find over int arrays ------------------------------------------------------------

class UnionFind:
    """Connected components over record ids 0..n-1 in one int array (4 or 8 bytes per record).
    Every link points from the larger root to the smaller one, so a component's root is its
    smallest id, the earliest record, as in the in-memory index."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)

    def find_many(self, x: np.ndarray) -> np.ndarray:
        parent = self.parent
        root = parent[x]
        while True:
            up = parent[root]
            if np.array_equal(up, root):
                break
            root = up
        parent[x] = root  # path compression
        return root

    def union_many(self, a: np.ndarray, b: np.ndarray) -> None:
        """Join each a[k] with b[k]: hook larger roots onto smaller ones until every pair agrees."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        while len(a):
            ra, rb = self.find_many(a), self.find_many(b)
            apart = ra != rb
            if not apart.any():
                return
            a, b, ra, rb = a[apart], b[apart], ra[apart], rb[apart]
            np.minimum.at(self.parent, np.maximum(ra, rb), np.minimum(ra, rb).astype(self.parent.dtype))

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = int(parent[root])
        while parent[i] != root:
            parent[i], i = root, int(parent[i])
        return root

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def flatten(self) -> np.ndarray:
        """Point every record straight at its root (pointer jumping); returns the root array."""
        parent = self.parent
        while True:
            up = parent[parent]
            if np.array_equal(up, parent):
                return parent
            parent[:] = up


# ---- the disk-backed index -----------------------------------------------------------------

class DiskNearDup:
    """Same interface and decisions as `NearDupIndex`, state on disk under `folder`."""

    path = "disk"

    def __init__(self, params: MinHashParams, folder: Path, buffer_bytes: int, on_ray: bool = False):
        self.params = params
        # on_ray: the caller holds a Ray connection for the run (clean's Ray executor); clusters whose
        # union-find (4 bytes per record) does not fit the buffers are then found by connected
        # components on the cluster instead (components.py)
        self.on_ray = on_ray
        self._cc = None  # RayComponents, once the distributed path runs
        self._edges = None  # EdgeChunks of exact-verified borderline pairs (distributed path)
        self._forest = self._final = None  # components after the estimate, and after the verify pass
        self._table: tuple | None = None  # (range, dup ids, roots, equal counts) of one result range
        self.components: dict = {"algorithm": "union-find"}
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.bands, self.rows = choose_bands(params.threshold, params.num_perm)
        t = params.threshold
        self.margin = 3.0 * math.sqrt(t * (1.0 - t) / params.num_perm)
        self.buffer_bytes = max(1 << 16, buffer_bytes)
        self.store = SignatureStore(self.folder / "signatures.bin", params.num_perm)
        self.band_runs = BandRuns(self.folder, self.bands, self.buffer_bytes // (self.bands * 8 * 4))
        self.n = 0
        self.uf: UnionFind | None = None
        self.borderline = np.zeros((0, 2), dtype=np.int64)
        self._roots: np.ndarray | None = None
        self._dup_ids = np.zeros(0, dtype=np.int64)
        self._dup_equal = np.zeros(0, dtype=np.int64)
        self.stats = {"lsh_candidate_pairs": 0, "accepted_by_estimate": 0, "borderline_pairs": 0,
                      "accepted_by_exact_jaccard": 0, "borderline_pairs_already_joined": 0}
        self.disk = {"band_runs": 0, "pair_runs": 0, "scratch_bytes": 0}

    @property
    def bands_rows(self) -> tuple[int, int]:
        return self.bands, self.rows

    def add_batch(self, sigs: np.ndarray, keys: np.ndarray | None = None) -> None:
        """Records n, n+1, ... in input order (`keys`: their band keys if already computed)."""
        if not len(sigs):
            return
        if keys is None:
            keys = band_key_matrix(sigs, self.bands, self.rows)
        self.store.append(sigs)
        self.band_runs.add(self.n, keys)
        self.n += len(sigs)

    def finish(self) -> None:
        """The shuffle and reduce: candidate pairs per band, judged once each, joined."""
        self.band_runs.flush()
        if self.distributed:
            from corpuskit.clean.components import EdgeChunks, RayComponents

            self._cc = RayComponents(range_rows=max(1024, self.buffer_bytes // 24))
            accepted, self._edges = EdgeChunks(self.buffer_bytes // 16), EdgeChunks(self.buffer_bytes // 16)
            join = accepted.add
        else:
            self.uf = UnionFind(self.n)
            join = self.uf.union_many
        pairs = PairRuns(self.folder, self.n, self.buffer_bytes // 32)
        entries_per_cell = max(1, self.n // GRID)
        cells = max(1, min(GRID, self.buffer_bytes // max(1, 48 * entries_per_cell)))
        for band in range(self.bands):
            for lo in range(0, GRID, cells):
                keys, ids = self.band_runs.band_range(band, lo, min(GRID, lo + cells))
                for packed in band_pairs(keys, ids, max(1024, self.buffer_bytes // 64)):
                    pairs.add(packed)
        self.disk["band_runs"] = len(self.band_runs.runs)
        borderline = []
        t = self.params.threshold
        per_pair_cells = max(1, min(GRID, self.buffer_bytes // max(1, 48 * max(1, pairs.total() // GRID))))
        for packed in pairs.merged(per_pair_cells):
            for s in range(0, len(packed), _JUDGE):
                part = packed[s:s + _JUDGE]
                a = (part >> np.uint64(32)).astype(np.int64)
                b = (part & np.uint64(0xFFFFFFFF)).astype(np.int64)
                equal = self._equal_counts(a, b)
                est = equal / self.params.num_perm
                accept = est >= t + self.margin
                border = ~accept & (est >= t - self.margin)
                self.stats["lsh_candidate_pairs"] += len(part)
                self.stats["accepted_by_estimate"] += int(accept.sum())
                self.stats["borderline_pairs"] += int(border.sum())
                if accept.any():
                    join(a[accept], b[accept])
                if border.any():
                    borderline.append(np.stack([a[border], b[border]], axis=1))
        self.disk["pair_runs"] = len(pairs.runs)
        self.disk["scratch_bytes"] = sum(p.stat().st_size for p in self.folder.iterdir())
        for path, _ in self.band_runs.runs + pairs.runs:
            path.unlink()
        if self.distributed:
            self._forest = self._cc.run(accepted.flush(), self.n, accepted.total)
            del accepted
        if borderline:
            cand = np.concatenate(borderline)
            if self.distributed:
                roots = self._forest.roots_of(cand.ravel()).reshape(-1, 2)
                joined = roots[:, 0] == roots[:, 1]
            else:
                joined = self.uf.find_many(cand[:, 0]) == self.uf.find_many(cand[:, 1])
            self.stats["borderline_pairs_already_joined"] = int(joined.sum())
            self.borderline = np.ascontiguousarray(cand[~joined])

    def _equal_counts(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Number of equal signature values of each pair (a[k], b[k])."""
        ids, inv = np.unique(np.concatenate((a, b)), return_inverse=True)
        rows = self.store.get(ids)
        return (rows[inv[:len(a)]] == rows[inv[len(a):]]).sum(axis=1)

    def resolver(self) -> BorderlineResolver:
        return BorderlineResolver(self)

    @property
    def distributed(self) -> bool:
        """Components on Ray: the engine is Ray and a union-find over all records (4 bytes each)
        would not fit the buffers the budget leaves."""
        return self.on_ray and self.n * 4 > self.buffer_bytes

    def _union(self, i: int, j: int) -> None:
        if self._edges is not None:
            self._edges.add_one(i, j)  # joined by the second components run, in _settle
        else:
            self.uf.union(i, j)

    def _settle(self) -> None:
        """Final roots and, for every record that is not a root, its estimated Jaccard with it."""
        roots = self.uf.flatten()
        dups = np.flatnonzero(roots != np.arange(len(roots)))
        equal = np.zeros(len(dups), dtype=np.int64)
        for s in range(0, len(dups), _JUDGE):
            part = dups[s:s + _JUDGE]
            equal[s:s + len(part)] = self._equal_counts(part, roots[part].astype(np.int64))
        self._roots, self._dup_ids, self._dup_equal = roots, dups, equal
        self.store.close()
        self.store.path.unlink(missing_ok=True)

    def _settle_distributed(self) -> None:
        """Second components run over the first run's forest and the exact-verified pairs (none:
        the forest is final). Roots are then read one result range at a time (`_lookup`)."""
        if self._final is not None:
            return
        verified = self._edges.flush()
        self._final = self._forest if not verified else \
            self._cc.run(self._forest.parts + verified, self.n, self._forest.edges + self._edges.total)
        self._forest = None
        self.components = {"algorithm": ALGORITHM, "partitions": self._cc.last_partitions,
                           "rounds": list(self._cc.history), "result_ranges": len(self._final.parts)}

    def _lookup(self, i: int) -> tuple[int, int]:
        """(root of i, its equal signature count; 0 for a root), from the result range holding i,
        loaded with its equal counts when the write pass reaches it."""
        r = self._final.range_of(i)
        if self._table is None or self._table[0] != r:
            self._table = None
            table = self._final.part(r)
            dups, roots = table[:, 0], table[:, 1]
            equal = np.zeros(len(dups), dtype=np.int64)
            for s in range(0, len(dups), _JUDGE):
                equal[s:s + _JUDGE] = self._equal_counts(dups[s:s + _JUDGE], roots[s:s + _JUDGE])
            self._table = (r, dups, roots, equal)
        _, dups, roots, equal = self._table
        k = int(np.searchsorted(dups, i))
        return (int(roots[k]), int(equal[k])) if k < len(dups) and dups[k] == i else (i, 0)

    def components_info(self) -> dict:
        """Which algorithm joined the clusters (settles the distributed path: the verify pass is over)."""
        if self.distributed:
            self._settle_distributed()
        return self.components

    def find(self, i: int) -> int:
        if self.distributed:
            self._settle_distributed()
            return self._lookup(i)[0]
        if self._roots is None:
            self._settle()
        return int(self._roots[i])

    def similarity(self, i: int, j: int) -> float:
        """Estimated Jaccard of record i with its root j (the only pair the write pass asks)."""
        if self.distributed:
            self._settle_distributed()
            root, equal = self._lookup(i)
            if root == i or root != j:
                raise KeyError(f"record {i} is not a near-duplicate of {j}")
            return equal / self.params.num_perm
        k = int(np.searchsorted(self._dup_ids, i))
        if k >= len(self._dup_ids) or self._dup_ids[k] != i or int(self._roots[i]) != j:
            raise KeyError(f"record {i} is not a near-duplicate of {j}")
        return int(self._dup_equal[k]) / self.params.num_perm

    def close(self) -> None:
        self.store.close()
        if self._cc is not None:  # drop the references to the Ray objects before Ray stops
            self._forest = self._final = self._table = self._cc = None
            self.store.path.unlink(missing_ok=True)


# ---- the facade clean uses -----------------------------------------------------------------

SMALL = 8192  # records: past this the sort-merge join costs less CPU than the in-memory index


class NearDup:
    """Chooses the path: the in-memory index for small inputs (up to SMALL records, and while it
    fits the memory budget), else the disk path, which also costs less CPU per record once the
    input is not small (4.6 vs 17.8 µs per record in the main process, docs/benchmarks.md). The
    switch hands every signature seen so far to the disk index, so results never depend on which
    path ran (tested)."""

    def __init__(self, params: MinHashParams, scratch: Path, budget: MemoryBudget = MemoryBudget(),
                 other_per_record: int = 0, on_ray: bool = False):
        self.params, self.scratch, self.budget = params, Path(scratch), budget
        self.on_ray = on_ray  # components on Ray past the union-find's budget (DiskNearDup)
        self.index: NearDupIndex | DiskNearDup = NearDupIndex(params)
        self.path = "memory"
        self.switched_at = 0
        self.base_rss: int | None = None  # measured at the first batch, once the worker pool runs
        self.other_per_record = other_per_record
        bands, _ = choose_bands(params.threshold, params.num_perm)
        # measured by bench/bench_clean.py: signature + band index + union-find, plus a margin
        self.memory_per_record = 4 * params.num_perm + 100 * bands + 300 + (5000 if params.lsh_index == "datasketch" else 0)

    @property
    def n(self) -> int:
        return self.index._rows if isinstance(self.index, NearDupIndex) else self.index.n

    def buffer_bytes(self) -> int:
        """What the disk path may hold in buffers: half of what the fixed budget leaves."""
        return max(1 << 16, (self.budget.fixed - (self.base_rss or tree_rss())) // 2)

    def _to_disk(self) -> None:
        old = self.index
        disk = DiskNearDup(self.params, self.scratch, self.buffer_bytes(), self.on_ray)
        for block_no, block in enumerate(old._sigs):
            rows = min(old._ROWS, old._rows - block_no * old._ROWS)
            disk.add_batch(block[:rows])
        self.index, self.path, self.switched_at = disk, "disk", old._rows

    def add_batch(self, sigs: np.ndarray, keys: np.ndarray | None = None) -> None:
        if self.base_rss is None:
            self.base_rss = tree_rss()
        if self.path == "memory":
            n = self.n + len(sigs)
            need = self.base_rss + n * (self.memory_per_record + self.other_per_record)
            over = need > self.budget.allows(n)
            if self.budget.auto and self.base_rss >= self.budget.fixed:
                over = False  # a caller (notebook, test runner) already past the default budget: size rule only
            if over or n > SMALL:
                self._to_disk()
        if self.path == "memory":
            keys_list = keys.tolist() if keys is not None else [None] * len(sigs)
            for sig, kk in zip(sigs, keys_list):
                self.index.add(sig, kk)
        else:
            self.index.add_batch(sigs, keys)

    def finish(self) -> None:
        if self.path == "disk":
            self.index.finish()

    def resolver(self) -> BorderlineResolver:
        return self.index.resolver()

    def find(self, i: int) -> int:
        return self.index.find(i)

    def similarity(self, i: int, j: int) -> float:
        return self.index.similarity(i, j)

    @property
    def bands_rows(self) -> tuple[int, int]:
        return self.index.bands_rows

    @property
    def margin(self) -> float:
        return self.index.margin

    @property
    def stats(self) -> dict:
        return self.index.stats

    def describe(self) -> dict:
        out = {"path": self.path}
        if self.path == "disk":
            out.update(self.index.disk, buffer_bytes=self.index.buffer_bytes, switched_at_record=self.switched_at,
                       components=self.index.components_info())
        return out

    def close(self) -> None:
        if isinstance(self.index, DiskNearDup):
            self.index.close()


__all__ = ["BandRuns", "DiskNearDup", "MemoryBudget", "NearDup", "PairRuns", "SignatureStore", "UnionFind",
           "band_pairs", "parse_size", "tree_rss", "TooManyRecords"]
