"""Bin packing of sample lengths into sequences of at most `capacity` tokens.

Best-fit decreasing keeps the open bins in a sorted list of distinct remaining capacities (at most
`capacity` values) with a stack of bins per capacity, so each placement is a bisect: O(n log L)
instead of scanning every open bin. It leaves almost no room unused on real length mixes; greedy
(next-fit in input order) is the concatenate-and-split behaviour of the usual run_clm flow, minus
the cutting.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Sequence


def check_fits(lengths: Sequence[int], capacity: int) -> None:
    for i, n in enumerate(lengths):
        if n > capacity or n <= 0:
            raise ValueError(f"sample {i} has {n} tokens, capacity is {capacity}")


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Sample indices per bin; each sample goes to the fullest bin it still fits in."""
    check_fits(lengths, capacity)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    caps: list[int] = []  # sorted distinct remaining capacities of open bins
    bins_with: dict[int, list[int]] = {}  # remaining capacity -> bin ids (a stack: deterministic)
    bins: list[list[int]] = []
    for i in order:
        n = lengths[i]
        k = bisect_left(caps, n)
        if k == len(caps):
            b, left = len(bins), capacity - n
            bins.append([i])
        else:
            cap = caps[k]
            stack = bins_with[cap]
            b = stack.pop()
            if not stack:
                del bins_with[cap]
                caps.pop(k)
            bins[b].append(i)
            left = cap - n
        if left > 0:
            stack = bins_with.get(left)
            if stack is None:
                bins_with[left] = [b]
                insort(caps, left)
            else:
                stack.append(b)
    return bins


def greedy(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Next-fit in input order: fill the current bin until the next sample does not fit."""
    check_fits(lengths, capacity)
    bins: list[list[int]] = []
    room = 0
    for i, n in enumerate(lengths):
        if n > room:
            bins.append([])
            room = capacity
        bins[-1].append(i)
        room -= n
    return bins


STRATEGIES = {"bfd": best_fit_decreasing, "greedy": greedy}
