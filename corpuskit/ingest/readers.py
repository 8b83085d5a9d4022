"""Streaming readers for .jsonl / .json / .csv / .tsv / .txt (and .gz of each).

Readers yield `RawItem`s: a parsed value with its origin, or a parse error with its origin.
A record-level problem (bad JSON line, invalid UTF-8 on a line, a JSON array cut off
mid-record) is an item with `error` set, so callers can count it as rejected/invalid and go
on; a file-level problem (missing file, unsupported extension, a .json that is not an array)
raises `InputError`. Nothing is ever skipped silently.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from corpuskit.records import Origin

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt")
_CHUNK = 1 << 20


class InputError(Exception):
    """A problem with an input file as a whole: message names the file (and line when known)."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(slots=True)
class RawItem:
    origin: Origin
    value: Any = None
    error: str | None = None  # set when the record could not be parsed


def base_suffix(path: str | os.PathLike) -> str:
    name = str(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files, directories (recursively, supported suffixes only) and globs, each in sorted order."""
    out: list[str] = []
    for item in inputs:
        s = str(item)
        if os.path.isdir(s):
            found = sorted(
                str(p) for p in Path(s).rglob("*")
                if p.is_file() and base_suffix(p) in SUFFIXES and not p.name.startswith(".")
            )
            if not found:
                raise InputError(s, "directory has no .jsonl/.json/.csv/.tsv/.txt files")
            out.extend(found)
        elif any(c in s for c in "*?["):
            found = sorted(glob.glob(s, recursive=True))
            if not found:
                raise InputError(s, "glob matched no files")
            out.extend(f for f in found if os.path.isfile(f))
        else:
            if not os.path.exists(s):
                raise InputError(s, "no such file or directory")
            out.append(s)
    return out


def _open_binary(path: str):
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _decode_lines(path: str, encoding: str) -> Iterator[tuple[int, str | None, str | None]]:
    """(line_no, text, error) for each physical line; a BOM on line 1 is dropped."""
    with _open_binary(path) as fh:
        for no, raw in enumerate(fh, 1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                yield no, None, (f"invalid {encoding} at byte {e.start} of the line "
                                 f"({raw[e.start:e.start + 4]!r}); pass --encoding if the file is not UTF-8")
                continue
            except OSError as e:  # truncated .gz and the like
                yield no, None, f"cannot read: {e}"
                return
            if no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield no, text, None


def read_jsonl(path: str, encoding: str = "utf-8") -> Iterator[RawItem]:
    for no, text, err in _decode_lines(path, encoding):
        origin = Origin(path, no)
        if err:
            yield RawItem(origin, error=err)
            continue
        if not text.strip():
            continue  # blank lines are not records
        try:
            yield RawItem(origin, json.loads(text))
        except json.JSONDecodeError as e:
            yield RawItem(origin, error=f"invalid JSON at column {e.colno}: {e.msg}")


def read_txt(path: str, encoding: str = "utf-8") -> Iterator[RawItem]:
    """One document per non-blank line, as {"text": line}."""
    for no, text, err in _decode_lines(path, encoding):
        origin = Origin(path, no)
        if err:
            yield RawItem(origin, error=err)
        elif text.strip():
            yield RawItem(origin, {"text": text.rstrip("\r\n")})


def read_csv(path: str, encoding: str = "utf-8", delimiter: str | None = None) -> Iterator[RawItem]:
    """Rows as dicts keyed by the header; quoted fields may hold newlines, commas and quotes."""
    delim = delimiter or ("\t" if base_suffix(path) == ".tsv" else ",")
    state = {"line": 0, "error": None}

    def lines() -> Iterator[str]:
        for no, text, err in _decode_lines(path, encoding):
            state["line"] = no
            if err:
                state["error"] = (no, err)
                return
            yield text

    reader = csv.reader(lines(), delimiter=delim, strict=True)
    header: list[str] | None = None
    row_start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            yield RawItem(Origin(path, row_start),
                          error=f"malformed CSV row (started at line {row_start}, "
                                f"reached line {state['line']}): {e}")
            return
        end_line = reader.line_num
        if header is None:
            header = [h.strip() for h in row]
            if len(set(header)) != len(header) or any(not h for h in header):
                raise InputError(path, f"CSV header has empty or repeated column names: {header}", 1)
            row_start = end_line + 1
            continue
        origin = Origin(path, row_start)
        row_start = end_line + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if len(row) != len(header):
            yield RawItem(origin, error=f"row has {len(row)} fields, header has {len(header)}")
            continue
        yield RawItem(origin, dict(zip(header, row)))
    if state["error"]:
        no, err = state["error"]
        yield RawItem(Origin(path, no), error=err)


# Tokens that matter for finding where one array element ends: whole strings (so brackets inside
# strings are ignored), an unterminated string (needs more input), and brackets.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|"|[{}\[\]]', re.S)
_WS = re.compile(r"[ \t\r\n]*")


class _TextStream:
    """Incrementally decoded text with a sliding buffer and a running line count."""

    def __init__(self, fh, encoding: str, path: str):
        self.fh, self.path = fh, path
        self.decoder = codecs.getincrementaldecoder(encoding)()
        self.encoding = encoding
        self.buf = ""
        self.pos = 0           # cursor into buf
        self.mark_pos = 0      # a position in buf whose line number is known ...
        self.mark_line = 1     # ... and that line number (moves forward, so counting stays linear)
        self.eof = False
        self.first = True

    def more(self) -> bool:
        if self.eof:
            return False
        data = self.fh.read(_CHUNK)
        if not data:
            self.eof = True
            try:
                tail = self.decoder.decode(b"", final=True)
            except UnicodeDecodeError as e:
                raise _DecodeAt(self.line_here(len(self.buf)), f"file ends inside a multi-byte {self.encoding} character") from e
            self.buf += tail
            return bool(tail)
        try:
            text = self.decoder.decode(data)
        except UnicodeDecodeError as e:
            good = data[: e.start]
            text = self.decoder.decode(good) if good else ""
            line = self.line_here(len(self.buf)) + text.count("\n")
            raise _DecodeAt(line, f"invalid {self.encoding} byte {data[e.start:e.start + 1]!r}; "
                                  "pass --encoding if the file is not UTF-8") from e
        if self.first:
            self.first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        self.buf += text
        return True

    def line_here(self, pos: int) -> int:
        if pos < self.mark_pos:
            return self.mark_line - self.buf.count("\n", pos, self.mark_pos)
        self.mark_line += self.buf.count("\n", self.mark_pos, pos)
        self.mark_pos = pos
        return self.mark_line

    def compact(self) -> None:
        """Forget consumed text once enough has piled up (amortised: never per record)."""
        if self.pos > _CHUNK:
            self.line_here(self.pos)
            self.buf = self.buf[self.pos:]
            self.mark_pos -= self.pos
            self.pos = 0

    def skip_ws(self) -> bool:
        """Advance past whitespace; False at end of input."""
        while True:
            m = _WS.match(self.buf, self.pos)
            self.pos = m.end()
            if self.pos < len(self.buf):
                return True
            if not self.more():
                return False


class _DecodeAt(Exception):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def read_json_array(path: str, encoding: str = "utf-8") -> Iterator[RawItem]:
    """Stream the elements of a top-level JSON array without loading the file whole.

    A file cut off mid-record yields every complete element, then one error item at the line
    where the incomplete element starts, saying where the file ends.
    """
    with _open_binary(path) as fh:
        ts = _TextStream(fh, encoding, path)
        try:
            yield from _iter_array(ts, path)
        except _DecodeAt as e:
            yield RawItem(Origin(path, e.line), error=e.message)
        except (OSError, EOFError) as e:
            yield RawItem(Origin(path, ts.line_here(ts.pos)), error=f"cannot read: {e}")


def _iter_array(ts: _TextStream, path: str) -> Iterator[RawItem]:
    if not ts.skip_ws():
        raise InputError(path, "empty file: expected a JSON array of records")
    if ts.buf[ts.pos] != "[":
        raise InputError(path, "top-level JSON value is not an array; use a JSON array of records, "
                               "or .jsonl with one record per line", ts.line_here(ts.pos))
    ts.pos += 1
    expect_value = True
    first = True
    while True:
        if not ts.skip_ws():
            yield RawItem(Origin(path, ts.line_here(ts.pos)),
                          error=f"file ends before the JSON array is closed (at line {ts.line_here(ts.pos)})")
            return
        ch = ts.buf[ts.pos]
        if ch == "]" and (first or not expect_value):
            ts.pos += 1
            if ts.skip_ws():
                raise InputError(path, "unexpected data after the closing ']' of the JSON array",
                                 ts.line_here(ts.pos))
            return
        if not expect_value:
            if ch != ",":
                yield RawItem(Origin(path, ts.line_here(ts.pos)),
                              error=f"expected ',' or ']' between array elements, found {ch!r}")
                return
            ts.pos += 1
            expect_value = True
            continue
        ts.compact()
        start_line = ts.line_here(ts.pos)
        end = _scan_value(ts)
        if end is None:
            yield RawItem(Origin(path, start_line),
                          error=(f"JSON array cut off mid-record: the record starting at line {start_line} "
                                 f"is incomplete at end of file (line {ts.line_here(len(ts.buf))})"))
            return
        text = ts.buf[ts.pos:end]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            yield RawItem(Origin(path, start_line + e.lineno - 1),
                          error=f"invalid JSON at column {e.colno}: {e.msg}")
            return
        yield RawItem(Origin(path, start_line), value)
        ts.pos = end
        expect_value = False
        first = False


def _scan_value(ts: _TextStream) -> int | None:
    """End offset of the JSON value starting at ts.pos, reading more input as needed; None if cut off."""
    start = ts.pos
    if ts.buf[start] not in "{[":
        # a scalar element: let the JSON decoder find its end
        dec = json.JSONDecoder()
        while True:
            try:
                _, end = dec.raw_decode(ts.buf, start)
                if end < len(ts.buf) or ts.eof:
                    return end
            except json.JSONDecodeError:
                if ts.eof:
                    return len(ts.buf) if ts.buf[start:].strip() else None
            if not ts.more():
                continue
    depth = 0
    scan = start
    while True:
        for m in _TOKEN.finditer(ts.buf, scan):
            tok = m.group()
            if tok == '"':  # string not terminated inside the buffer: need more input
                scan = m.start()
                break
            if tok[0] == '"':
                continue
            depth += 1 if tok in "{[" else -1
            if depth == 0:
                return m.end()
        else:
            scan = len(ts.buf)
        # back off so a string that began before `scan` is rescanned whole
        if not ts.more():
            return None


def read_file(path: str, encoding: str = "utf-8") -> Iterator[RawItem]:
    suffix = base_suffix(path)
    if suffix == ".jsonl":
        return read_jsonl(path, encoding)
    if suffix == ".json":
        return read_json_array(path, encoding)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, encoding)
    if suffix == ".txt":
        return read_txt(path, encoding)
    raise InputError(path, f"unsupported file type {suffix!r}; expected one of {', '.join(SUFFIXES)} (optionally .gz)")


def read_raw(inputs: Iterable[str], encoding: str = "utf-8") -> Iterator[RawItem]:
    for path in expand_inputs(inputs):
        yield from read_file(path, encoding)
