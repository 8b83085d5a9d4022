"""Pass 1: stream the inputs once, writing each valid record as one canonical JSON line to a spool
file and keeping only indices per record (byte offset, category, origin file and line).

Converting the inputs (JSON parsing, format detection, canonical JSON) is the expensive, CPU-bound
part, so it happens once, on the engine (steps.py over input splits, in `--workers` processes or
Ray tasks); pass 2 reads the canonical lines back from the spool by offset. Memory: 32 bytes per record.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from corpuskit.bucket.steps import BucketSteps, file_category, record_category  # noqa: F401 (stats imports them here)
from corpuskit.cli_util import progress
from corpuskit.engine import make_executor
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import Split, count_lines
from corpuskit.engine.tasks import BATCH, RecordTask, record_tasks, task_items
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES
from corpuskit.outputs import dumps
from corpuskit.records import Origin, Rejected
from corpuskit.step import run_steps


@dataclass
class Spool:
    path: Path
    files: list[str]
    names: list[str]            # category names in first-seen order
    category_of: np.ndarray     # per record: index into names
    offsets: np.ndarray         # per record: start byte in the spool, plus one end offset
    file_index: np.ndarray      # per record: index into files
    line: np.ndarray            # per record: 1-based input line

    def __len__(self) -> int:
        return int(self.category_of.size)

    def origin(self, ordinal: int) -> Origin:
        return Origin(self.files[int(self.file_index[ordinal])], int(self.line[ordinal]))


class _Index:
    """Per-record indices collected while spooling (category, start byte, input file, line)."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.cats, self.offsets, self.fidx, self.lines = array("q"), array("q"), array("q"), array("q")
        self.pos = 0

    def extend(self, other: "_Index") -> None:
        """Append another index whose spool bytes were appended after ours (category ids remapped)."""
        remap = np.array([self.names.setdefault(n, len(self.names)) for n in other.names], dtype=np.int64)
        if len(other.cats):
            self.cats.frombytes(remap[_np(other.cats)].tobytes())
            self.offsets.frombytes((_np(other.offsets) + self.pos).tobytes())
            self.fidx.frombytes(other.fidx.tobytes())
            self.lines.frombytes(other.lines.tobytes())
        self.pos += other.pos


@dataclass
class SpoolPart:
    """What one task sends back: its part of the spool (canonical lines), their indices (offsets
    from the part's start, lines from the split's first line), its rejects and the split's physical
    line count (engine.runner.LineNumbers)."""

    split: Split
    index: _Index
    data: bytes
    rejected: list[Rejected]
    n_lines: int


def run_spool_task(task: RecordTask) -> SpoolPart:
    """Worker: one piece of input through bucket's steps (steps.BucketSteps)."""
    steps = task.build_steps()
    split = task.split
    items = task_items(task)
    index = _Index()
    names, cats, offsets, lines = index.names, index.cats, index.offsets, index.lines
    chunks: list[bytes] = []
    rejected: list[Rejected] = []
    pos = 0
    while batch := list(islice(items, BATCH)):
        out = run_steps(steps, batch)
        rejected.extend(out.rejected)
        for cat, rec in out.kept:
            data = (dumps(rec.to_json()) + "\n").encode("utf-8")
            chunks.append(data)
            cats.append(names.setdefault(cat, len(names)))
            offsets.append(pos)
            lines.append(rec.origin.line)
            pos += len(data)
    index.pos = pos
    n_lines = count_lines(split) if task.items is None and not split.whole else 0
    return SpoolPart(split, index, b"".join(chunks), rejected, n_lines)


def write_spool(files: list[str], path: Path, field: str, default: str, on_reject: Callable[[Rejected], None],
                by_file: bool = False, fmt: str = "auto", encoding: str = "utf-8", workers: int = 1,
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, engine: str = "local",
                ray_address: str | None = None, split_bytes: int | None = None) -> Spool:
    """Pass 1 on the engine: inputs are read in splits (big .jsonl/.txt files in byte ranges, so one
    file is read in parallel) by `workers` processes or Ray tasks, and the parts are appended in
    input order with file line numbers, so the spool, and everything after it, is the same bytes
    whatever the engine, `workers` or `split_bytes` (None: sized for the workers)."""
    file_ids = {f: i for i, f in enumerate(files)}
    build = BucketSteps(fmt, field, default, by_file)
    index, numbers = _Index(), LineNumbers()
    with open(path, "wb") as fh, make_executor(engine, workers, ray_address) as ex:
        tasks = record_tasks(files, build, encoding, max_record_bytes, split_bytes, ex.workers)
        for part in progress(ex.map(run_spool_task, tasks), "bucket: read", unit="task"):
            off = numbers.offset(part.split, part.n_lines)
            for rej in part.rejected:
                if off:
                    rej.origin = Origin(rej.origin.path, rej.origin.line + off)
                on_reject(rej)
            n = len(part.index.cats)
            if off and n:
                part.index.lines = array("q", (_np(part.index.lines) + off).tobytes())
            part.index.fidx = array("q", [file_ids.get(part.split.path, -1)]) * n
            fh.write(part.data)
            index.extend(part.index)
    index.offsets.append(index.pos)
    return Spool(path, files, list(index.names), _np(index.cats), _np(index.offsets), _np(index.fidx),
                 _np(index.lines))


def _np(a: array) -> np.ndarray:
    return np.frombuffer(a, dtype=np.int64) if len(a) else np.empty(0, dtype=np.int64)


class SpoolReader:
    """Random access to spooled lines with one positioned read each (`os.pread`): the OS page
    cache may keep the spool, the process holds only the line it is copying."""

    def __init__(self, spool: Spool):
        self.spool = spool
        self._fd = os.open(spool.path, os.O_RDONLY)

    def line(self, ordinal: int) -> bytes:
        o = self.spool.offsets
        a, b = int(o[ordinal]), int(o[ordinal + 1])
        return os.pread(self._fd, b - a, a)

    def lines(self, ordinals: np.ndarray, chunk: int = 1 << 16) -> Iterable[bytes]:
        """The lines of `ordinals`, in that order; offsets are gathered a chunk at a time."""
        fd, offsets, pread = self._fd, self.spool.offsets, os.pread
        for i in range(0, ordinals.size, chunk):
            part = ordinals[i:i + chunk]
            starts = offsets[part]
            for a, n in zip(starts.tolist(), (offsets[part + 1] - starts).tolist()):
                yield pread(fd, n, a)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "SpoolReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
