"""Sharded JSON Lines outputs: numbered part files plus a manifest with counts and sha256 per shard.

`--shard-size` rolls to the next part once a part holds about that many bytes (streaming, no extra
pass). `--shards N` makes exactly N parts of equal record counts (±1): the records are spooled to
one temp file first, since N equal parts need the total. Either way the parts, read in order, hold
exactly the bytes the unsharded output would hold.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "corpuskit-shards/1"


def part_name(stem: str, index: int, total: int | None) -> str:
    return f"{stem}-{index:05d}-of-{total:05d}.jsonl" if total else f"{stem}-{index:05d}.jsonl"


@dataclass
class _Part:
    path: Path
    fh: object
    sha: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    records: int = 0
    bytes: int = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.sha.update(data)
        self.records += 1
        self.bytes += len(data)

    def close(self) -> dict:
        self.fh.close()
        return {"file": self.path.name, "records": self.records, "bytes": self.bytes, "sha256": self.sha.hexdigest()}


class ShardedWriter:
    """Writes lines (without newline) into `folder` (a temp output folder the caller renames into place)."""

    def __init__(self, folder: str | os.PathLike, stem: str, shards: int | None = None, shard_bytes: int | None = None):
        if (shards is None) == (shard_bytes is None):
            raise ValueError("give exactly one of shards and shard_bytes")
        self.folder, self.stem = Path(folder), stem
        self.shards, self.shard_bytes = shards, shard_bytes
        self.parts: list[dict] = []
        self._current: _Part | None = None
        self._spool = None
        if shards is not None:
            self._spool_path = self.folder / f".{stem}.spool"
            self._spool = open(self._spool_path, "wb")
            self._count = 0

    def _open(self, index: int, total: int | None) -> _Part:
        path = self.folder / part_name(self.stem, index, total)
        return _Part(path, open(path, "wb"))

    def write(self, line: str) -> None:
        data = line.encode("utf-8") + b"\n"
        if self._spool is not None:
            self._spool.write(data)
            self._count += 1
            return
        if self._current is None:
            self._current = self._open(len(self.parts), None)
        self._current.write(data)
        if self._current.bytes >= self.shard_bytes:
            self.parts.append(self._current.close())
            self._current = None

    def write_lines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> dict:
        """Finish the parts; returns the manifest section (also written by the caller's report)."""
        if self._spool is not None:
            self._spool.close()
            n, k = self._count, self.shards
            with open(self._spool_path, "rb") as src:
                for i in range(k):
                    part = self._open(i, k)
                    for _ in range(n // k + (i < n % k)):
                        part.write(src.readline())
                    self.parts.append(part.close())
            self._spool_path.unlink()
        else:
            if self._current is not None:
                self.parts.append(self._current.close())
            elif not self.parts:  # an empty output is still one (empty) part: readers find the folder
                self.parts.append(self._open(0, None).close())
        return {"format": FORMAT, "stem": self.stem, "records": sum(p["records"] for p in self.parts),
                "shards": self.parts}


def verify_manifest(folder: str | os.PathLike, manifest: dict) -> list[str]:
    """Problems with a sharded folder (missing part, wrong size or digest); empty when it is intact."""
    problems = []
    for part in manifest["shards"]:
        path = Path(folder) / part["file"]
        if not path.is_file():
            problems.append(f"{path}: shard listed in the manifest is missing")
            continue
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
        if sha.hexdigest() != part["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest (changed or truncated)")
    return problems
