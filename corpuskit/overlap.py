"""Refuse, before any work, outputs that would overwrite, delete or be read back as inputs.

Every command calls `check_paths` with all its inputs (files, folders, globs, tokenizer and model
folders, config files) and all its outputs. An output is refused, with one line naming both paths,
when it is an input, lies inside an input folder (a later run would read it back, or it would
write into a tokenizer or model), matches an input glob, or — for an output folder, which is
replaced whole — holds an input. Two outputs may not be or hold one another either. Paths are
compared after resolving symlinks, and files also by inode (hard links). Output folders are also
checked for ownership here (see `outputs.check_dir_output`), and every output's folder for being
writable, so `-o .`, a user's folder or a read-only destination fails at once instead of after
the whole run.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Iterable, Mapping

from corpuskit.engine.fs import is_remote, local_path
from corpuskit.ingest.paths import glob_paths
from corpuskit.outputs import OutputError, check_dir_output, local_output

PathArg = str | os.PathLike | None
_MAGIC = set("*?[")


def _real(p: PathArg) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(local_path(p)))))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _glob_reaches(pattern: str, path: Path, is_dir: bool) -> bool:
    """Whether `pattern` (glob syntax, `**` = any folders) matches `path`, or — for a folder — could
    match something inside it."""
    parts = Path(os.path.expanduser(pattern)).parts
    static = 0
    while static < len(parts) and not (_MAGIC & set(parts[static])):
        static += 1
    base = _real(os.path.join(*parts[:static]) if static else ".")
    if not path.is_relative_to(base):
        return False
    rel, rest = path.relative_to(base).parts, parts[static:]

    def match(i: int, j: int) -> bool:  # rel[i:] against rest[j:]
        if i == len(rel):
            return j == len(rest) or is_dir
        if j == len(rest):
            return False
        if rest[j] == "**":
            return match(i, j + 1) or match(i + 1, j)
        return fnmatch.fnmatchcase(rel[i], rest[j]) and match(i + 1, j + 1)

    return match(0, 0)


def _flatten(inputs: Mapping[str, PathArg | Iterable[PathArg]]) -> list[tuple[str, str]]:
    out = []
    for label, value in inputs.items():
        values = [value] if value is None or isinstance(value, (str, os.PathLike)) else list(value)
        values = [os.fspath(local_path(v)) for v in values if v is not None and not is_remote(v)]  # (URLs: not here)
        out.extend((label, v) for v in values if v != "")
    return out


def check_paths(inputs: Mapping[str, PathArg | Iterable[PathArg]], files: Mapping[str, PathArg] = {},
                dirs: Mapping[str, PathArg] = {}, replaced: bool = True) -> None:
    """Raise OutputError if an output (`files`: label -> file path, `dirs`: label -> folder path,
    None = not given) collides with another output or with an input (label -> path or paths;
    globs allowed). Labels are the option names the user typed (`-o`, `--rejects`, `input`).
    `replaced=False`: the folders are written into, not replaced whole (a trainers run folder, whose
    own marker is checked by trainers), so ownership and the current directory are not checked."""
    outs: list[tuple[str, str, Path, bool]] = []
    files = {label: local_output(p) for label, p in files.items()}  # file:// as paths; other URLs refused
    dirs = {label: local_output(p) for label, p in dirs.items()}
    for label, p in files.items():
        if p is None:
            continue
        real = _real(p)
        if real.is_dir():
            raise OutputError(f"{label} {p}: is a directory; give a file name")
        outs.append((label, os.fspath(p), real, False))
    cwd = _real(os.getcwd())
    for label, p in dirs.items():
        if p is None:
            continue
        real = _real(p)
        if replaced:
            if cwd.is_relative_to(real):
                raise OutputError(f"{label} {p}: is the current directory or holds it; choose another output directory")
            check_dir_output(p, label)
        outs.append((label, os.fspath(p), real, True))

    for label, p, real, _ in outs:
        _check_writable(label, p, real)
    for i, (la, pa, ra, da) in enumerate(outs):
        for lb, pb, rb, db in outs[i + 1:]:
            if ra == rb or _same_file(ra, rb):
                raise OutputError(f"{la} {pa} and {lb} {pb} are the same path; give each output its own")
            for (l1, p1, r1, d1), (l2, p2, r2) in (((la, pa, ra, da), (lb, pb, rb)), ((lb, pb, rb, db), (la, pa, ra))):
                if d1 and r2.is_relative_to(r1):
                    raise OutputError(f"{l2} {p2} lies inside output folder {l1} {p1}, which is replaced whole; "
                                      "put it elsewhere")

    for label, raw in _flatten(inputs):
        if _MAGIC & set(raw) and not os.path.lexists(raw):
            for lo, po, ro, do in outs:
                if _glob_reaches(raw, ro, do):
                    what = "could hold files matched by" if do else "matches"
                    raise OutputError(f"{lo} {po} {what} {label} {raw!r}: a later run would read its own output "
                                      "back; write it elsewhere")
            # our loop-safe walk: the standard recursive glob follows `up -> ..` links forever
            candidates = [m for m, _ in glob_paths(os.path.expanduser(raw), lambda message: None)]
        else:
            candidates = [raw]
        for inp in candidates:
            _check_one(label, inp, outs)


def _check_writable(label: str, shown: str, real: Path) -> None:
    """A read-only or not-writable destination fails now, not after the work."""
    parent = real.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):  # (a file there: mkdir says so)
        raise OutputError(f"{label} {shown}: cannot write into {parent} (read-only or no permission)")


def _check_one(label: str, inp: str, outs: list[tuple[str, str, Path, bool]]) -> None:
    ri = _real(inp)
    in_dir = ri.is_dir()
    for lo, po, ro, do in outs:
        if ro == ri or (not in_dir and _same_file(ro, ri)):
            raise OutputError(f"{lo} {po} is {label} {inp} itself; writing it would replace the input")
        if in_dir and ro.is_relative_to(ri):
            raise OutputError(f"{lo} {po} lies inside {label} folder {inp}; a later run would read it back "
                              "(or it would write into that folder): write it elsewhere")
        if do and ri.is_relative_to(ro):
            raise OutputError(f"{lo} {po} holds {label} {inp}; replacing the folder would delete that input")
    if in_dir and outs:
        _check_links(label, inp, outs)


def _check_links(label: str, folder: str, outs: list[tuple[str, str, Path, bool]]) -> None:
    """Symlinks inside an input folder are inputs too, wherever they point."""
    for root, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = os.path.join(root, name)
            if os.path.islink(p) and os.path.exists(p):
                ri, target_dir = _real(p), os.path.isdir(p)
                for lo, po, ro, do in outs:
                    if ro == ri or (target_dir and ro.is_relative_to(ri)) or (do and ri.is_relative_to(ro)):
                        raise OutputError(f"{lo} {po} overlaps {p}, a symlink inside {label} folder {folder}; "
                                          "write it elsewhere")
