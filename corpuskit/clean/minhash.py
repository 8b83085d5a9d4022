"""MinHash near-duplicate detection: numpy signatures, an LSH band index (a compact one by
default, datasketch's MinHashLSH on request), candidate verification by signature agreement and
exact Jaccard near the threshold, and union-find clusters whose earliest record is kept.

Signatures use datasketch's "affine32" scheme (the default in datasketch 2): each shingle hash h
is permuted as a*h + b mod 2^32 with datasketch's own (a, b) for the seed, and the signature is
the per-permutation minimum. The shingles of a document are hashed once into a numpy array and
all permutations are applied as one matrix operation, instead of datasketch's per-shingle
`update` loop (bench/bench_clean.py measures the difference).
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import Counter
from dataclasses import dataclass

import numpy as np
from datasketch import MinHash, MinHashLSH

from corpuskit.clean.normalize import dedup_form

SHINGLES = ("char", "word", "jieba")
_P = np.uint64(0x100000001B3)  # FNV-64 prime: multiplier of the polynomial n-gram hash
_BLOCK = 4096  # shingles per block, bounding the (num_perm x block) work matrix to 2 MB


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: spreads the polynomial hash over all bits."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _word_ids(words: list[str]) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest(), "little")
                     for w in words], dtype=np.uint64)


def tokens(text: str, shingle: str) -> np.ndarray:
    """Token ids of the dedup form: code points (char), whitespace words (word) or jieba words."""
    text = dedup_form(text)
    if shingle == "char":
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if shingle == "word":
        return _word_ids(text.split())
    if shingle == "jieba":
        import jieba

        jieba.setLogLevel(60)
        return _word_ids([w for w in jieba.lcut(text) if not w.isspace()])
    raise ValueError(f"shingle must be one of {SHINGLES}, got {shingle!r}")


def shingle_hashes(text: str, ngram: int, shingle: str = "char") -> np.ndarray:
    """Distinct 32-bit hashes of the token n-grams (the whole text if shorter than n)."""
    ids = tokens(text, shingle)
    n = min(ngram, len(ids))
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    m = len(ids) - n + 1
    with np.errstate(over="ignore"):
        h = np.zeros(m, dtype=np.uint64)
        for k in range(n):
            h = h * _P + ids[k:k + m]
        h = _fmix64(h + np.uint64(n))
    return np.unique((h >> np.uint64(32)).astype(np.uint32))


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    ngram: int = 5
    shingle: str = "char"
    seed: int = 1
    threshold: float = 0.8
    lsh_index: str = "compact"


class Signer:
    """Computes signatures; cheap to build in each worker process."""

    def __init__(self, params: MinHashParams):
        if params.shingle not in SHINGLES:
            raise ValueError(f"shingle must be one of {SHINGLES}, got {params.shingle!r}")
        self.params = params
        a, b = MinHash(num_perm=params.num_perm, seed=params.seed).permutations
        self.a = np.asarray(a, dtype=np.uint32)[:, None]
        self.b = np.asarray(b, dtype=np.uint32)[:, None]

    def signature(self, text: str) -> np.ndarray:
        return self.signature_from_hashes(shingle_hashes(text, self.params.ngram, self.params.shingle))

    def signature_from_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """Per-permutation minimum of a*h + b mod 2^32 over all shingle hashes at once."""
        sig = np.full(self.params.num_perm, np.uint32(0xFFFFFFFF), dtype=np.uint32)
        with np.errstate(over="ignore"):
            for start in range(0, len(hashes), _BLOCK):
                block = hashes[start:start + _BLOCK][None, :]
                np.minimum(sig, (self.a * block + self.b).min(axis=1), out=sig)
        return sig


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that a pair with this Jaccard similarity shares at least one LSH band."""
    return 1.0 - (1.0 - similarity ** rows) ** bands


def choose_bands(threshold: float, num_perm: int, recall_at_threshold: float = 0.99) -> tuple[int, int]:
    """The most selective (bands, rows) that still makes a pair at exactly `threshold` a candidate
    with probability >= 0.99. A missed pair can never be recovered, while a spurious candidate is
    removed by verification, so this leans towards recall. datasketch's default (equal weight on
    false-positive and false-negative area) picks 9 x 13 for 0.8/128, which makes only 40% of the
    pairs at the threshold candidates."""
    best = (num_perm // 2, 2) if num_perm >= 4 else (num_perm, 1)
    for rows in range(2, num_perm // 2 + 1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) < recall_at_threshold:
            break
        best = (bands, rows)
    return best


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> list[list[int]]:
    """64-bit key of each LSH band of each signature (n x num_perm -> n lists of `bands` ints).
    Deterministic across processes (unlike Python's salted `hash`), so workers can compute them."""
    block = sigs[:, : bands * rows].reshape(len(sigs), bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.zeros((len(sigs), bands), dtype=np.uint64)
        for k in range(rows):
            h = (h ^ block[:, :, k]) * np.uint64(0x9E3779B97F4A7C15)
        return _fmix64(h).tolist()


class DatasketchBands:
    """datasketch's MinHashLSH as the band index (the reference implementation)."""

    name = "datasketch"

    class _Sketch:
        """The attributes MinHashLSH reads from a MinHash, without building one per record."""

        __slots__ = ("hashvalues",)
        scheme = "affine32"

        def __init__(self, hashvalues: np.ndarray):
            self.hashvalues = hashvalues

        def __len__(self) -> int:
            return len(self.hashvalues)

    def __init__(self, num_perm: int, bands: int, rows: int):
        self.lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))

    def query_insert(self, i: int, sig: np.ndarray, keys: list[int] | None = None) -> list[int]:
        sketch = self._Sketch(sig)
        found = self.lsh.query(sketch)
        self.lsh.insert(i, sketch, check_duplication=False)
        return found


class CompactBands:
    """The same banding as MinHashLSH (a pair is a candidate iff all `rows` values of some band are
    equal), keyed by a 64-bit hash of each band in plain dicts of ints. bench/bench_clean.py
    measures the whole dedup state at ~2.1 kB per record with this index against ~7.3 kB with
    MinHashLSH (which keeps a bytes key and a set per bucket plus a band-key list per record), so
    3.4x more records fit in memory, with the same output. A 64-bit key collision can only add a
    candidate, which is then judged like any other."""

    name = "compact"

    def __init__(self, num_perm: int, bands: int, rows: int):
        self.bands, self.rows = bands, rows
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]

    def query_insert(self, i: int, sig: np.ndarray, keys: list[int] | None = None) -> list[int]:
        """`keys`: the record's band keys if a worker already computed them (`band_keys`)."""
        found: set[int] = set()
        if keys is None:
            keys = band_keys(sig[None, :], self.bands, self.rows)[0]
        for table, key in zip(self.tables, keys):
            bucket = table.get(key)
            if bucket is None:
                table[key] = i
            elif isinstance(bucket, list):
                found.update(bucket)
                bucket.append(i)
            else:
                found.add(bucket)
                table[key] = [bucket, i]
        return list(found)


LSH_INDEXES = {"compact": CompactBands, "datasketch": DatasketchBands}


class NearDupIndex:
    """Streaming near-duplicate clustering over signatures given in input order.

    Each new signature is queried against the LSH. A candidate whose estimated Jaccard (share of
    equal signature values) is clearly above the threshold (by 3 standard errors of the estimate,
    sqrt(t(1-t)/num_perm)) is joined at once by union-find, whose root is always the smallest
    index, i.e. the earliest record; one clearly below is dropped. A candidate in between is a
    "borderline" pair, decided later on the exact Jaccard of the two shingle sets (`resolve`),
    because at 128 permutations the estimate alone errs by ~0.035 and would misjudge most pairs
    near the threshold. Memory per record: the signature (4 x num_perm bytes), the LSH band keys,
    and one union-find slot; plus 16 bytes per borderline pair.
    """

    _ROWS = 8192

    def __init__(self, params: MinHashParams):
        self.params = params
        self.bands, self.rows = choose_bands(params.threshold, params.num_perm)
        self.lsh = LSH_INDEXES[params.lsh_index](params.num_perm, self.bands, self.rows)
        t = params.threshold
        self.margin = 3.0 * math.sqrt(t * (1.0 - t) / params.num_perm)
        self._sigs: list[np.ndarray] = []  # blocks of _ROWS signatures
        self._rows = 0
        self.parent: list[int] = []
        self.borderline = array("q")  # flat (earlier, later) pairs awaiting exact Jaccard
        self.stats = {"lsh_candidate_pairs": 0, "accepted_by_estimate": 0, "borderline_pairs": 0,
                      "accepted_by_exact_jaccard": 0}

    @property
    def bands_rows(self) -> tuple[int, int]:
        return self.bands, self.rows

    def signature_of(self, i: int) -> np.ndarray:
        return self._sigs[i // self._ROWS][i % self._ROWS]

    def _store(self, sig: np.ndarray) -> None:
        if self._rows % self._ROWS == 0:
            self._sigs.append(np.empty((self._ROWS, self.params.num_perm), dtype=np.uint32))
        self._sigs[-1][self._rows % self._ROWS] = sig
        self._rows += 1

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:  # path compression
            parent[i], i = root, parent[i]
        return root

    def _union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)

    def similarity(self, i: int, j: int) -> float:
        return float(np.mean(self.signature_of(i) == self.signature_of(j)))

    def add(self, sig: np.ndarray, keys: list[int] | None = None) -> tuple[list[tuple[int, float]], list[int]]:
        """Index the next record (`keys`: its band keys, if already computed). Returns (earlier
        records accepted now, with estimated Jaccard; earlier records whose pair with this one is
        borderline)."""
        i = self._rows
        found = sorted(self.lsh.query_insert(i, sig, keys))
        accepted: list[tuple[int, float]] = []
        borderline: list[int] = []
        if found:
            self.stats["lsh_candidate_pairs"] += len(found)
            others = np.stack([self.signature_of(j) for j in found])
            t = self.params.threshold
            for j, est in zip(found, (others == sig).mean(axis=1)):
                if est >= t + self.margin:
                    accepted.append((j, float(est)))
                elif est >= t - self.margin:
                    borderline.append(j)
        self._store(sig)
        self.parent.append(i)
        for j, _ in accepted:
            self._union(i, j)
        for j in borderline:
            self.borderline.extend((j, i))
        self.stats["accepted_by_estimate"] += len(accepted)
        self.stats["borderline_pairs"] += len(borderline)
        return accepted, borderline

    def resolver(self) -> "BorderlineResolver":
        return BorderlineResolver(self)


class BorderlineResolver:
    """Decides borderline pairs on exact Jaccard while the records stream past in input order.

    Fed every record index in order with a way to get its shingle hashes, it keeps a record's
    hashes only from its first to its last borderline partner, so memory is bounded by the
    borderline records "open" at once, not by the corpus.
    """

    def __init__(self, index: NearDupIndex):
        self.index = index
        pairs = np.frombuffer(index.borderline, dtype=np.int64).reshape(-1, 2) if len(index.borderline) else \
            np.zeros((0, 2), dtype=np.int64)
        self.earlier_of: dict[int, list[int]] = {}
        self.open_partners: Counter = Counter()
        for a, b in pairs.tolist():
            self.earlier_of.setdefault(b, []).append(a)
            self.open_partners[a] += 1
        self.held: dict[int, np.ndarray] = {}
        self.max_held = 0

    @property
    def needed(self) -> bool:
        return bool(self.earlier_of)

    @property
    def done(self) -> bool:
        return not self.earlier_of

    def wants(self, i: int) -> bool:
        return i in self.earlier_of or i in self.open_partners

    def feed(self, i: int, hashes: np.ndarray) -> list[int]:
        """`hashes`: sorted distinct shingle hashes of record i (as `shingle_hashes` returns).
        Returns the earlier records joined to i by exact Jaccard."""
        t = self.index.params.threshold
        joined = []
        for a in self.earlier_of.pop(i, ()):
            other = self.held[a]
            inter = len(np.intersect1d(other, hashes, assume_unique=True))
            union = len(other) + len(hashes) - inter
            if union and inter / union >= t:
                self.index._union(a, i)
                self.index.stats["accepted_by_exact_jaccard"] += 1
                joined.append(a)
            self.open_partners[a] -= 1
            if not self.open_partners[a]:
                del self.held[a], self.open_partners[a]
        if self.open_partners.get(i):
            self.held[i] = hashes
            self.max_held = max(self.max_held, len(self.held))
        return joined
