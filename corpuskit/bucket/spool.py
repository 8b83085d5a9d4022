"""Pass 1: stream the inputs once, writing each valid record as one canonical JSON line to a spool
file and keeping only indices per record (byte offset, category, origin file and line).

Converting the inputs (JSON parsing, format detection, canonical JSON) is the expensive, CPU-bound
part, so it happens once, in `--workers` processes when asked (one input file per task); pass 2
reads the canonical lines back from the spool by offset. Memory: 32 bytes per record.
"""

from __future__ import annotations

import json
import os
import shutil
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from corpuskit.cli_util import progress
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, InputError, iter_records
from corpuskit.outputs import dumps
from corpuskit.pool import worker_pool
from corpuskit.records import Origin, Record, Rejected


def file_category(path: str) -> str:
    """`--category-by-file`: data/news.jsonl.gz -> news."""
    return Path(path).name.split(".")[0]


def record_category(rec: Record, field: str, default: str, by_file: bool = False) -> str | Rejected:
    """The record's category: `field` (top-level key); when missing or blank, its input file's
    name (with `by_file`) or `default`."""
    value = rec.category if field == "category" else rec.extra.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return file_category(rec.origin.path) if by_file else default
    if not isinstance(value, str):
        return Rejected("wrong_type", rec.origin, f"category field {field!r} must be a string, "
                        f"got {type(value).__name__}", raw=rec.to_json())
    return value


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


def _spool_records(records: Iterable[Record | Rejected], fh, file_ids: dict[str, int], field: str,
                   default: str, on_reject: Callable[[Rejected], None], by_file: bool) -> _Index:
    """Write each valid record's canonical line to `fh`; keep only its indices."""
    index = _Index()
    names, cats, offsets, fidx, lines = index.names, index.cats, index.offsets, index.fidx, index.lines
    pos = 0
    for item in records:
        if isinstance(item, Rejected):
            on_reject(item)
            continue
        cat = record_category(item, field, default, by_file)
        if isinstance(cat, Rejected):
            on_reject(cat)
            continue
        data = (dumps(item.to_json()) + "\n").encode("utf-8")
        fh.write(data)
        cats.append(names.setdefault(cat, len(names)))
        offsets.append(pos)
        fidx.append(file_ids.get(item.origin.path, -1))
        lines.append(item.origin.line)
        pos += len(data)
    index.pos = pos
    return index


def _spool_one_file(task: tuple) -> _Index | tuple[str, str, int | None]:
    """Worker: spool one input file to its own part file (rejects as JSON lines beside it)."""
    file_no, path, part, field, default, by_file, fmt, encoding, max_record_bytes = task
    try:
        with open(part, "wb") as fh, open(f"{part}.rejected", "wb") as rej:
            def on_reject(r: Rejected) -> None:
                rej.write((dumps(r.to_json()) + "\n").encode("utf-8"))
            index = _spool_records(iter_records([path], fmt, None, encoding, max_record_bytes=max_record_bytes),
                                   fh, {path: file_no},
                                   field, default, on_reject, by_file)
    except InputError as e:  # sent back as plain values: the exception itself does not unpickle
        return e.path, e.message, e.line
    return index


def _replay_rejects(path: str, on_reject: Callable[[Rejected], None]) -> None:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            on_reject(Rejected(d.pop("reason"), Origin(**d.pop("origin")), d.pop("message"),
                               d.pop("record"), d))


def write_spool(files: list[str], path: Path, field: str, default: str, on_reject: Callable[[Rejected], None],
                by_file: bool = False, fmt: str = "auto", encoding: str = "utf-8", workers: int = 1,
                max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Spool:
    """Pass 1. With `workers > 1`, input files are converted in parallel (one file per task) and
    their parts appended in input order, so the spool, and everything after it, is the same bytes
    whatever `workers` is."""
    file_ids = {f: i for i, f in enumerate(files)}
    with open(path, "wb") as fh:
        if workers <= 1 or len(files) <= 1:
            records = progress(iter_records(files, fmt, None, encoding, max_record_bytes=max_record_bytes),
                               "bucket: read")
            index = _spool_records(records, fh, file_ids, field, default, on_reject, by_file)
        else:
            index = _Index()
            tasks = [(i, f, f"{path}.part-{i:06d}", field, default, by_file, fmt, encoding, max_record_bytes)
                     for i, f in enumerate(files)]
            bar = progress(None, "bucket: read", total=len(files), unit="file")
            with worker_pool(min(workers, len(files))) as pool:
                for task, result in zip(tasks, pool.imap(_spool_one_file, tasks)):
                    if isinstance(result, tuple):
                        raise InputError(*result)
                    part = task[2]
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, fh, 1 << 20)
                    os.unlink(part)
                    _replay_rejects(f"{part}.rejected", on_reject)
                    os.unlink(f"{part}.rejected")
                    index.extend(result)
                    bar.update(1)
            bar.close()
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
