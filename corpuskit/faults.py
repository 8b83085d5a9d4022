"""Named kill points, so tests can SIGKILL a command at an exact moment of writing its outputs.

`CORPUSKIT_FAULT=NAME` (or `NAME@N`) makes the process kill itself with SIGKILL the N-th time
(default: the first) it reaches `point(NAME)` — the same as a crash or `kill -9` there, with no
chance to clean up. Points: see `POINTS`. The variable is a comma list; it may also hold flags
(`FLAGS`) that make the process behave as on a more limited system. Without the variable (always,
outside fault-injection tests) a point costs one comparison.
"""

from __future__ import annotations

import os
import signal

POINTS = {
    "file-written": "an output file is complete in its temp file, not yet renamed into place",
    "set-journaling": "between writing two commit journals of a set (before its commit point)",
    "set-journaled": "a set of output files is complete and its commit journal written, nothing renamed yet",
    "set-renaming": "between two renames of a set of output files",
    "set-renamed": "every file of a set renamed, commit journal not yet removed",
    "dir-built": "an output folder is complete in its temp folder, its ownership marker not yet written",
    "dir-swapping": "two-rename fallback only: the old output folder moved aside, the new one not yet in place",
    "dir-swapped": "the new output folder is in place, the old one not yet deleted",
}

FLAGS = {"no-rename-exchange": "act as on a file system that cannot swap two folders in one rename"}

_SPEC = [s.strip() for s in (os.environ.get("CORPUSKIT_FAULT") or "").split(",") if s.strip()]
_KILLS = {name: int(nth or 1) for name, _, nth in (s.partition("@") for s in _SPEC if s not in FLAGS)}
_FLAGS = {s for s in _SPEC if s in FLAGS}
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Die here (SIGKILL) if CORPUSKIT_FAULT names this point (and this is its N-th hit)."""
    if not _KILLS or name not in _KILLS:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= _KILLS[name]:
        os.kill(os.getpid(), signal.SIGKILL)


def flag(name: str) -> bool:
    return name in _FLAGS
