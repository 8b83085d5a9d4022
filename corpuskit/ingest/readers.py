"""Streaming readers for .jsonl / .json / .csv / .tsv / .txt (and .gz of each).

Readers yield `RawItem`s: a parsed value with its origin, or a parse error with its origin.
A record-level problem (bad JSON line, invalid UTF-8 on a line, a malformed CSV row, a JSON array
cut off mid-record) is an item with `error` set, so callers can count it as rejected/invalid and go
on; a file-level problem (missing file, unsupported extension, a .json that is empty or not an
array, a bad CSV header) raises `InputError`. Nothing is ever skipped silently: the only things
that are not records are blank lines.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import stat
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from corpuskit.engine import fs
from corpuskit.ingest.errors import InputError
from corpuskit.ingest.paths import FileSet, Warnings, glob_paths, not_regular, stat_entry, walk_files
from corpuskit.outputs import LEGACY_MARKER, MARKER, read_marker, settle
from corpuskit.records import Origin

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt")
_CHUNK = 1 << 20  # bytes read per step by the JSON array reader (tests shrink it to hit boundaries)
_READ_ERRORS = (OSError, EOFError, zlib.error)  # a truncated or corrupt .gz, a vanished file

# Bounds on one record, so that one hostile record is one counted reject, never a crash:
# a record (a jsonl/txt line, a JSON array element, a CSV row) larger than `max_record_bytes` is
# read past in bounded steps and rejected as `record_too_large` (every command's
# --max-record-bytes); JSON nested deeper than MAX_DEPTH is a `parse_error` (Python's parser and
# everything that walks a value recurse, ~1,000 levels crash them).
DEFAULT_MAX_RECORD_BYTES = 16 << 20
MAX_DEPTH = 100
TOO_LARGE = "record_too_large"
_SKIP_STEP = 1 << 20  # bytes read per step while skipping past a too-large line


@dataclass(slots=True)
class RawItem:
    origin: Origin
    value: Any = None  # the parsed value; with `error`, the raw line text when it could be decoded
    error: str | None = None  # set when the record could not be parsed
    reason: str = "parse_error"  # the reject reason that goes with `error` (or TOO_LARGE)


def _too_large(origin: Origin, size: int, cap: int) -> RawItem:
    return RawItem(origin, error=f"record is {size} bytes, over the --max-record-bytes limit of {cap}; "
                                 "it was skipped", reason=TOO_LARGE)


def _deeper_than(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers in `value` nest more than `limit` levels (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


_TOO_DEEP = f"JSON nested deeper than {MAX_DEPTH} levels"


def _nesting_error(text: str, value: Any, start: int = 0, end: int | None = None) -> str | None:
    """The parse error for a parsed value nested deeper than MAX_DEPTH, or None; cheap for
    ordinary records, which hold few brackets."""
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_DEPTH:
        return None
    if not isinstance(value, (dict, list)) or not _deeper_than(value):
        return None
    return _TOO_DEEP


def base_suffix(path: str | os.PathLike) -> str:
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def _files_under(directory: str, warn: Warnings) -> list[tuple[str, os.stat_result]]:
    """Supported files below `directory`, sorted, skipping hidden files and folders (.git, .cache)."""
    return walk_files(directory, lambda name: base_suffix(name) in SUFFIXES, warn)


# Data files of corpuskit output folders that users feed onward (`corpuskit render buckets/`).
# Such a folder also holds report.json, manifest.json and rejected.jsonl, which are not records.
STAGE_DATA = {"clean": ["clean.jsonl"], "bucket": ["bucket-*.jsonl"], "merge-vocab": ["added_pieces.jsonl"],
              "convert": ["part-*.jsonl"]}  # convert --shards/--shard-size: parts in manifest order


def _stage_command(folder: Path) -> str | None:
    """The command that wrote `folder`: from its ownership marker, else (folders written before
    markers existed) from its report.json."""
    marker = read_marker(folder)
    if marker is not None:
        return marker["command"]
    try:
        command = json.loads((folder / LEGACY_MARKER).read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    return command if isinstance(command, str) else None


def stage_data_files(folder: str | os.PathLike) -> list[str] | None:
    """The data files of a corpuskit output folder, or None if `folder` is not one."""
    if fs.is_remote(folder):
        return _remote_stage_files(str(folder))
    folder = Path(folder)
    command = _stage_command(folder)
    if command is None:
        return None
    patterns = STAGE_DATA.get(command)
    if patterns is None:
        raise InputError(str(folder), f"is the output of `corpuskit {command}`, which holds no corpus records "
                                      f"to read (readable stage folders: {', '.join(sorted(STAGE_DATA))})")
    if command == "convert":
        return _manifest_parts(folder)
    files = sorted(str(p) for pattern in patterns for p in folder.glob(pattern))
    if not files:
        raise InputError(str(folder), f"`corpuskit {command}` output folder has no {' or '.join(patterns)}")
    return files


def _manifest_parts(folder: Path) -> list[str]:
    """The parts of a sharded output folder in manifest order (part numbers may outgrow their
    zero padding, so names do not sort); every listed part must be there."""
    try:
        text = (folder / "manifest.json").read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise InputError(str(folder), f"sharded output without a readable manifest.json ({e})") from None
    names = _part_names(str(folder), text)
    missing = next((n for n in names if not (folder / n).is_file()), None)
    if missing is not None:
        raise InputError(str(folder / missing), "listed in manifest.json but missing: the sharded output is incomplete")
    return [str(folder / n) for n in names]


def _part_names(folder: str, manifest_text: str) -> list[str]:
    try:
        names = [part["file"] for part in json.loads(manifest_text)["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(folder, f"sharded output without a readable manifest.json ({e!r})") from None
    bad = next((n for n in names if not isinstance(n, str) or os.path.basename(n) != n or not n.endswith(".jsonl")),
               None)
    if bad is not None or not names:
        raise InputError(folder, f"manifest.json lists {'no parts' if not names else f'a bad part {bad!r}'}")
    return names


def _remote_stage_files(url: str) -> list[str] | None:
    """stage_data_files for a folder at a URL: only its ownership marker makes it a stage folder,
    and a sharded folder without one is an unfinished write (see engine/fs.py)."""
    marker = fs.read_text(fs.join(url, MARKER))
    if marker is None:
        if fs.read_text(fs.join(url, "manifest.json")) is not None:
            raise InputError(url, f"sharded output without its {MARKER} marker: unfinished, or not corpuskit's")
        return None
    try:
        command = json.loads(marker)["command"]
    except (ValueError, KeyError, TypeError):
        return None
    patterns = STAGE_DATA.get(command)
    if patterns is None:
        raise InputError(url, f"is the output of `corpuskit {command}`, which holds no corpus records to read")
    if command == "convert":
        text = fs.read_text(fs.join(url, "manifest.json"))
        if text is None:
            raise InputError(url, "sharded output without a readable manifest.json")
        parts = [fs.join(url, n) for n in _part_names(url, text)]
        missing = next((p for p in parts if not _remote_isfile(p)), None)
        if missing is not None:
            raise InputError(missing, "listed in manifest.json but missing: the sharded output is incomplete")
        return parts
    filesys, p = fs.url_fs(url)
    files = sorted(fs.join(url, m.rsplit("/", 1)[-1]) for pattern in patterns for m in filesys.glob(fs.join(p, pattern)))
    if not files:
        raise InputError(url, f"`corpuskit {command}` output folder has no {' or '.join(patterns)}")
    return files


def _remote_isfile(url: str) -> bool:
    filesys, p = fs.url_fs(url)
    return filesys.isfile(p)


def _expand_dir(directory: str, warn: Warnings) -> list[tuple[str, os.stat_result]]:
    stage = stage_data_files(directory)
    if stage is None:
        return _files_under(directory, warn)
    return [(f, st) for f in stage if (st := stat_entry(f, warn)) is not None]


def _checked(path: str, st: os.stat_result) -> tuple[str, os.stat_result]:
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st)
    return path, st


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files, directories (recursively, supported suffixes only) and globs, each in sorted order.

    A corpuskit output folder (it holds the ownership marker, or an older one's report.json) contributes only its data files. Each real
    file comes once (see `paths`: symlink loops, broken links and repeats are reported on stderr);
    anything that is not a regular file is refused before it is opened."""
    warn = Warnings()
    files = FileSet(warn)
    for arg, item in enumerate(inputs):
        s = str(fs.local_path(item))
        if fs.is_remote(s):  # an fsspec URL: its files by name (no inodes, links or FIFOs there)
            for url in fs.expand(s, lambda name: base_suffix(name) in SUFFIXES, stage_data_files):
                files.add(url, None, arg)
            continue
        if any(c in s for c in "*?[") and not os.path.lexists(s):  # `data[1]/` that exists is a name
            found = []
            for match, st in glob_paths(s, warn):
                found.extend(_expand_dir(match, warn) if stat.S_ISDIR(st.st_mode) else [_checked(match, st)])
            if not found:
                raise InputError(s, "glob matched no files")
        else:
            try:
                st = os.stat(s)
            except OSError as e:
                if os.path.islink(s):
                    raise InputError(s, f"broken symbolic link (to {os.readlink(s)!r}: {e.strerror})") from None
                raise InputError(s, "no such file or directory") from None
            if stat.S_ISDIR(st.st_mode):
                found = _expand_dir(s, warn)
                if not found:
                    raise InputError(s, f"directory has no {'/'.join(SUFFIXES)} files (optionally .gz)")
            else:
                found = [_checked(s, st)]
        for path, st in found:
            files.add(path, st, arg)
    for f in files.paths:
        if not fs.is_remote(f):
            settle(f)  # finish (or undo) a set of outputs a killed run left half-renamed
    return files.paths


class _Range(io.RawIOBase):
    """A byte range [start, end) of an open file, read as if it were the whole file (input splits)."""

    def __init__(self, fh, start: int, end: int | None):
        self._fh = fh
        fh.seek(start)
        self._left = None if end is None else end - start

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._left is not None:
            if self._left <= 0:
                return 0
            b = memoryview(b)[:self._left]
        n = self._fh.readinto(b)
        if self._left is not None:
            self._left -= n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _open_binary(path: str, span: tuple[int, int | None] | None = None):
    """Open for reading only if `path` is a regular file: a FIFO would block, /dev/zero never end.
    With `span`, only that byte range of an uncompressed file is read (an input split).

    Opened non-blocking so that a FIFO without a writer is refused instead of waiting for one.
    A URL is opened through fsspec (engine/fs.py)."""
    if fs.is_remote(path):
        fh = io.BufferedReader(_Range(fs.open_input(path), *(span or (0, None))), 1 << 20)
        return _OwnedGzip(fh) if span is None and path.lower().endswith(".gz") else fh
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise not_regular(path, st)
    os.set_blocking(fd, True)
    if span is not None and span != (0, None):
        return io.BufferedReader(_Range(os.fdopen(fd, "rb", buffering=0), *span), 1 << 20)
    fh = os.fdopen(fd, "rb")
    return _OwnedGzip(fh) if path.lower().endswith(".gz") else fh


class _OwnedGzip(gzip.GzipFile):
    """A GzipFile that also closes the file it reads from."""

    def __init__(self, fh):
        super().__init__(fileobj=fh, mode="rb")
        self._owned = fh

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._owned.close()


def _bad_bytes_message(encoding: str, bad: bytes, where: str) -> str:
    return f"invalid {encoding} {where} ({bad!r}); pass --encoding if the file is not {encoding}"


def _bounded_lines(fh, cap: int, skeleton: re.Pattern | None = None) -> Iterator[tuple[bytes, int, bool]]:
    """(line, size, skipped) for each physical line; size is its bytes without the line ending.

    A line of at most `cap` bytes (its line ending not counted) comes whole. A longer one is read
    past in bounded steps, never held: it comes out as b"" with skipped True, or with
    `skeleton`, as the line with every run of bytes that the pattern matches collapsed to one b"x"
    (a CSV parser needs the quotes and delimiters of a skipped line to stay in step).
    """
    while True:
        line = fh.readline(cap + 2)
        if not line:
            return
        ending = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
        if len(line) - ending <= cap:
            yield line, len(line) - ending, False
            continue
        size, parts, kept = len(line) - ending, [], 0
        while True:
            if skeleton is not None and kept <= cap:
                part = skeleton.sub(b"x", line)
                parts.append(part)
                kept += len(part)
            if ending:
                break
            line = fh.readline(_SKIP_STEP)
            if not line:
                break
            ending = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
            size += len(line) - ending
        yield b"".join(parts), size, True


def _decode_lines(path: str, encoding: str, cap: int = DEFAULT_MAX_RECORD_BYTES, skeleton: re.Pattern | None = None,
                  span: tuple[int, int | None] | None = None) -> Iterator[tuple[int, str | None, str | None, int, bool]]:
    """(line_no, text, error, size, skipped) for each physical line; a BOM on line 1 is dropped.

    On undecodable bytes, `error` says where and `text` is the line decoded with surrogate
    escapes (so a CSV parser can still find where the row ends). A line over `cap` bytes has
    `skipped` set and `text` is its skeleton (see `_bounded_lines`); `size` is the line's bytes.
    On a read failure (truncated .gz), the last item has text None and the error, and the file
    ends there.
    """
    no = 0
    try:
        with _open_binary(path, span) as fh:
            for no, (raw, size, skipped) in enumerate(_bounded_lines(fh, cap, skeleton), 1):
                try:
                    text, err = raw.decode(encoding), None
                except UnicodeDecodeError as e:
                    text = raw.decode(encoding, "surrogateescape")
                    err = _bad_bytes_message(encoding, raw[e.start:e.start + 4], f"bytes at byte {e.start} of the line")
                if no == 1 and (span is None or span[0] == 0) and text.startswith("\ufeff"):
                    text = text[1:]
                yield no, text, err, size, skipped
    except _READ_ERRORS as e:
        yield no + 1, None, f"cannot read the file past this line: {e}", 0, False


def _lone_surrogate(value: Any) -> str | None:
    """An error message if a string in `value` holds an unpaired UTF-16 surrogate.

    JSON allows the escape `\\ud800` on its own, Python's json accepts it, but the result is not
    Unicode: no UTF-8 output can hold it. Callers run this only when the raw text has a `\\ud`
    escape (paired escapes, e.g. emoji from ensure_ascii dumps, are common and pass).
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        return (f"invalid JSON string: lone surrogate escape \\u{ord(e.object[e.start]):04x} "
                "is not a Unicode character")
    return None


def _has_surrogate_escape(text: str, start: int = 0, end: int | None = None) -> bool:
    end = len(text) if end is None else end
    return text.find("\\ud", start, end) != -1 or text.find("\\uD", start, end) != -1


def read_jsonl(path: str, encoding: str = "utf-8", max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               span: tuple[int, int | None] | None = None) -> Iterator[RawItem]:
    for no, text, err, size, skipped in _decode_lines(path, encoding, max_record_bytes, span=span):
        origin = Origin(path, no)
        if skipped:
            yield _too_large(origin, size, max_record_bytes)
            continue
        if err:
            yield RawItem(origin, error=err)
            continue
        if not text.strip():
            continue  # blank lines are not records
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            yield RawItem(origin, text.rstrip("\r\n"), error=f"invalid JSON at column {e.colno}: {e.msg}")
            continue
        except RecursionError:
            yield RawItem(origin, text.rstrip("\r\n"), error=_TOO_DEEP)
            continue
        bad = _nesting_error(text, value) or (_has_surrogate_escape(text) and _lone_surrogate(value))
        yield RawItem(origin, text.rstrip("\r\n"), error=bad) if bad else RawItem(origin, value)


def read_txt(path: str, encoding: str = "utf-8", max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
             span: tuple[int, int | None] | None = None) -> Iterator[RawItem]:
    """One document per non-blank line, as {"text": line}."""
    for no, text, err, size, skipped in _decode_lines(path, encoding, max_record_bytes, span=span):
        origin = Origin(path, no)
        if skipped:
            yield _too_large(origin, size, max_record_bytes)
        elif err:
            yield RawItem(origin, error=err)
        elif text.strip():
            yield RawItem(origin, {"text": text.rstrip("\r\n")})


def read_csv(path: str, encoding: str = "utf-8", delimiter: str | None = None,
             max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawItem]:
    """Rows as dicts keyed by the header; quoted fields may hold newlines, commas and quotes.

    A malformed row (unbalanced quote, wrong field count, undecodable bytes) is one error item
    at the line where the row starts; reading goes on with the next row. A row over
    `max_record_bytes` is a `record_too_large` item: once a row grows past the bound, the parser
    is fed only the row's quotes and delimiters (enough to find where it ends), never its text.
    """
    delim = delimiter or ("\t" if base_suffix(path) == ".tsv" else ",")
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 1 << 31)))  # long documents are normal
    bad_lines: dict[int, str] = {}
    read_failure: list[tuple[int, str]] = []
    structure = '"' + re.escape(delim) + "\r\n"
    skeleton_bytes = re.compile(b"[^" + structure.encode("ascii") + b"]+")
    skeleton_text = re.compile("[^" + structure + "]+")
    row_size = [0, False]  # bytes of the row being read, and whether it went over the bound

    def lines() -> Iterator[str]:
        for no, text, err, size, skipped in _decode_lines(path, encoding, max_record_bytes, skeleton_bytes):
            if text is None:
                read_failure.append((no, err))
                return
            if err:
                bad_lines[no] = err
            row_size[0] += size
            if not skipped and row_size[0] > max_record_bytes:
                text = skeleton_text.sub("x", text)
            row_size[1] |= row_size[0] > max_record_bytes
            yield text

    def row_done() -> int | None:
        """The size of the row just read if it was too large; starts the count for the next row."""
        size, over = row_size
        row_size[0], row_size[1] = 0, False
        return size if over else None

    def decode_error_in(first: int, last: int) -> tuple[int, str] | None:
        """The first undecodable line within a row's lines (and forget those lines)."""
        found = sorted(n for n in bad_lines if first <= n <= last)
        if not found:
            return None
        first_bad = (found[0], bad_lines[found[0]])
        for n in found:
            del bad_lines[n]
        return first_bad

    reader = csv.reader(lines(), delimiter=delim, strict=True)
    header: list[str] | None = None
    row_start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            end_line = reader.line_num
            decode_error_in(row_start, end_line)
            big = row_done()
            if header is None:
                raise InputError(path, f"malformed CSV header: {e}", row_start) from None
            yield (_too_large(Origin(path, row_start), big, max_record_bytes) if big else
                   RawItem(Origin(path, row_start),
                           error=f"malformed CSV row (starts at line {row_start}, read up to line {end_line}): {e}"))
            row_start = end_line + 1
            continue
        end_line = reader.line_num
        origin = Origin(path, row_start)
        first_line, row_start = row_start, end_line + 1
        big = row_done()
        if not row:
            continue  # a blank line is not a record
        bad = decode_error_in(first_line, end_line)
        if header is None:
            if big:
                raise InputError(path, f"CSV header is {big} bytes, over the --max-record-bytes limit of "
                                       f"{max_record_bytes}", first_line)
            if bad:
                raise InputError(path, f"CSV header: {bad[1]}", bad[0])
            header = [h.strip() for h in row]
            if len(set(header)) != len(header) or any(not h for h in header):
                raise InputError(path, f"CSV header has empty or repeated column names: {header}", first_line)
            continue
        if big:
            yield _too_large(origin, big, max_record_bytes)
            continue
        if bad:
            yield RawItem(Origin(path, bad[0]), error=bad[1])
            continue
        if len(row) == 1 and len(header) > 1 and not row[0].strip():
            continue  # a line of spaces in a multi-column file
        if len(row) != len(header):
            yield RawItem(origin, error=f"row has {len(row)} fields, header has {len(header)}")
            continue
        yield RawItem(origin, dict(zip(header, row)))
    for no, err in read_failure:
        yield RawItem(Origin(path, no), error=err)


# --- JSON array streaming ------------------------------------------------------------------------

# Tokens that matter for finding where one array element ends when the fast path cannot tell:
# whole strings (so brackets inside strings are ignored), an unterminated string (needs more
# input), and brackets.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[{}\[\]]', re.S)
_SCALAR = re.compile(r'[^,\]\s]*')
_WS = re.compile(r"[ \t\r\n]*")
_ESCAPED = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by the surrogateescape handler
_DECODER = json.JSONDecoder()
_OPENER = {"}": "{", "]": "["}


class _TextStream:
    """Incrementally decoded text with a sliding buffer and a running line count."""

    def __init__(self, fh, encoding: str):
        self.fh, self.encoding = fh, encoding
        self.decoder = codecs.getincrementaldecoder(encoding)("strict")  # until a bad byte turns up
        self.buf = ""
        self.pos = 0           # cursor into buf
        self.mark_pos = 0      # a position in buf whose line number is known ...
        self.mark_line = 1     # ... and that line number (moves forward, so counting stays linear)
        self.eof = False
        self.bom_checked = False
        self.dirty = False     # some bytes could not be decoded (they are surrogate escapes in buf)
        self.read_error: Exception | None = None  # why reading stopped early (a truncated .gz)

    def more(self) -> bool:
        """Append the next chunk of text; False once the input is exhausted.

        Reads with read1 so that a truncated .gz gives every byte before the cut (a plain
        read(n) drops what it decompressed in the call that hits the end); the read error then
        ends the input, and the array reader reports the cut as for a truncated plain file."""
        if self.eof:
            return False
        parts, got = [], 0
        try:
            while got < _CHUNK:
                piece = self.fh.read1(_CHUNK - got)
                if not piece:
                    self.eof = True
                    break
                parts.append(piece)
                got += len(piece)
        except _READ_ERRORS as e:
            self.eof, self.read_error = True, e
        data = b"".join(parts)
        if self.dirty:
            text = self.decoder.decode(data, final=self.eof)
        else:  # strict until the first undecodable byte: then keep bytes as surrogate escapes
            state = self.decoder.getstate()
            try:
                text = self.decoder.decode(data, final=self.eof)
            except UnicodeDecodeError:
                self.decoder = codecs.getincrementaldecoder(self.encoding)("surrogateescape")
                self.decoder.setstate(state)
                text = self.decoder.decode(data, final=self.eof)
                self.dirty = True
        if not self.bom_checked and text:
            self.bom_checked = True
            if text.startswith("\ufeff"):
                text = text[1:]
        self.buf += text
        return bool(text) or not self.eof

    def line_at(self, pos: int) -> int:
        if pos < self.mark_pos:
            return self.mark_line - self.buf.count("\n", pos, self.mark_pos)
        self.mark_line += self.buf.count("\n", self.mark_pos, pos)
        self.mark_pos = pos
        return self.mark_line

    def discard(self, n: int) -> None:
        """Forget buf[:n] now (skipping a too-large record), keeping the line count."""
        self.line_at(n)
        self.buf = self.buf[n:]
        self.mark_pos -= n
        self.pos = max(0, self.pos - n)

    def cut_note(self) -> str:
        return f"; the file cannot be read past this point: {self.read_error}" if self.read_error else ""

    def compact(self) -> None:
        """Forget consumed text once enough has piled up (amortised: never per record)."""
        if self.pos > _CHUNK:
            self.line_at(self.pos)
            self.buf = self.buf[self.pos:]
            self.mark_pos -= self.pos
            self.pos = 0

    def skip_ws(self) -> bool:
        """Advance past whitespace; False at end of input."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return True
            if not self.more():
                return False

    def escaped_byte_in(self, start: int, end: int) -> tuple[int, bytes] | None:
        """(line, byte) of the first undecodable byte in buf[start:end], if any."""
        if not self.dirty:
            return None
        m = _ESCAPED.search(self.buf, start, end)
        if m is None:
            return None
        return self.line_at(m.start()), bytes([ord(m.group()) - 0xDC00])


def read_json_array(path: str, encoding: str = "utf-8",
                    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawItem]:
    """Stream the elements of a top-level JSON array without loading the file whole.

    A file cut off mid-record (also a truncated .gz) yields every complete element, then one
    error item at the line where the incomplete element starts, saying where the file ends. A
    record with undecodable bytes is one error item naming the line of the first bad byte; the
    records after it are read. An element over `max_record_bytes` is skipped in bounded steps.
    """
    with _open_binary(path) as fh:
        ts = _TextStream(fh, encoding)
        try:
            yield from _iter_array(ts, path, encoding, max_record_bytes)
        except _READ_ERRORS as e:
            yield RawItem(Origin(path, ts.line_at(min(ts.pos, len(ts.buf)))),
                          error=f"cannot read the file past this line: {e}")


def _describe(ts: _TextStream, encoding: str) -> str:
    ch = ts.buf[ts.pos]
    if "\udc80" <= ch <= "\udcff":
        return _bad_bytes_message(encoding, bytes([ord(ch) - 0xDC00]), "byte")
    return f"found {ch!r}"


def _iter_array(ts: _TextStream, path: str, encoding: str, cap: int) -> Iterator[RawItem]:
    if not ts.skip_ws():
        raise InputError(path, "empty file: expected a JSON array of records")
    if ts.buf[ts.pos] != "[":
        raise InputError(path, "top-level JSON value is not an array; use a JSON array of records, "
                               f"or .jsonl with one record per line ({_describe(ts, encoding)})",
                         ts.line_at(ts.pos))
    ts.pos += 1
    expect_value, first, last_end_line = True, True, 1
    while True:
        if not ts.skip_ws():
            line = ts.line_at(len(ts.buf))
            yield RawItem(Origin(path, line),
                          error=f"file ends at line {line} before the JSON array is closed with ']' "
                                f"(the last complete record ends at line {last_end_line}){ts.cut_note()}")
            return
        ch = ts.buf[ts.pos]
        if ch == "]":
            if expect_value and not first:
                yield RawItem(Origin(path, ts.line_at(ts.pos)), error="trailing comma before ']' (no record after it)")
            ts.pos += 1
            if ts.skip_ws():
                yield RawItem(Origin(path, ts.line_at(ts.pos)),
                              error="unexpected data after the closing ']' of the JSON array; "
                                    "a .json file must hold exactly one array")
            return
        if not expect_value:
            if ch != ",":
                yield RawItem(Origin(path, ts.line_at(ts.pos)),
                              error=f"expected ',' or ']' after the record ending at line {last_end_line}, "
                                    f"{_describe(ts, encoding)}; the rest of the file was not read")
                return
            ts.pos += 1
            expect_value = True
            continue
        if ch == ",":
            yield RawItem(Origin(path, ts.line_at(ts.pos)), error="missing record between two commas")
            ts.pos += 1
            continue
        ts.compact()
        start_line = ts.line_at(ts.pos)
        item, end = _next_element(ts, path, start_line, encoding, cap)
        yield item
        if end is None:
            return
        ts.pos = end
        last_end_line = ts.line_at(end)
        expect_value = first = False


def _next_element(ts: _TextStream, path: str, start_line: int, encoding: str,
                  cap: int) -> tuple[RawItem, int | None]:
    """The array element at ts.pos and the offset just past it (None when the file is cut off)."""
    start = ts.pos
    value, deep = _NOTHING, False
    try:  # fast path: the whole element is in the buffer and is valid JSON
        value, end = _DECODER.raw_decode(ts.buf, start)
        if end == len(ts.buf) and not ts.eof:
            value = _NOTHING  # a scalar may continue in the next chunk
    except ValueError:
        pass
    except RecursionError:
        deep = True
    if value is _NOTHING:
        end, skipped = _element_end(ts, cap)
        if end is None:
            return RawItem(Origin(path, start_line), error=(
                f"JSON array cut off mid-record: the record starting at line {start_line} is incomplete "
                f"at end of file (line {ts.line_at(len(ts.buf))}){ts.cut_note()}")), None
        if skipped:
            return _too_large(Origin(path, start_line), skipped, cap), end
    if end - start > cap // 4:
        size = len(ts.buf[start:end].encode(encoding, "surrogateescape"))
        if size > cap:
            return _too_large(Origin(path, start_line), size, cap), end
    if value is _NOTHING and not deep:
        try:
            value = json.loads(ts.buf[start:end])
        except RecursionError:
            deep = True
        except json.JSONDecodeError as e:
            bad = ts.escaped_byte_in(start, end)
            if bad:
                return _bad_bytes_item(path, bad, start_line, encoding), end
            return RawItem(Origin(path, start_line + e.lineno - 1),
                           error=f"invalid JSON at column {e.colno}: {e.msg}"), end
    if deep:
        return RawItem(Origin(path, start_line), error=_TOO_DEEP), end
    bad = ts.escaped_byte_in(start, end)
    if bad:
        return _bad_bytes_item(path, bad, start_line, encoding), end
    problem = (_nesting_error(ts.buf, value, start, end)
               or (_has_surrogate_escape(ts.buf, start, end) and _lone_surrogate(value)))
    if problem:
        return RawItem(Origin(path, start_line), error=problem), end
    return RawItem(Origin(path, start_line), value), end


_NOTHING = object()


def _bad_bytes_item(path: str, bad: tuple[int, bytes], start_line: int, encoding: str) -> RawItem:
    line, byte = bad
    return RawItem(Origin(path, line),
                   error=_bad_bytes_message(encoding, byte, f"byte in the record starting at line {start_line}"))


def _element_end(ts: _TextStream, cap: int) -> tuple[int | None, int]:
    """(end offset, 0) of the JSON value starting at ts.pos, reading more input as needed; end is
    None if the file is cut off. A value that grows past `cap` characters is read past without
    being held (`_skip_rest`), and (end, its size in bytes) comes back.

    Only brackets and string boundaries are tracked, so an element with a syntax error inside
    still ends at its closing (or first mismatched) bracket and the elements after it can be read.
    Scanning resumes where it stopped after each read, so a long string is scanned once.
    """
    start = ts.pos
    opener = ts.buf[start]
    if opener not in '"{[':
        while True:
            end = _SCALAR.match(ts.buf, start).end()
            if end < len(ts.buf):
                return end, 0
            if end - start > cap:
                return _skip_rest(ts, start, start, 0, False, scalar=True)
            if not ts.more():
                return end, 0
    open_brackets: list[str] = []
    scan, in_string = start, False
    while True:
        if in_string:
            end = _string_end(ts.buf, scan)
            if end < 0:
                scan = len(ts.buf)
            elif not open_brackets:
                return end, 0  # a string element
            else:
                scan, in_string = end, False
        if not in_string:
            for m in _TOKEN.finditer(ts.buf, scan):
                tok = m.group()
                if tok == '"':  # a string not closed inside the buffer: read on from here
                    scan, in_string = m.end(), True
                    break
                if tok[0] == '"':
                    if not open_brackets:
                        return m.end(), 0  # a string element
                    continue
                if tok in "{[":
                    open_brackets.append(tok)
                    continue
                if open_brackets.pop() != _OPENER[tok] or not open_brackets:
                    return m.end(), 0  # closed (or mismatched: json.loads will say where)
            else:
                scan = len(ts.buf)
        if len(ts.buf) - start > cap:
            return _skip_rest(ts, start, scan, len(open_brackets), in_string)
        if not ts.more():
            return None, 0


def _string_end(buf: str, pos: int) -> int:
    """Offset just past the closing quote of the string that `pos` is inside (not inside an
    escape), or -1 when the buffer ends first. Finds quotes with str.find (fast on long strings)
    and counts the backslashes before each."""
    while True:
        q = buf.find('"', pos)
        if q < 0:
            return -1
        k = q - 1
        while k >= 0 and buf[k] == "\\":
            k -= 1
        if (q - 1 - k) % 2 == 0:
            return q + 1
        pos = q + 1


def _skip_rest(ts: _TextStream, start: int, pos: int, depth: int, in_string: bool,
               scalar: bool = False) -> tuple[int | None, int]:
    """Read past the rest of a too-large element starting at `start`, holding one chunk at a
    time: (end offset in the buffer, or None at end of file; bytes skipped).

    `pos`, `depth` and `in_string` are where the scan stands. Only nesting depth is tracked: the
    record is rejected whatever is inside, and this only has to find where it ends."""
    size = 0

    def drop(upto: int) -> None:
        nonlocal size
        size += _nbytes(ts, upto)
        ts.discard(upto)

    ts.discard(start)
    pos -= start
    if in_string:  # rescan a trailing run of backslashes: its parity decides what the next one escapes
        pos = min(pos, len(ts.buf.rstrip("\\")))
    while True:
        buf = ts.buf
        while pos < len(buf):
            if scalar:
                pos = _SCALAR.match(buf, pos).end()
                if pos < len(buf):
                    drop(pos)
                    return 0, size
                break
            if in_string:
                end = _string_end(buf, pos)
                if end < 0:  # keep an odd trailing backslash: it escapes the next chunk's first character
                    pos = len(buf) - ((len(buf) - len(buf.rstrip("\\"))) % 2)
                    break
                pos, in_string = end, False
                if depth == 0:
                    drop(pos)
                    return 0, size
                continue
            q = buf.find('"', pos)
            stop = q if q >= 0 else len(buf)
            closers = buf.count("}", pos, stop) + buf.count("]", pos, stop)
            if closers < depth:  # depth cannot reach 0 in this stretch: count it at C speed
                depth += buf.count("{", pos, stop) + buf.count("[", pos, stop) - closers
            else:
                for m in _BRACKET.finditer(buf, pos, stop):
                    depth += 1 if m.group() in "{[" else -1
                    if depth <= 0:
                        drop(m.end())
                        return 0, size
            pos = stop
            if q >= 0:
                pos, in_string = q + 1, True
        drop(pos)
        pos = 0
        if not ts.more():
            return None, size


_BRACKET = re.compile(r"[{}\[\]]")


def _nbytes(ts: _TextStream, upto: int) -> int:
    return len(ts.buf[:upto].encode(ts.encoding, "surrogateescape"))


def read_file(path: str, encoding: str = "utf-8", max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
              span: tuple[int, int | None] | None = None) -> Iterator[RawItem]:
    """Items of `path`, or of its byte range `span` (.jsonl and .txt only; line numbers then count
    from the range's first line)."""
    suffix = base_suffix(path)
    if suffix == ".jsonl":
        return read_jsonl(path, encoding, max_record_bytes, span)
    if suffix == ".json":
        return read_json_array(path, encoding, max_record_bytes)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, encoding, max_record_bytes=max_record_bytes)
    if suffix == ".txt":
        return read_txt(path, encoding, max_record_bytes, span)
    raise InputError(path, f"unsupported file type {suffix!r}; expected one of {', '.join(SUFFIXES)} (optionally .gz)")


def read_raw(inputs: Iterable[str], encoding: str = "utf-8",
             max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[RawItem]:
    for path in expand_inputs(inputs):
        yield from read_file(path, encoding, max_record_bytes)
