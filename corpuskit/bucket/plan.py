"""Which record goes to which bucket, decided from counts and a seed alone (no texts needed).

Each category's records (after weighting) are shuffled with a per-category generator and cut into
exactly N bins whose sizes differ by at most one; bucket i is bin i of every category. The bins that
get the one extra record continue round-robin from where the previous category stopped, so bucket
sizes also differ by at most one, and each category's count in every bucket is floor or ceil of
its global count / N: within one record of its global share.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

_SEED_MOD = 1 << 64
_CATEGORY_STREAM, _BUCKET_STREAM = 0, 1


def _rng(seed: int, stream: int, key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed % _SEED_MOD, stream, key]))


def category_rng(seed: int, name: str) -> np.random.Generator:
    """Keyed by the category's name, so adding a category never reshuffles the others."""
    key = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return _rng(seed, _CATEGORY_STREAM, key)


def bucket_rng(seed: int, bucket: int) -> np.random.Generator:
    return _rng(seed, _BUCKET_STREAM, bucket)


def bin_sizes(total: int, num_bins: int, first_extra: int = 0) -> np.ndarray:
    """Sizes of `num_bins` bins summing to `total`, differing by at most one; the `total % num_bins`
    larger bins start at `first_extra` and wrap around."""
    q, r = divmod(total, num_bins)
    sizes = np.full(num_bins, q, dtype=np.int64)
    sizes[(first_extra + np.arange(r)) % num_bins] += 1
    return sizes


def weighted_count(n: int, weight: Fraction) -> int:
    """Records a category has after weighting: weight * n rounded half up (exact arithmetic)."""
    return int((weight * n + Fraction(1, 2)) // 1)


def copies_per_record(n: int, weight: Fraction, rng: np.random.Generator) -> np.ndarray:
    """How often each of n records is used: floor(weight) times, plus once more for a seeded subset
    sized so the total is `weighted_count` (2 -> all twice; 1.5 -> all once + a half; 0.5 -> a half)."""
    whole = int(weight // 1)
    copies = np.full(n, whole, dtype=np.int64)
    extra = weighted_count(n, weight) - whole * n
    if extra:
        copies[rng.permutation(n)[:extra]] += 1
    return copies


@dataclass
class CategoryPlan:
    name: str
    weight: Fraction
    before: int
    items: np.ndarray           # global record ordinals after weighting, in bin order
    sizes: np.ndarray           # records of this category in each bucket
    starts: np.ndarray          # where each bucket's bin starts in `items`
    downsampled: np.ndarray     # ordinals of records that were not drawn at all

    @property
    def after(self) -> int:
        return int(self.items.size)


@dataclass
class BucketPlan:
    num_buckets: int
    seed: int
    shuffle: bool
    categories: list[CategoryPlan] = field(default_factory=list)

    def bucket_counts(self, bucket: int) -> dict[str, int]:
        return {c.name: int(c.sizes[bucket]) for c in self.categories}

    def bucket_size(self, bucket: int) -> int:
        return sum(int(c.sizes[bucket]) for c in self.categories)

    def bucket_items(self, bucket: int) -> np.ndarray:
        """Global ordinals of the records in bucket `bucket`, in output order (built on demand, so
        only one bucket's index array exists beyond the per-category plans)."""
        parts = [c.items[c.starts[bucket]:c.starts[bucket] + c.sizes[bucket]] for c in self.categories]
        items = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        if self.shuffle:
            return bucket_rng(self.seed, bucket).permutation(items)
        return np.sort(items, kind="stable")  # input order, repeats side by side

    def downsampled(self) -> np.ndarray:
        parts = [c.downsampled for c in self.categories]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


def plan_buckets(category_of: np.ndarray, names: list[str], num_buckets: int, seed: int,
                 weights: dict[str, Fraction] | None = None, shuffle: bool = True) -> BucketPlan:
    """Plan N buckets for records whose category index (into `names`) is `category_of[ordinal]`.

    Categories are processed in name order, so the plan depends only on the counts, names, weights,
    N and the seed, never on the order categories first appear in.
    """
    if num_buckets < 1:
        raise ValueError("num_buckets must be >= 1")
    weights = weights or {}
    category_of = np.asarray(category_of, dtype=np.int64)
    by_category = np.argsort(category_of, kind="stable")  # ordinals grouped by category, input order kept
    counts = np.bincount(category_of, minlength=len(names))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    plan = BucketPlan(num_buckets, seed, shuffle)
    first_extra = 0
    for idx in sorted(range(len(names)), key=lambda i: names[i]):
        name = names[idx]
        members = by_category[bounds[idx]:bounds[idx + 1]]
        weight = weights.get(name, Fraction(1))
        rng = category_rng(seed, name)
        copies = copies_per_record(members.size, weight, rng)
        items = np.repeat(members, copies)
        if shuffle:
            items = rng.permutation(items)
        sizes = bin_sizes(items.size, num_buckets, first_extra)
        first_extra = (first_extra + items.size % num_buckets) % num_buckets
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        plan.categories.append(CategoryPlan(name, weight, int(members.size), items, sizes, starts,
                                            members[copies == 0]))
    return plan
