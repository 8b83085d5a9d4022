"""Atomic, owned, self-cleaning outputs: a crash, even SIGKILL, leaves the old complete output or the
new complete output, never a partial or mixed one, and the next run removes what a killed run left.

- One file (`atomic_file`): written to a temp sibling, fsynced, renamed over the target.
- A set of files that belong together (`atomic_files`: convert's out.jsonl + out.rejected.jsonl +
  --report, stats --json + --plot, a template exported into a tokenizer folder): every file is
  written to its temp sibling and fsynced; then a commit journal naming every (temp, target) pair
  is written beside each target (`.NAME.ck-commit`); the last journal written is the commit point.
  Then the temps are renamed into place and the journals removed. A run killed in between leaves
  the journals; `settle(target)` — called by `expand_inputs` for every input file, by the tokenizer
  folder loader and before any write of a file of the set — finishes the commit (every journal was
  written: rename the remaining temps) or undoes it (not all were: delete the temps). So no
  corpuskit reader sees an old/new mixed set. (POSIX cannot rename two paths in one step: a tool
  other than corpuskit looking in the moment between such a kill and the next corpuskit call can;
  the journal beside the file marks that state.)
- A folder (`atomic_dir`): built in a temp sibling folder, its ownership marker written last, then
  swapped with the old folder in one step (Linux `renameat2(RENAME_EXCHANGE)`). Where the file
  system cannot exchange, two renames; a run killed between them leaves no folder at the path, and
  the next run on it puts back the new folder if its marker was written, else the old one.

Ownership: an existing non-empty folder is replaced only if it holds the marker `MARKER` (a JSON
object naming format version and command), a name no user file has; `report.json` is not enough.

Leftovers: temp and old paths are `.NAME.ck<pid>-<random>.tmp` / `.old`, never reused, so a
leftover cannot make a run fail. Before writing NAME, a run removes the leftovers of NAME whose
process is gone, and those older versions made (`.NAME.old-<pid>`; mkstemp temps and render/pack
`.build-*` scratch folders idle for an hour).
A live process's leftovers are never touched (pids are this machine's: one output folder written
from two machines at once is not supported, nor are two runs writing the same output at once).

JSON is written with `ensure_ascii=False` and keys in the order given, so the same records always
give the same bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import IO, Any, Iterator

from corpuskit import __version__, faults
from corpuskit.errors import CorpusError
from corpuskit.engine.fs import is_remote, local_path

MARKER = ".corpuskit-output.json"  # in every folder corpuskit writes; the only proof a folder is ours
MARKER_FORMAT = "corpuskit.output/1"
LEGACY_MARKER = "report.json"  # what folders written before the marker hold (read, never trusted to replace)
JOURNAL_FORMAT = "corpuskit.commit/1"
LEGACY_IDLE_S = 3600  # an old-style temp (no pid in its name) untouched this long is a leftover

_LEFTOVER = re.compile(r"\.ck(\d+)-[0-9a-f]{8}\.(tmp|old)")
_LEGACY_OLD = re.compile(r"\.old-(\d+)")
_LEGACY_TMP = re.compile(r"\.[a-z0-9_]{8}\.tmp")
_LEGACY_BUILD = re.compile(r"\.build-[a-z0-9_]{8}")  # render/pack scratch folders, once made beside the output
_LEGACY_BUILD_FILES = {"rows.arrow", "ds"}
_LIVE: set[str] = set()  # temp/old/journal paths this process is using now (its pid may be a reused one)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class OutputError(CorpusError):
    pass


# ---------------------------------------------------------------------------------------------- names


def local_output(path: str | os.PathLike) -> str | os.PathLike:
    """A file:// URL as its path; other URLs are refused (only convert writes them: engine/fs.py)."""
    if is_remote(path):
        raise OutputError(f"{path}: this command writes local paths only (`corpuskit convert` can write fsspec "
                          "URLs); write it here and copy it")
    return local_path(path)


def _abs(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(local_output(path)))


def _sibling(target: Path, kind: str) -> Path:
    p = target.with_name(f".{target.name}.ck{os.getpid()}-{secrets.token_hex(4)}.{kind}")
    _LIVE.add(str(p))
    return p


def journal_path(target: str | os.PathLike) -> Path:
    t = _abs(target)
    return t.with_name(f".{t.name}.ck-commit")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    try:  # a killed child nobody has reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _stale(pid: int, path: str | os.PathLike) -> bool:
    """Left by a process that is gone (our own pid counts only for paths this process is not using)."""
    return str(path) not in _LIVE if pid == os.getpid() else not _alive(pid)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------- leftovers


def sweep(target: str | os.PathLike) -> None:
    """Finish or undo what a killed run left for output `target`, then remove its dead leftovers."""
    target = _abs(target)
    settle(target)
    prefix = f".{target.name}."
    try:
        entries = [e for e in os.scandir(target.parent) if e.name.startswith(prefix)]
    except (FileNotFoundError, NotADirectoryError):
        return
    tmps: list[tuple[int, Path]] = []
    olds: list[tuple[int, Path]] = []
    legacy: list[Path] = []
    for e in entries:
        rest, p = e.name[len(prefix) - 1:], Path(e.path)
        if m := _LEFTOVER.fullmatch(rest):
            if _stale(int(m[1]), p):
                (olds if m[2] == "old" else tmps).append((int(m[1]), p))
        elif m := _LEGACY_OLD.fullmatch(rest):
            if _stale(int(m[1]), p):
                legacy.append(p)
        elif _LEGACY_TMP.fullmatch(rest):
            with contextlib.suppress(OSError):
                if _idle(p) > LEGACY_IDLE_S:
                    legacy.append(p)
    if olds and not os.path.lexists(target):  # a two-rename folder swap was cut between its renames
        pid, old = olds[0]
        new = next((t for q, t in tmps if q == pid and t.is_dir() and read_marker(t)), None)
        os.rename(new or old, target)  # the new folder if it was complete, else the old one back
        tmps = [(q, t) for q, t in tmps if t != new]
        olds = [(q, t) for q, t in olds if t != old or new is not None]
    for p in [t for _, t in tmps] + [t for _, t in olds] + legacy:
        _remove(p)


def _idle(p: Path) -> float:
    """Seconds since `p` or anything directly in it last changed."""
    times = [p.lstat().st_mtime] + [c.lstat().st_mtime for c in p.iterdir()] if p.is_dir() else [p.lstat().st_mtime]
    return time.time() - max(times)


def _sweep_legacy_builds(parent: Path) -> None:
    """Scratch folders older versions left beside an output (recognised by name and content)."""
    with contextlib.suppress(OSError):
        for e in os.scandir(parent):
            if _LEGACY_BUILD.fullmatch(e.name) and e.is_dir(follow_symlinks=False):
                p = Path(e.path)
                if set(os.listdir(p)) <= _LEGACY_BUILD_FILES and _idle(p) > LEGACY_IDLE_S:
                    _remove(p)


def _read_journal(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(data, dict) and data.get("format") == JOURNAL_FORMAT and isinstance(data.get("pid"), int)
          and isinstance(data.get("set"), str) and isinstance(data.get("files"), list)
          and all(isinstance(f, list) and len(f) == 2 and all(isinstance(s, str) for s in f) for f in data["files"]))
    return data if ok else None


def settle(target: str | os.PathLike) -> None:
    """If a run was killed while committing a set of files that includes `target`, finish that
    commit (every journal of the set was written) or undo it (not all were). Costs one stat otherwise."""
    jpath = journal_path(target)
    if not os.path.lexists(jpath):
        return
    data = _read_journal(jpath)
    if data is None:  # written by tmp + rename, so never half-written: not one of ours after all
        return
    if not _stale(data["pid"], jpath):
        return  # being committed right now, by a live process
    pairs = [(Path(t), Path(g)) for t, g in data["files"]]

    def journaled(g: Path) -> bool:
        j = _read_journal(journal_path(g))
        return j is not None and j["set"] == data["set"]

    committed = all(journaled(g) or not os.path.lexists(t) for t, g in pairs)
    for tmp, g in pairs:
        if os.path.lexists(tmp):
            if committed:
                os.replace(tmp, g)
            else:
                _remove(tmp)
    for _, g in pairs:
        if journaled(g):
            with contextlib.suppress(FileNotFoundError):
                journal_path(g).unlink()


# -------------------------------------------------------------------------------------------- files


class AtomicFiles:
    """Files written together and published together (see the module docstring)."""

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path, IO]] = []
        self._set = secrets.token_hex(8)
        self._committed = False

    def open(self, path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> IO:
        if mode not in ("w", "wb"):
            raise ValueError(f"mode {mode!r}: outputs are written whole ('w' or 'wb')")
        target = _abs(path)
        if any(t == target for t, _, _ in self._items):
            raise OutputError(f"{path}: given as two outputs of one run")
        if target.is_dir():
            raise OutputError(f"{path}: is a directory; give a file name")
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep(target)
        tmp = _sibling(target, "tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        fh = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None if "b" in mode else "\n")
        self._items.append((target, tmp, fh))
        return fh

    def write_json(self, path: str | os.PathLike, obj: Any) -> None:
        fh = self.open(path)
        json.dump(obj, fh, ensure_ascii=False, indent=2)
        fh.write("\n")

    def commit(self) -> None:
        if not self._items:
            return
        for _, _, fh in self._items:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        faults.point("file-written")
        if len(self._items) > 1:
            payload = {"format": JOURNAL_FORMAT, "pid": os.getpid(), "set": self._set,
                       "files": [[str(tmp), str(t)] for t, tmp, _ in self._items]}
            for t, _, _ in self._items:
                _LIVE.add(str(journal_path(t)))
            for i, (t, _, _) in enumerate(self._items):
                if i:
                    faults.point("set-journaling")
                _write_journal(t, payload)
            for d in {t.parent for t, _, _ in self._items}:
                _fsync_dir(d)
            self._committed = True
            faults.point("set-journaled")
        for i, (t, tmp, _) in enumerate(self._items):
            if i:
                faults.point("set-renaming")
            os.replace(tmp, t)
        if self._committed:
            faults.point("set-renamed")
            for t, _, _ in self._items:
                with contextlib.suppress(FileNotFoundError):
                    journal_path(t).unlink()
        self._forget()

    def abort(self) -> None:
        """After an exception: undo (nothing published yet), or finish a commit already decided."""
        for t, tmp, fh in self._items:
            with contextlib.suppress(OSError):
                fh.close()
            with contextlib.suppress(OSError):
                if self._committed and os.path.lexists(tmp):
                    os.replace(tmp, t)
                else:
                    _remove(tmp)
            with contextlib.suppress(OSError):
                j = _read_journal(journal_path(t))
                if j is not None and j["set"] == self._set:
                    journal_path(t).unlink()
        self._forget()

    def _forget(self) -> None:
        for t, tmp, _ in self._items:
            _LIVE.discard(str(tmp))
            _LIVE.discard(str(journal_path(t)))


def _write_journal(target: Path, payload: dict) -> None:
    tmp = _sibling(target, "tmp")  # named as a temp of `target`, so a sweep of it removes this too
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(json.dumps(payload, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, journal_path(target))
    except BaseException:
        _remove(tmp)
        raise
    finally:
        _LIVE.discard(str(tmp))


@contextlib.contextmanager
def atomic_files() -> Iterator[AtomicFiles]:
    """`with atomic_files() as out: a = out.open(p1); b = out.open(p2) ...`: all or nothing."""
    files = AtomicFiles()
    try:
        yield files
        files.commit()
    except BaseException:
        files.abort()
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    with atomic_files() as files:
        yield files.open(path, mode, encoding)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_files() as files:
        files.write_json(path, obj)


# ------------------------------------------------------------------------------------------ folders


def marker_json(command: str) -> dict:
    return {"format": MARKER_FORMAT, "command": command, "version": __version__}


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The ownership marker of a folder corpuskit wrote, or None."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("format") == MARKER_FORMAT and isinstance(data.get("command"), str):
        return data
    return None


def _looks_legacy(folder: Path) -> bool:
    try:
        data = json.loads((folder / LEGACY_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("command"), str) and isinstance(data.get("counts"), dict)


def check_dir_output(path: str | os.PathLike, label: str | None = None) -> None:
    """Raise unless `path` is free, an empty folder, or a folder corpuskit wrote (it holds MARKER)."""
    p = Path(path)
    name = f"{label} {path}" if label else str(path)
    if not os.path.lexists(p):
        return
    if not p.is_dir():
        raise OutputError(f"{name}: exists and is not a directory")
    if read_marker(p) is None and any(p.iterdir()):
        hint = (" (its report.json looks like an older corpuskit's, from before folders carried the "
                f"{MARKER} marker: delete it yourself to reuse the name)") if _looks_legacy(p) else ""
        raise OutputError(f"{name}: directory is not empty and was not written by corpuskit{hint}; "
                          "choose a new output directory")


def _holds_cwd(path: Path) -> bool:
    try:
        return Path(os.path.realpath(os.getcwd())).is_relative_to(path)
    except OSError:
        return False


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux); False where the system or file system cannot."""
    if faults.flag("no-rename-exchange"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(new: Path, path: Path) -> Path:
    """Put folder `new` at `path` (which exists); return where the old folder now is, to delete."""
    if _exchange(new, path):
        return new
    old = _sibling(path, "old")
    os.rename(path, old)
    faults.point("dir-swapping")
    os.rename(new, path)
    return old


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, command: str = "unknown", overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` in one step.

    An existing non-empty folder is only replaced if corpuskit wrote it (it holds MARKER), so
    `-o .` or `-o ~/data` can never wipe a user's folder. `command` is recorded in the marker.
    """
    path = Path(os.path.realpath(local_output(path)))
    if path.parent == path or _holds_cwd(path):
        raise OutputError(f"{path}: is the current directory or holds it; choose another output directory")
    sweep(path)
    _sweep_legacy_builds(path.parent)
    check_dir_output(path)
    if not overwrite and os.path.lexists(path):
        raise OutputError(f"{path}: already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    os.mkdir(tmp)
    old: Path | None = None
    try:
        yield tmp
        faults.point("dir-built")
        write_json(tmp / MARKER, marker_json(command))
        check_dir_output(path)  # again: something may have been put there while we worked
        if os.path.lexists(path):
            old = _swap_in(tmp, path)
            faults.point("dir-swapped")
            _remove(old)
        else:
            os.rename(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        _LIVE.discard(str(tmp))
        if old is not None:
            _LIVE.discard(str(old))
