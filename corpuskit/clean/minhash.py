"""MinHash near-duplicate detection: signatures, an LSH band index (a compact one by default,
datasketch's MinHashLSH on request), candidate verification by signature agreement and exact
Jaccard near the threshold, and union-find clusters whose earliest record is kept.

Shingles are hashed for a whole batch of documents at once: the dedup form of every text is
computed on code-point arrays with lookup tables (`FormBatch`), and the n-gram hashes of all
documents come out of one vectorised polynomial hash. Two sketches:

- `rensa` (default): rensa's R-MinHash (a Rust implementation of Fast Similarity Sketching: each
  shingle picks a slot and rank, so the cost is ~linear in the shingles instead of shingles x
  permutations), fed our 64-bit shingle hashes for the whole batch in one call.
- `affine32`: datasketch's "affine32" scheme, bit-identical to datasketch's MinHash: each 32-bit
  shingle hash h is permuted as a*h + b mod 2^32 with datasketch's (a, b) for the seed, all
  permutations applied as one numpy matrix operation.

Both estimate Jaccard as the share of equal signature values; pairs near the threshold are decided
on the exact Jaccard of the shingle sets either way (`NearDupIndex`), so the sketch only changes
speed, never which borderline pairs are judged exactly.
"""

from __future__ import annotations

import hashlib
import math
import os
from array import array
from collections import Counter
from dataclasses import dataclass
from itertools import chain

import numpy as np

from corpuskit.clean.normalize import dedup_form

SHINGLES = ("char", "word", "jieba")
SKETCHES = ("rensa", "affine32")
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
    return tokens_of_form(dedup_form(text), shingle)


def tokens_of_form(text: str, shingle: str) -> np.ndarray:
    if shingle == "char":
        return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
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


# ---- the same forms and hashes for a whole batch at once --------------------------------------

class _FormTables:
    """Lookup tables over the Basic Multilingual Plane for `dedup_form` (NFKC, case fold, whitespace
    runs -> one space), built once per process (~0.1 s) from the interpreter's own unicodedata.

    Why a per-character table is exact: NFKC(x) equals the concatenation y of NFKC(c) over the
    characters c of x whenever y is already in NFKC, because replacing a character by a
    compatibility-equivalent string keeps the whole string compatibility-equivalent. y is in NFKC
    when each of its characters is a starter (combining class 0) that never composes with the
    character before it; case folding is per character. A text holding any other character
    (combining marks, Hangul jamo, second halves of canonical compositions, surrogates, characters
    outside the BMP, expansions longer than 4) takes the exact per-text path instead."""

    WIDTH = 4  # longest expansion kept in the table (U+2026 ... is 3 characters)
    SLOW, MULTI, SPACE = 1, 2, 4

    def __init__(self) -> None:
        import unicodedata

        second = set()
        for cp in range(0x10000):
            d = unicodedata.decomposition(chr(cp))
            if d and not d.startswith("<") and len(d.split()) == 2:
                second.add(int(d.split()[1], 16))

        def composes(ch: str) -> bool:
            cp = ord(ch)
            return (unicodedata.combining(ch) != 0 or cp in second or unicodedata.category(ch) in ("Mn", "Mc", "Me")
                    or 0x1100 <= cp <= 0x11FF or 0xA960 <= cp <= 0xA97F or 0xD7B0 <= cp <= 0xD7FF or cp > 0xFFFF)

        self.exp = np.zeros((0x10000, self.WIDTH), dtype=np.uint32)
        self.length = np.ones(0x10000, dtype=np.int64)
        self.flags = np.zeros(0x10000, dtype=np.uint8)  # SLOW | MULTI | SPACE (of the 1-character output)
        self.space_out = np.zeros(0x10000, dtype=bool)  # isspace of an output character
        for cp in range(0x10000):
            ch = chr(cp)
            self.space_out[cp] = ch.isspace()
            if 0xD800 <= cp <= 0xDFFF:
                self.flags[cp] = self.SLOW
                continue
            nfkc = unicodedata.normalize("NFKC", ch)
            out = nfkc.casefold()
            if len(out) > self.WIDTH or any(composes(c) for c in nfkc) or any(ord(c) > 0xFFFF for c in out):
                self.flags[cp] = self.SLOW
                continue
            self.length[cp] = len(out)
            self.exp[cp, :len(out)] = [32 if c.isspace() else ord(c) for c in out]  # spaces collapse to " "
            if len(out) > 1:
                self.flags[cp] = self.MULTI
            elif out.isspace():
                self.flags[cp] = self.SPACE
        self.single = self.exp[:, 0].copy()


_TABLES: _FormTables | None = None


def _rensa():
    """rensa, kept on one thread: the --workers processes are the parallelism, and rensa's
    thread pool does not survive a fork (a pool worker forked after the parent had used it
    waits forever). The setting is read at rensa's first batch call, so it is forced here."""
    os.environ["RENSA_DOC_PAR_BATCH_SIZE"] = "1000000000000"
    import rensa

    return rensa


def _tables() -> _FormTables:
    global _TABLES
    if _TABLES is None:
        _TABLES = _FormTables()
    return _TABLES


class FormBatch:
    """The dedup forms of a batch of texts as one uint32 code-point array plus offsets (document
    k is codes[offsets[k]:offsets[k+1]]); `dedup_form` gives the same strings, ~20x slower."""

    __slots__ = ("codes", "offsets")

    def __init__(self, texts: list[str]):
        tab = _tables()
        n = len(texts)
        raw = np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=n), out=bounds[1:])
        in_bounds = bounds
        astral = bool(len(raw)) and int(raw.max()) > 0xFFFF
        low = (raw & np.uint32(0xFFFF) if astral else raw).astype(np.intp)  # one index cast for every lookup
        flags = tab.flags.take(low)
        special = np.flatnonzero(flags & (tab.SLOW | tab.MULTI))
        slow = special[flags[special] == tab.SLOW]
        multi = special[flags[special] == tab.MULTI]
        if astral:
            slow = np.union1d(slow, np.flatnonzero(raw > 0xFFFF))
        codes = tab.single.take(low)
        if len(multi):  # expand the few characters that fold to 2-4 characters (... for U+2026)
            length = np.ones(len(raw), dtype=np.int64)
            length[multi] = tab.length.take(low[multi])
            codes = np.repeat(codes, length)
            extra_before = np.concatenate(([0], np.cumsum(length[multi] - 1)))
            start = multi + extra_before[:-1]
            for k in range(1, tab.WIDTH):
                has = tab.length.take(low[multi]) > k
                codes[start[has] + k] = tab.exp[low[multi][has], k]
            bounds = bounds + extra_before[np.searchsorted(multi, bounds)]
            space = tab.space_out.take(codes)
        else:
            space = flags == tab.SPACE
        # whitespace runs -> one space, none at either end of a document
        lead = np.ones(len(codes), dtype=bool)
        lead[1:] = space[:-1]
        lead[bounds[:-1][bounds[:-1] < len(codes)]] = True
        drop = np.flatnonzero(space & lead)  # (every whitespace character already maps to " ")
        if len(drop):
            codes = np.delete(codes, drop)
            bounds = bounds - np.searchsorted(drop, bounds)
        nonempty = bounds[1:] > bounds[:-1]
        last = bounds[1:][nonempty] - 1
        trailing = last[codes[last] == 32]
        if len(trailing):
            codes = np.delete(codes, trailing)
            bounds = bounds - np.searchsorted(trailing, bounds)
        self.codes, self.offsets = codes, bounds
        if len(slow):
            self._redo(texts, np.unique(np.searchsorted(in_bounds, slow, side="right") - 1))

    def _redo(self, texts: list[str], docs: np.ndarray) -> None:
        """Documents with a character the tables cannot map exactly: the per-text `dedup_form`."""
        parts = [self.codes[self.offsets[k]:self.offsets[k + 1]] for k in range(len(texts))]
        for k in docs.tolist():
            parts[k] = np.frombuffer(dedup_form(texts[k]).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        self.codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)
        self.offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def strings(self) -> list[str]:
        data = self.codes.tobytes()
        off = (self.offsets * 4).tolist()
        return [data[a:b].decode("utf-32-le", "surrogatepass") for a, b in zip(off, off[1:])]


def ngram_hashes(ids: np.ndarray, offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every token n-gram of every document (the whole document if shorter than
    n), in order, duplicates kept: the same values as `shingle_hashes` before its truncation to
    32 bits and np.unique. `ids`: uint64 token ids of all documents; returns (hashes, offsets)."""
    ids = ids.astype(np.uint64, copy=False)
    lengths = np.diff(offsets)
    count = np.where(lengths >= ngram, lengths - ngram + 1, np.minimum(lengths, 1))
    out_off = np.concatenate(([0], np.cumsum(count))).astype(np.int64)
    out = np.empty(int(out_off[-1]), dtype=np.uint64)
    m = len(ids) - ngram + 1
    with np.errstate(over="ignore"):
        full = lengths >= ngram
        if m > 0 and full.any():
            h = ids[:m].copy()
            for k in range(1, ngram):
                h *= _P
                h += ids[k:k + m]
            h += np.uint64(ngram)
            h = _fmix64(h)
            # keep the positions whose n-gram lies inside one document (all but each one's last n-1)
            tail = np.maximum(offsets[1:] - ngram + 1, offsets[:-1])
            cut = _ranges(tail, offsets[1:] - tail)
            keep = np.ones(len(ids), dtype=bool)
            keep[cut] = False
            h = h[keep[:m]]
            short = np.flatnonzero((lengths < ngram) & (lengths > 0))
            if len(short):
                out[:] = np.insert(h, np.searchsorted(np.flatnonzero(keep[:m]), offsets[short]), 0)
            else:
                out[:] = h
        for k in np.flatnonzero((lengths < ngram) & (lengths > 0)).tolist():
            n = int(lengths[k])
            h1 = np.zeros(1, dtype=np.uint64)
            for t in ids[offsets[k]:offsets[k] + n]:
                h1 = h1 * _P + t
            out[out_off[k]] = _fmix64(h1 + np.uint64(n))[0]
    return out, out_off


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for each (s, c), vectorised."""
    total = int(counts.sum())
    cum = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.arange(total, dtype=np.int64) + np.repeat(starts - cum, counts)


def batch_token_ids(forms: FormBatch, shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of each dedup form, as `tokens` gives them, concatenated: (ids, offsets)."""
    if shingle == "char":
        return forms.codes.astype(np.uint64), forms.offsets
    parts = [tokens_of_form(f, shingle) for f in forms.strings()]
    off = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)
    return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)), off


@dataclass(frozen=True)
class MinHashParams:
    num_perm: int = 128
    ngram: int = 5
    shingle: str = "char"
    seed: int = 1
    threshold: float = 0.8
    lsh_index: str = "compact"
    sketch: str = "rensa"


class Signer:
    """Signatures of single texts or whole batches, with the sketch named in the parameters; cheap
    to build in each worker process."""

    def __init__(self, params: MinHashParams):
        if params.shingle not in SHINGLES:
            raise ValueError(f"shingle must be one of {SHINGLES}, got {params.shingle!r}")
        if params.sketch not in SKETCHES:
            raise ValueError(f"sketch must be one of {SKETCHES}, got {params.sketch!r}")
        self.params = params
        self._ab: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        """datasketch's (a, b) for the seed, as (num_perm x 1) columns; datasketch is imported only
        here and for its LSH index (with scipy it adds ~60 MB to every process)."""
        if self._ab is None:
            from datasketch import MinHash

            a, b = MinHash(num_perm=self.params.num_perm, seed=self.params.seed).permutations
            self._ab = np.asarray(a, dtype=np.uint32)[:, None], np.asarray(b, dtype=np.uint32)[:, None]
        return self._ab

    def signature(self, text: str) -> np.ndarray:
        return self.signatures(FormBatch([text]))[0]

    def signatures(self, forms: FormBatch) -> np.ndarray:
        """(documents x num_perm) uint32 signatures of a batch of dedup forms."""
        p = self.params
        hashes, offsets = ngram_hashes(*batch_token_ids(forms, p.shingle), p.ngram)
        if p.sketch == "rensa":
            rensa = _rensa()
            if not len(forms):
                return np.zeros((0, p.num_perm), dtype=np.uint32)
            digests = rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets.astype(np.uint64),
                                                                           p.num_perm, p.seed)
            rows = digests.to_rows()
            flat = array("I", chain.from_iterable(rows))  # 2x faster than np.array(list of lists)
            if flat.itemsize != 4:
                return np.array(rows, dtype=np.uint32)
            return np.frombuffer(flat, dtype=np.uint32).reshape(len(forms), p.num_perm)
        top = (hashes >> np.uint64(32)).astype(np.uint32)
        out = np.empty((len(forms), p.num_perm), dtype=np.uint32)
        for k in range(len(forms)):
            out[k] = self.signature_from_hashes(np.unique(top[offsets[k]:offsets[k + 1]]))
        return out

    def signature_from_hashes(self, hashes: np.ndarray) -> np.ndarray:
        """affine32: per-permutation minimum of a*h + b mod 2^32 over 32-bit shingle hashes at once
        (bit-identical to datasketch's MinHash.update_batch with the same seed)."""
        sig = np.full(self.params.num_perm, np.uint32(0xFFFFFFFF), dtype=np.uint32)
        pa, pb = self.permutations
        with np.errstate(over="ignore"):
            for start in range(0, len(hashes), _BLOCK):
                block = hashes[start:start + _BLOCK][None, :]
                np.minimum(sig, (pa * block + pb).min(axis=1), out=sig)
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


def band_key_matrix(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """64-bit key of each LSH band of each signature (n x num_perm -> n x bands uint64).
    Deterministic across processes (unlike Python's salted `hash`), so workers can compute them."""
    block = sigs[:, : bands * rows].reshape(len(sigs), bands, rows).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.zeros((len(sigs), bands), dtype=np.uint64)
        for k in range(rows):
            h = (h ^ block[:, :, k]) * np.uint64(0x9E3779B97F4A7C15)
        return _fmix64(h)


def band_keys(sigs: np.ndarray, bands: int, rows: int) -> list[list[int]]:
    """`band_key_matrix` as lists of Python ints (what the band indexes take)."""
    return band_key_matrix(sigs, bands, rows).tolist()


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
        from datasketch import MinHashLSH

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

    @property
    def last_needed(self) -> int:
        """The last record that still has to be compared (-1 if none)."""
        return max(self.earlier_of, default=-1)

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
