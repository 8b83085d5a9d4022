"""Sharded JSON Lines outputs: numbered part files plus a manifest with counts and sha256 per part.

`--shard-size` rolls over to the next part once a part holds at least that many bytes (streaming,
no extra pass). `--shards N` makes N parts of equal record counts (±1; fewer when there are fewer
records than N, so no part is an empty file): the lines are spooled to a temp file first, since
equal parts need the total. Either way the parts, read in manifest order, hold exactly the bytes
the unsharded output would hold, and an empty output is one empty part (as an unsharded output is
an empty file).
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import IO, Callable

FORMAT = "corpuskit-shards/1"
MANIFEST = "manifest.json"


def part_name(stem: str, index: int, total: int | None) -> str:
    return f"{stem}-{index:05d}-of-{total:05d}.jsonl" if total else f"{stem}-{index:05d}.jsonl"


class _Part:
    def __init__(self, name: str, fh: IO[bytes]):
        self.name, self.fh = name, fh
        self.sha = hashlib.sha256()
        self.records = self.bytes = 0

    def write(self, data: bytes) -> None:
        """Whole lines."""
        self.fh.write(data)
        self.sha.update(data)
        self.records += data.count(b"\n")
        self.bytes += len(data)

    def close(self) -> dict:
        self.fh.close()
        return {"file": self.name, "records": self.records, "bytes": self.bytes, "sha256": self.sha.hexdigest()}


class ShardedWriter:
    """Writes lines (without newline) as parts; `open_part(name)` opens a part file of the output
    folder for binary writing (a temp folder the caller publishes whole), `spool_dir` is where
    `--shards N` spools (default: the system temp folder; the spool is unlinked at once)."""

    def __init__(self, open_part: Callable[[str], IO[bytes]], stem: str = "part", shards: int | None = None,
                 shard_bytes: int | None = None, spool_dir: str | None = None):
        if (shards is None) == (shard_bytes is None):
            raise ValueError("give exactly one of shards and shard_bytes")
        self._open_part, self.stem = open_part, stem
        self.shards, self.shard_bytes = shards, shard_bytes
        self.parts: list[dict] = []
        self._current: _Part | None = None
        self._spool = tempfile.TemporaryFile(dir=spool_dir) if shards is not None else None
        self._count = 0

    def _open(self, index: int, total: int | None) -> _Part:
        name = part_name(self.stem, index, total)
        return _Part(name, self._open_part(name))

    def write(self, data: bytes) -> None:
        """Whole lines, each ending with a newline."""
        if self._spool is not None:
            self._spool.write(data)
            self._count += data.count(b"\n")
            return
        start = 0
        while start < len(data):
            if self._current is None:
                self._current = self._open(len(self.parts), None)
            need = self.shard_bytes - self._current.bytes  # >= 1: a full part is closed at once
            cut = data.find(b"\n", start + need - 1)  # the line that reaches the size ends the part
            end = len(data) if cut < 0 else cut + 1
            self._current.write(data[start:end])
            start = end
            if self._current.bytes >= self.shard_bytes:
                self.parts.append(self._current.close())
                self._current = None

    def close(self) -> dict:
        """Finish the parts; returns the manifest."""
        if self._spool is not None:
            n = self._count
            k = max(1, min(self.shards, n))
            self._spool.seek(0)
            for i in range(k):
                part = self._open(i, k)
                for _ in range(n // k + (i < n % k)):
                    part.write(self._spool.readline())
                self.parts.append(part.close())
            self._spool.close()
        elif self._current is not None:
            self.parts.append(self._current.close())
        elif not self.parts:
            self.parts.append(self._open(0, None).close())
        return {"format": FORMAT, "stem": self.stem, "records": sum(p["records"] for p in self.parts),
                "shards": self.parts}

    def abort(self) -> None:
        for fh in ([self._spool] if self._spool is not None else []) + ([self._current.fh] if self._current else []):
            fh.close()
