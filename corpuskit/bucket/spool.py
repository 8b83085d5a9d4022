"""Pass 1: stream the inputs once, writing each valid record as one canonical JSON line to a spool
file and keeping only indices per record (byte offset, category, origin file and line).

Converting the inputs (JSON parsing, format detection) is the expensive part, so it happens once;
pass 2 reads the canonical lines back from the spool by offset. Memory: 24 bytes per record.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from corpuskit.outputs import dumps
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


def write_spool(records: Iterable[Record | Rejected], path: Path, files: list[str], field: str,
                default: str, on_reject: Callable[[Rejected], None], by_file: bool = False) -> Spool:
    file_ids = {f: i for i, f in enumerate(files)}
    names: dict[str, int] = {}
    cats, offsets, fidx, lines = array("q"), array("q"), array("q"), array("q")
    pos = 0
    with open(path, "wb") as fh:
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
    offsets.append(pos)
    return Spool(path, files, list(names), _np(cats), _np(offsets), _np(fidx), _np(lines))


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
