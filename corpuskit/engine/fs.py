"""fsspec URLs (s3://, gs://, hdfs://, memory://, file:// ...) as inputs, and as convert's outputs.

A local path or a `file://` URL is a local path (`local_path`), with every local guarantee (atomic
renames, ownership markers, leftovers swept, FIFOs refused). Any other URL goes through fsspec,
imported only then: a slim install (the `validate` pre-commit hook) never needs it, and the
backends (s3fs, gcsfs ...) are the user's to install.

Object stores cannot rename atomically, so remote outputs are published as far as they allow:
- a file is written to a hidden temp name beside it and moved into place once complete, so a
  reader never sees a partial file (a set of files is published file by file, not as one);
- a folder must be new (absent or empty); its files are written in place and its ownership marker
  last, and readers refuse a folder whose marker is missing (an unfinished write).

This module imports nothing of corpuskit at load time (outputs and the readers import it).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
from typing import IO, Any, Callable, Iterator

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_LOCAL = ("file", "local")


def protocol(path: Any) -> str | None:
    m = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    return m.group()[:-3].lower() if m else None


def is_remote(path: Any) -> bool:
    """A URL that fsspec reads (not a local path, not file://)."""
    proto = protocol(path)
    return proto is not None and proto not in _LOCAL


def local_path(path: Any) -> Any:
    """`file:///data/x.jsonl` -> `/data/x.jsonl`; anything else unchanged."""
    proto = protocol(path)
    if proto not in _LOCAL:
        return path
    rest = os.fspath(path)[len(proto) + 3:]
    return rest[len("localhost"):] if rest.startswith("localhost/") else rest


def url_fs(url: str):
    """(fsspec file system, path inside it)."""
    try:
        import fsspec
    except ImportError:
        raise _input_error(url, "reading URLs needs fsspec: pip install fsspec") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:  # unknown protocol, or its backend (s3fs ...) not installed
        raise _input_error(url, f"cannot open this URL: {e}") from None


def _input_error(path: str, message: str):
    from corpuskit.ingest.errors import InputError

    return InputError(path, message)


def _output_error(message: str):
    from corpuskit.outputs import OutputError

    return OutputError(message)


def join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


# ---------------------------------------------------------------------------------------- inputs


def size(url: str) -> int:
    fs, p = url_fs(url)
    return fs.size(p)


def open_input(url: str) -> IO[bytes]:
    """The file at `url` opened for binary reading (seekable)."""
    fs, p = url_fs(url)
    try:
        if not fs.isfile(p):
            raise _input_error(url, "is a folder, not a file" if fs.isdir(p) else "no such file")
        return fs.open(p, "rb")
    except OSError as e:
        raise _input_error(url, f"cannot open: {e}") from None


def read_text(url: str) -> str | None:
    """A small file's text, or None if there is none."""
    fs, p = url_fs(url)
    try:
        return fs.cat_file(p).decode("utf-8") if fs.isfile(p) else None
    except (OSError, UnicodeDecodeError):
        return None


def expand(url: str, want: Callable[[str], bool], stage_files: Callable[[str], list[str] | None]) -> list[str]:
    """The files `url` names: a file, a folder (files below it whose name `want` accepts, hidden
    ones skipped, sorted; a corpuskit output folder gives `stage_files(url)`), or a glob."""
    fs, p = url_fs(url)
    if any(c in p for c in "*?[") and not fs.exists(p):
        out: list[str] = []
        for m in sorted(fs.glob(p)):
            m_url = fs.unstrip_protocol(m)
            out.extend(_expand_dir(fs, m, m_url, want, stage_files) if fs.isdir(m) else [m_url])
        if not out:
            raise _input_error(url, "glob matched no files")
        return out
    if fs.isdir(p):
        found = _expand_dir(fs, p, url, want, stage_files)
        if not found:
            raise _input_error(url, "directory has no supported data files")
        return found
    if fs.isfile(p):
        return [url]
    raise _input_error(url, "no such file or directory")


def _expand_dir(fs, p: str, url: str, want, stage_files) -> list[str]:
    stage = stage_files(url)
    if stage is not None:
        return stage
    base = p.rstrip("/") + "/"
    rel = sorted(f[len(base):] for f in fs.find(p) if f.startswith(base))
    return [join(url, r) for r in rel if want(r.rsplit("/", 1)[-1]) and not any(s.startswith(".") for s in r.split("/"))]


# --------------------------------------------------------------------------------------- outputs


def _tmp_name(path: str) -> str:
    head, _, name = path.rstrip("/").rpartition("/")
    return f"{head}/.{name}.ck{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _open(fs, path: str, mode: str) -> IO:
    fh = fs.open(path, "wb")
    return fh if "b" in mode else io.TextIOWrapper(fh, encoding="utf-8", newline="\n")


class RemoteFiles:
    """A set of remote output files, the interface of `outputs.AtomicFiles` (open, write_json):
    each is written to a hidden temp name and moved into place when the whole set is complete."""

    def __init__(self) -> None:
        self._items: list[tuple[Any, str, str, IO]] = []

    def open(self, url: str, mode: str = "w") -> IO:
        fs, p = url_fs(url)
        if any(q == p for _, q, _, _ in self._items):
            raise _output_error(f"{url}: given as two outputs of one run")
        if fs.isdir(p):
            raise _output_error(f"{url}: is a directory; give a file name")
        tmp = _tmp_name(p)
        fh = _open(fs, tmp, mode)
        self._items.append((fs, p, tmp, fh))
        return fh

    def write_json(self, url: str, obj: Any) -> None:
        self.open(url).write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")

    def commit(self) -> None:
        for _, _, _, fh in self._items:
            fh.close()
        for fs, p, tmp, _ in self._items:
            fs.mv(tmp, p)
        self._items = []

    def abort(self) -> None:
        for fs, _, tmp, fh in self._items:
            with contextlib.suppress(Exception):
                fh.close()
            with contextlib.suppress(Exception):
                fs.rm(tmp)
        self._items = []


@contextlib.contextmanager
def remote_files() -> Iterator[RemoteFiles]:
    files = RemoteFiles()
    try:
        yield files
        files.commit()
    except BaseException:
        files.abort()
        raise


class Folder:
    """Where an output folder's files are written: `open(name, mode)`."""

    def __init__(self, opener: Callable[[str, str], IO]):
        self.open = opener


@contextlib.contextmanager
def remote_dir(url: str, marker: dict, marker_name: str) -> Iterator[Folder]:
    """A new remote folder: files written in place, `marker` written last (see the module docstring)."""
    fs, p = url_fs(url)
    if fs.exists(p) and (not fs.isdir(p) or fs.ls(p, detail=False)):
        raise _output_error(f"{url}: already exists; an output folder at a URL must be new (object stores cannot "
                            "replace a folder in one step): remove it or choose another name")
    fs.makedirs(p, exist_ok=True)
    try:
        yield Folder(lambda name, mode="wb": _open(fs, join(p, name), mode))
        with _open(fs, join(p, marker_name), "w") as fh:
            fh.write(json.dumps(marker, ensure_ascii=False, indent=2) + "\n")
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(p, recursive=True)
        raise


def check_outputs(inputs: list[str], outputs: dict[str, str | None], folder: bool = False) -> None:
    """Refuse a URL output that is an input, lies in an input folder or (a folder) holds an input."""
    outs = {label: url.rstrip("/") for label, url in outputs.items() if url is not None}
    for label, out in outs.items():
        for inp in (str(i).rstrip("/") for i in inputs):
            if out == inp or out.startswith(inp + "/") or (folder and inp.startswith(out + "/")):
                raise _output_error(f"{label} {out} overlaps input {inp}; write it elsewhere")
