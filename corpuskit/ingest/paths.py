"""Input arguments -> files: each real file once, no hang on symlink loops, no silent skip.

Folders are walked, and `**` globs matched, by our own walk: the standard `glob('**')` follows a
symlinked folder forever (`loop -> ..` gives loop/loop/loop/...), and `Path.rglob` skips linked
folders without a word. Here a symlinked folder is followed once; a link back into a folder being
walked is a loop, reported on stderr and not followed; a broken link is reported; a file reached
under two names (two links, a hard link, listed twice) is read once, and that is reported too.
Non-regular files (FIFOs, devices, sockets) named as data are refused: reading one would block or
never end.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import stat
import sys
from pathlib import Path
from typing import Callable, Iterator

from corpuskit.ingest.errors import InputError

class Warnings:
    """`warning:` lines on stderr, each message once per expansion."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            print(f"warning: {message}", file=sys.stderr, flush=True)


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: str, st: os.stat_result) -> InputError:
    return InputError(path, f"is {file_kind(st.st_mode)}, not a regular file; corpuskit reads regular files only "
                            "(a FIFO would block, a device never end)")


def _key(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def stat_entry(path: str, warn: Warnings) -> os.stat_result | None:
    """stat() following links; None (with a warning) for a broken link or a link loop."""
    try:
        return os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            if e.errno == errno.ELOOP:
                warn(f"{path}: symbolic link loop (the link chain never ends); skipped")
            else:
                warn(f"{path}: broken symbolic link (to {os.readlink(path)!r}: {e.strerror}); skipped")
            return None
        raise


class FileSet:
    """Files in the order added, each real file (device, inode) once."""

    def __init__(self, warn: Warnings) -> None:
        self.paths: list[str] = []
        self._seen: dict[tuple[int, int], tuple[str, int]] = {}
        self.warn = warn

    def add(self, path: str, st: os.stat_result | None, arg: int) -> None:
        """`st` None: a URL, known by its name."""
        key = ("url", path) if st is None else _key(st)
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = (path, arg)
            self.paths.append(path)
        elif os.path.normpath(first[0]) != os.path.normpath(path):
            self.warn(f"{path}: same file as {first[0]}; read once")
        elif first[1] != arg:
            self.warn(f"{path}: given more than once; read once")


class _Chain:
    """The folders on the current walk path (linked list), to tell a loop from a second route."""

    __slots__ = ("key", "path", "parent")

    def __init__(self, key, path: str, parent: "_Chain | None"):
        self.key, self.path, self.parent = key, path, parent

    def find(self, key) -> str | None:
        node = self
        while node is not None:
            if node.key == key:
                return node.path
            node = node.parent
        return None


def _entries(directory: str) -> list[os.DirEntry]:
    with os.scandir(directory) as it:
        return sorted(it, key=lambda e: e.name)


def _enter(path: str, st: os.stat_result, chain: _Chain, visited: dict, warn: Warnings) -> _Chain | None:
    """The chain for descending into folder `path`, or None (reported) when it is a loop or was
    already walked by another route."""
    key = _key(st)
    back = chain.find(key)
    if back is not None:
        warn(f"{path}: symbolic link loop (leads back to {back}); not followed")
        return None
    seen = visited.get(key)
    if seen is not None:
        if os.path.normpath(seen) != os.path.normpath(path):
            warn(f"{path}: same folder as {seen}; read once")
        return None
    visited[key] = path
    return _Chain(key, path, chain)


def walk_files(directory: str, want: Callable[[str], bool], warn: Warnings) -> list[tuple[str, os.stat_result]]:
    """(path, stat) of the files below `directory` whose name `want` accepts, sorted by path.

    Hidden files and folders (.git, .cache) are skipped; symlinked folders are followed once."""
    root = os.stat(directory)
    visited: dict = {_key(root): directory}
    stack = [(directory, _Chain(_key(root), directory, None))]
    out = []
    while stack:
        folder, chain = stack.pop()
        for entry in _entries(folder):
            if entry.name.startswith("."):
                continue
            st = stat_entry(entry.path, warn)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode):
                sub = _enter(entry.path, st, chain, visited, warn)
                if sub is not None:
                    stack.append((entry.path, sub))
            elif want(entry.name):
                if not stat.S_ISREG(st.st_mode):
                    raise not_regular(entry.path, st)
                out.append((str(Path(entry.path)), st))  # as Path.rglob named them: no "./"
    return sorted(out, key=lambda x: x[0])


def glob_paths(pattern: str, warn: Warnings) -> list[tuple[str, os.stat_result]]:
    """(path, stat) of what `pattern` matches (files and folders), sorted by path; broken links
    are reported and left out. `**` matches any number of folders, never looping."""
    if "**" not in pattern:  # depth is bounded by the pattern: the standard glob is safe
        matches: Iterator[str] = iter(glob.glob(pattern))
    else:
        matches = _glob_recursive(pattern, warn)
    out = []
    for m in sorted(set(matches)):
        st = stat_entry(m, warn)
        if st is not None:
            out.append((m, st))
    return out


def _magic(segment: str) -> bool:
    return glob.has_magic(segment)


def _name_matches(name: str, segment: str) -> bool:
    if name.startswith(".") and not segment.startswith("."):
        return False  # as glob: wildcards do not match hidden names
    return fnmatch.fnmatchcase(name, segment)


def _glob_recursive(pattern: str, warn: Warnings) -> Iterator[str]:
    """Matches of a pattern holding `**` (glob's recursive semantics, hidden folders skipped)."""
    parts = pattern.split(os.sep)
    first = next(i for i, p in enumerate(parts) if _magic(p))
    prefix = os.sep.join(parts[:first]) or (os.sep if pattern.startswith(os.sep) else "")
    root = prefix or "."
    segs = [p for p in parts[first:] if p]
    try:
        root_st = os.stat(root)
    except OSError:
        return
    if not stat.S_ISDIR(root_st.st_mode):
        return
    visited: dict = {}

    def join(folder: str, name: str) -> str:  # relative patterns give relative paths, as glob does
        return os.path.join(folder, name) if prefix or folder != "." else name

    stack = [(root, 0, _Chain(_key(root_st), root, None))]
    while stack:
        folder, i, chain = stack.pop()
        if visited.setdefault((chain.key, i), folder) != folder:
            if segs[i] == "**":
                warn(f"{folder}: same folder as {visited[(chain.key, i)]}; read once")
            continue
        seg, last = segs[i], i == len(segs) - 1
        if seg == "**":
            if last:  # the folder and everything below it: expanding the folder covers it all
                yield folder
                continue
            stack.append((folder, i + 1, chain))
            for entry in _entries(folder):
                if entry.name.startswith("."):
                    continue
                st = stat_entry(entry.path, warn)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    back = chain.find(_key(st))
                    if back is not None:
                        warn(f"{entry.path}: symbolic link loop (leads back to {back}); not followed")
                        continue
                    sub = join(folder, entry.name)
                    stack.append((sub, i, _Chain(_key(st), sub, chain)))
            continue
        names = [e.name for e in _entries(folder)] if _magic(seg) else [seg]
        for name in names:
            if _magic(seg) and not _name_matches(name, seg):
                continue
            path = join(folder, name)
            if last:
                if os.path.lexists(path):
                    yield path
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append((path, i + 1, _Chain(_key(st), path, chain)))
