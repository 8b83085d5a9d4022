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
import glob
import gzip
import io
import json
import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from corpuskit.records import Origin

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt")
_CHUNK = 1 << 20  # bytes read per step by the JSON array reader (tests shrink it to hit boundaries)
_READ_ERRORS = (OSError, EOFError, zlib.error)  # a truncated or corrupt .gz, a vanished file


class InputError(Exception):
    """A problem with an input file as a whole: message names the file (and line when known)."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(slots=True)
class RawItem:
    origin: Origin
    value: Any = None  # the parsed value; with `error`, the raw line text when it could be decoded
    error: str | None = None  # set when the record could not be parsed


def base_suffix(path: str | os.PathLike) -> str:
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def _files_under(directory: str) -> list[str]:
    """Supported files below `directory`, sorted, skipping hidden files and folders (.git, .cache)."""
    root = Path(directory)
    return sorted(
        str(p) for p in root.rglob("*")
        if p.is_file() and base_suffix(p) in SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


# Data files of corpuskit output folders that users feed onward (`corpuskit render buckets/`).
# Such a folder also holds report.json, manifest.json and rejected.jsonl, which are not records.
STAGE_DATA = {"clean": ["clean.jsonl"], "bucket": ["bucket-*.jsonl"], "merge-vocab": ["added_pieces.jsonl"],
              "convert": ["part-*.jsonl"]}
_STAGE_MARKER = "report.json"


def stage_data_files(folder: str | os.PathLike) -> list[str] | None:
    """The data files of a corpuskit output folder, or None if `folder` is not one."""
    folder = Path(folder)
    marker = folder / _STAGE_MARKER
    if not marker.is_file():
        return None
    try:
        command = json.loads(marker.read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    if command is None:
        return None
    shards = _sharded_parts(folder)
    if shards is not None:
        return shards
    patterns = STAGE_DATA.get(command)
    if patterns is None:
        raise InputError(str(folder), f"is the output of `corpuskit {command}`, which holds no corpus records "
                                      f"to read (readable stage folders: {', '.join(sorted(STAGE_DATA))})")
    files = sorted(str(p) for pattern in patterns for p in folder.glob(pattern))
    if not files:
        raise InputError(str(folder), f"`corpuskit {command}` output folder has no {' or '.join(patterns)}")
    return files


def _sharded_parts(folder: Path) -> list[str] | None:
    """The parts of a sharded output folder, in manifest order; every listed part must be there."""
    manifest = folder / "manifest.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != "corpuskit-shards/1":
        return None
    parts = [folder / p["file"] for p in data.get("shards", [])]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise InputError(str(folder), f"sharded output is incomplete: {missing[0]} listed in manifest.json is missing")
    return [str(p) for p in parts]


def _expand_dir(directory: str) -> list[str]:
    stage = stage_data_files(directory)
    return stage if stage is not None else _files_under(directory)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files, directories (recursively, supported suffixes only) and globs, each in sorted order.

    A corpuskit output folder (it holds report.json) contributes only its data files."""
    out: list[str] = []
    for item in inputs:
        s = str(item)
        if os.path.isdir(s):
            found = _expand_dir(s)
            if not found:
                raise InputError(s, f"directory has no {'/'.join(SUFFIXES)} files (optionally .gz)")
            out.extend(found)
        elif any(c in s for c in "*?["):
            found = []
            for match in sorted(glob.glob(s, recursive=True)):
                found.extend(_expand_dir(match) if os.path.isdir(match) else [match])
            if not found:
                raise InputError(s, "glob matched no files")
            out.extend(found)
        else:
            if not os.path.exists(s):
                raise InputError(s, "no such file or directory")
            out.append(s)
    return out


class _Range(io.RawIOBase):
    """A byte range [start, end) of a file, read as if it were the whole file (input splits)."""

    def __init__(self, path: str, start: int, end: int | None):
        self._fh = open(path, "rb", buffering=0)
        self._fh.seek(start)
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
    if span is not None and span != (0, None):
        return io.BufferedReader(_Range(path, *span), 1 << 20)
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _bad_bytes_message(encoding: str, bad: bytes, where: str) -> str:
    return f"invalid {encoding} {where} ({bad!r}); pass --encoding if the file is not {encoding}"


def _decode_lines(path: str, encoding: str,
                  span: tuple[int, int | None] | None = None) -> Iterator[tuple[int, str | None, str | None]]:
    """(line_no, text, error) for each physical line; a BOM on line 1 is dropped.

    On undecodable bytes, `error` says where and `text` is the line decoded with surrogate
    escapes (so a CSV parser can still find where the row ends). On a read failure (truncated
    .gz), the last item has text None and the error, and the file ends there.
    """
    no = 0
    file_start = span is None or span[0] == 0
    try:
        with _open_binary(path, span) as fh:
            for no, raw in enumerate(fh, 1):
                try:
                    text, err = raw.decode(encoding), None
                except UnicodeDecodeError as e:
                    text = raw.decode(encoding, "surrogateescape")
                    err = _bad_bytes_message(encoding, raw[e.start:e.start + 4], f"bytes at byte {e.start} of the line")
                if no == 1 and file_start and text.startswith("\ufeff"):
                    text = text[1:]
                yield no, text, err
    except _READ_ERRORS as e:
        yield no + 1, None, f"cannot read the file past this line: {e}"


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


def read_jsonl(path: str, encoding: str = "utf-8", span=None) -> Iterator[RawItem]:
    for no, text, err in _decode_lines(path, encoding, span):
        origin = Origin(path, no)
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
        bad = _has_surrogate_escape(text) and _lone_surrogate(value)
        yield RawItem(origin, error=bad) if bad else RawItem(origin, value)


def read_txt(path: str, encoding: str = "utf-8", span=None) -> Iterator[RawItem]:
    """One document per non-blank line, as {"text": line}."""
    for no, text, err in _decode_lines(path, encoding, span):
        origin = Origin(path, no)
        if err:
            yield RawItem(origin, error=err)
        elif text.strip():
            yield RawItem(origin, {"text": text.rstrip("\r\n")})


def read_csv(path: str, encoding: str = "utf-8", delimiter: str | None = None) -> Iterator[RawItem]:
    """Rows as dicts keyed by the header; quoted fields may hold newlines, commas and quotes.

    A malformed row (unbalanced quote, wrong field count, undecodable bytes) is one error item
    at the line where the row starts; reading goes on with the next row.
    """
    delim = delimiter or ("\t" if base_suffix(path) == ".tsv" else ",")
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 1 << 31)))  # long documents are normal
    bad_lines: dict[int, str] = {}
    read_failure: list[tuple[int, str]] = []

    def lines() -> Iterator[str]:
        for no, text, err in _decode_lines(path, encoding):
            if text is None:
                read_failure.append((no, err))
                return
            if err:
                bad_lines[no] = err
            yield text

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
            if header is None:
                raise InputError(path, f"malformed CSV header: {e}", row_start) from None
            yield RawItem(Origin(path, row_start),
                          error=f"malformed CSV row (starts at line {row_start}, read up to line {end_line}): {e}")
            row_start = end_line + 1
            continue
        end_line = reader.line_num
        origin = Origin(path, row_start)
        first_line, row_start = row_start, end_line + 1
        if not row:
            continue  # a blank line is not a record
        bad = decode_error_in(first_line, end_line)
        if header is None:
            if bad:
                raise InputError(path, f"CSV header: {bad[1]}", bad[0])
            header = [h.strip() for h in row]
            if len(set(header)) != len(header) or any(not h for h in header):
                raise InputError(path, f"CSV header has empty or repeated column names: {header}", first_line)
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
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_SCALAR = re.compile(r'[^,\]\s]*')
_WS = re.compile(r"[ \t\r\n]*")
_ESCAPED = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by the surrogateescape handler
_DECODER = json.JSONDecoder()
_OPENER = {"}": "{", "]": "["}


class _TextStream:
    """Incrementally decoded text with a sliding buffer and a running line count."""

    def __init__(self, fh, encoding: str):
        self.fh = fh
        self.decoder = codecs.getincrementaldecoder(encoding)("surrogateescape")
        self.buf = ""
        self.pos = 0           # cursor into buf
        self.mark_pos = 0      # a position in buf whose line number is known ...
        self.mark_line = 1     # ... and that line number (moves forward, so counting stays linear)
        self.eof = False
        self.bom_checked = False
        self.dirty = False     # some bytes could not be decoded (they are surrogate escapes in buf)

    def more(self) -> bool:
        """Append the next chunk of text; False once the input is exhausted."""
        if self.eof:
            return False
        data = self.fh.read(_CHUNK)
        if not data:
            self.eof = True
        text = self.decoder.decode(data, final=self.eof)
        if not self.bom_checked and text:
            self.bom_checked = True
            if text.startswith("\ufeff"):
                text = text[1:]
        if not self.dirty and _ESCAPED.search(text):
            self.dirty = True
        self.buf += text
        return bool(text) or not self.eof

    def line_at(self, pos: int) -> int:
        if pos < self.mark_pos:
            return self.mark_line - self.buf.count("\n", pos, self.mark_pos)
        self.mark_line += self.buf.count("\n", self.mark_pos, pos)
        self.mark_pos = pos
        return self.mark_line

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


def read_json_array(path: str, encoding: str = "utf-8") -> Iterator[RawItem]:
    """Stream the elements of a top-level JSON array without loading the file whole.

    A file cut off mid-record yields every complete element, then one error item at the line
    where the incomplete element starts, saying where the file ends. A record with undecodable
    bytes is one error item naming the line of the first bad byte; the records after it are read.
    """
    with _open_binary(path) as fh:
        ts = _TextStream(fh, encoding)
        try:
            yield from _iter_array(ts, path, encoding)
        except _READ_ERRORS as e:
            yield RawItem(Origin(path, ts.line_at(min(ts.pos, len(ts.buf)))),
                          error=f"cannot read the file past this line: {e}")


def _describe(ts: _TextStream, encoding: str) -> str:
    ch = ts.buf[ts.pos]
    if "\udc80" <= ch <= "\udcff":
        return _bad_bytes_message(encoding, bytes([ord(ch) - 0xDC00]), "byte")
    return f"found {ch!r}"


def _iter_array(ts: _TextStream, path: str, encoding: str) -> Iterator[RawItem]:
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
                                f"(the last complete record ends at line {last_end_line})")
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
        item, end = _next_element(ts, path, start_line, encoding)
        yield item
        if end is None:
            return
        ts.pos = end
        last_end_line = ts.line_at(end)
        expect_value = first = False


def _next_element(ts: _TextStream, path: str, start_line: int, encoding: str) -> tuple[RawItem, int | None]:
    """The array element at ts.pos and the offset just past it (None when the file is cut off)."""
    start = ts.pos
    try:  # fast path: the whole element is in the buffer and is valid JSON
        value, end = _DECODER.raw_decode(ts.buf, start)
        if end == len(ts.buf) and not ts.eof:
            raise ValueError("a scalar may continue in the next chunk")
    except ValueError:
        end = _element_end(ts)
        if end is None:
            return RawItem(Origin(path, start_line), error=(
                f"JSON array cut off mid-record: the record starting at line {start_line} is incomplete "
                f"at end of file (line {ts.line_at(len(ts.buf))})")), None
        try:
            value = json.loads(ts.buf[start:end])
        except json.JSONDecodeError as e:
            bad = ts.escaped_byte_in(start, end)
            if bad:
                return _bad_bytes_item(path, bad, start_line, encoding), end
            return RawItem(Origin(path, start_line + e.lineno - 1),
                           error=f"invalid JSON at column {e.colno}: {e.msg}"), end
    bad = ts.escaped_byte_in(start, end)
    if bad:
        return _bad_bytes_item(path, bad, start_line, encoding), end
    lone = _has_surrogate_escape(ts.buf, start, end) and _lone_surrogate(value)
    if lone:
        return RawItem(Origin(path, start_line), error=lone), end
    return RawItem(Origin(path, start_line), value), end


def _bad_bytes_item(path: str, bad: tuple[int, bytes], start_line: int, encoding: str) -> RawItem:
    line, byte = bad
    return RawItem(Origin(path, line),
                   error=_bad_bytes_message(encoding, byte, f"byte in the record starting at line {start_line}"))


def _element_end(ts: _TextStream) -> int | None:
    """End offset of the JSON value starting at ts.pos, reading more input as needed; None if cut off.

    Only brackets and string boundaries are tracked, so an element with a syntax error inside
    still ends at its closing (or first mismatched) bracket and the elements after it can be read.
    """
    start = ts.pos
    opener = ts.buf[start]
    if opener == '"':
        while True:
            m = _STRING.match(ts.buf, start)
            if m:
                return m.end()
            if not ts.more():
                return None
    if opener not in "{[":
        while True:
            end = _SCALAR.match(ts.buf, start).end()
            if end < len(ts.buf) or not ts.more():
                return end
    open_brackets: list[str] = []
    scan = start
    while True:
        for m in _TOKEN.finditer(ts.buf, scan):
            tok = m.group()
            if tok == '"':  # string not terminated inside the buffer: rescan it whole after reading more
                scan = m.start()
                break
            if tok[0] == '"':
                continue
            if tok in "{[":
                open_brackets.append(tok)
                continue
            if open_brackets.pop() != _OPENER[tok] or not open_brackets:
                return m.end()  # closed (or mismatched: json.loads will say where)
        else:
            scan = len(ts.buf)
        if not ts.more():
            return None


def read_file(path: str, encoding: str = "utf-8", span: tuple[int, int | None] | None = None) -> Iterator[RawItem]:
    """Items of `path`, or of its byte range `span` (jsonl and txt only; line numbers then count
    from the range's first line)."""
    suffix = base_suffix(path)
    if span is not None and span != (0, None) and suffix not in (".jsonl", ".txt"):
        raise InputError(path, f"a {suffix} file cannot be read in byte ranges")
    if suffix == ".jsonl":
        return read_jsonl(path, encoding, span)
    if suffix == ".json":
        return read_json_array(path, encoding)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, encoding)
    if suffix == ".txt":
        return read_txt(path, encoding, span)
    raise InputError(path, f"unsupported file type {suffix!r}; expected one of {', '.join(SUFFIXES)} (optionally .gz)")


def read_raw(inputs: Iterable[str], encoding: str = "utf-8") -> Iterator[RawItem]:
    for path in expand_inputs(inputs):
        yield from read_file(path, encoding)
