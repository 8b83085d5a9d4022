"""Paths that may be fsspec URLs (s3://, gs://, hdfs://, memory://, file://...).

Local paths and file:// URLs stay plain paths (the fast path: os calls, mmap-free buffered reads).
Any other URL is read through fsspec, so a corpus in an object store is read directly (splits
become ranged reads); outputs to a URL are built locally and uploaded when complete, so a
half-written output is never visible there either. The protocols' own packages (s3fs, gcsfs, ...)
are the user's to install.
"""

from __future__ import annotations

import fnmatch
import os
from typing import IO

_LOCAL = ("file://", "local://")


def is_url(path: str) -> bool:
    return "://" in str(path)


def local_path(path: str) -> str:
    """file:///a/b -> /a/b; any other string unchanged."""
    s = str(path)
    for prefix in _LOCAL:
        if s.startswith(prefix):
            return s[len(prefix):]
    return s


def is_remote(path: str) -> bool:
    return is_url(path) and not str(path).startswith(_LOCAL)


def filesystem(url: str):
    import fsspec

    try:
        fs, _, _ = fsspec.get_fs_token_paths(url)
    except (ImportError, ValueError) as e:
        raise OSError(f"{url}: cannot open this URL ({e})") from None
    return fs


def open_binary(url: str) -> IO[bytes]:
    """A remote file opened for reading (seekable; gzip is left to the caller)."""
    fs = filesystem(url)
    return fs.open(url, "rb")


def remote_files(url: str, suffixes: tuple[str, ...]) -> list[str] | None:
    """Files named by a remote URL: the file itself, a folder's supported files (recursive, sorted), or a
    glob's matches; None if nothing exists there."""
    fs = filesystem(url)
    protocol = url.split("://", 1)[0]

    def full(p: str) -> str:
        return p if is_url(p) else f"{protocol}://{p.lstrip('/') if protocol == 'memory' else p}"

    if any(c in url for c in "*?["):
        return [full(p) for p in sorted(fs.glob(url)) if fs.isfile(p)]
    if fs.isfile(url):
        return [url]
    if fs.isdir(url):
        names = sorted(p for p in fs.find(url) if _supported(p, suffixes)
                       and not any(part.startswith(".") for part in p.split("/")))
        return [full(p) for p in names]
    return None


def _supported(name: str, suffixes: tuple[str, ...]) -> bool:
    low = name.lower().removesuffix(".gz")
    return any(fnmatch.fnmatch(low, "*" + s) for s in suffixes)


def remote_size(url: str) -> int:
    return int(filesystem(url).size(url))


def upload(local: str | os.PathLike, url: str) -> None:
    """Copy a finished local file or folder to `url` (a folder's files first, its report.json last)."""
    fs = filesystem(url)
    local = str(local)
    if os.path.isdir(local):
        names = sorted(os.listdir(local), key=lambda n: (n == "report.json", n))
        fs.makedirs(url, exist_ok=True)
        for name in names:
            fs.put_file(os.path.join(local, name), url.rstrip("/") + "/" + name)
    else:
        fs.put_file(local, url)
