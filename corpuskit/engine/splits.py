"""Input splits: one big JSON Lines or text file is read as byte ranges that start at line starts, so
several workers (or cluster nodes) read it at once; a `.gz`, a JSON array or a CSV file is one split.

A split's reader numbers lines from 1; the runner turns those into file line numbers from the line
counts of the earlier splits of the same file, which it sees first because results come in order.
So no extra pass over the data is needed, and every origin names the right line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from corpuskit.engine import fs

DEFAULT_SPLIT_BYTES = 64 << 20
MIN_AUTO_SPLIT_BYTES = 1 << 20
_SCAN = 1 << 16
_SPLITTABLE = (".jsonl", ".txt")


@dataclass(frozen=True, slots=True)
class Split:
    path: str
    start: int = 0
    end: int | None = None  # None: to the end of the file
    index: int = 0  # the split's position among its file's splits

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end is None

    def __str__(self) -> str:
        return self.path if self.whole else f"{self.path}[{self.start}:{'' if self.end is None else self.end}]"


def splittable(path: str) -> bool:
    name = path.lower()
    return name.endswith(_SPLITTABLE) and (fs.is_remote(path) or os.path.isfile(path))


def _open(path: str) -> IO[bytes]:
    return fs.open_input(path) if fs.is_remote(path) else open(path, "rb")


def _size(path: str) -> int:
    return fs.size(path) if fs.is_remote(path) else os.path.getsize(path)


def _next_line_start(fh, pos: int, size: int) -> int:
    """The first offset >= pos that starts a line (size if none): scans in blocks, so one huge line
    costs no memory."""
    if pos <= 0:
        return 0
    fh.seek(pos - 1)
    at = pos - 1
    while at < size:
        block = fh.read(_SCAN)
        if not block:
            break
        k = block.find(b"\n")
        if k != -1:
            return at + k + 1
        at += len(block)
    return size


def auto_split_bytes(files: list[str], workers: int) -> int:
    """DEFAULT_SPLIT_BYTES, or less where that would leave workers idle: about 4 splits per worker,
    never under MIN_AUTO_SPLIT_BYTES (a split costs a task). Output never depends on it."""
    if workers <= 1:
        return DEFAULT_SPLIT_BYTES
    total = sum(_size(f) for f in files if splittable(f))
    return max(MIN_AUTO_SPLIT_BYTES, min(DEFAULT_SPLIT_BYTES, total // (4 * workers)))


def plan_splits(files: Iterable[str], split_bytes: int | None = DEFAULT_SPLIT_BYTES, workers: int = 1) -> list[Split]:
    """Splits in input order; the same files and split size always give the same splits
    (`split_bytes` None: `auto_split_bytes` for `workers`)."""
    files = list(files)
    if split_bytes is None:
        split_bytes = auto_split_bytes(files, workers)
    if split_bytes < 1:
        raise ValueError("split_bytes must be positive")
    out: list[Split] = []
    for path in files:
        size = _size(path) if splittable(path) else 0
        if size <= split_bytes:
            out.append(Split(path))
            continue
        starts = [0]
        with _open(path) as fh:
            while (nxt := _next_line_start(fh, starts[-1] + split_bytes, size)) < size:
                starts.append(nxt)
        for i, s in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            out.append(Split(path, s, end, i))
    return out


def split_lines(split: Split) -> Iterator[bytes]:
    """The raw lines (with their newline) of one split of an uncompressed file."""
    with _open(split.path) as fh:
        fh.seek(split.start)
        if split.end is None:
            yield from fh
            return
        left = split.end - split.start
        while left > 0:
            line = fh.readline()
            if not line:
                return
            left -= len(line)
            yield line


def count_lines(split: Split) -> int:
    """Physical lines in a split (it ends at a line start, so: its newlines; +1 for an unterminated tail)."""
    n, last = 0, b"\n"
    with _open(split.path) as fh:
        fh.seek(split.start)
        left = None if split.end is None else split.end - split.start
        while left is None or left > 0:
            block = fh.read(1 << 22 if left is None else min(1 << 22, left))
            if not block:
                break
            n += block.count(b"\n")
            last = block[-1:]
            if left is not None:
                left -= len(block)
    return n + (last != b"\n")
