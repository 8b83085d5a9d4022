"""Validate one data file: every record counted, each invalid one reported with its line."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

from corpuskit.engine import fs
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import Split, count_lines
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, InputError, convert_value, read_file
from corpuskit.ingest.readers import base_suffix
from corpuskit.records import Record
from corpuskit.validate.schemas import KindChecker, kind_of


@dataclass
class FileResult:
    path: str
    records: int = 0
    valid: int = 0
    invalid: int = 0
    errors: list[tuple[int | None, str]] = field(default_factory=list)  # first `max_errors` only
    file_error: tuple[int | None, str] | None = None  # the file as a whole is unusable

    @property
    def ok(self) -> bool:
        return self.invalid == 0 and self.file_error is None

    def to_json(self) -> dict:
        """The `--format json` line; a file-level error is listed first among the errors."""
        errors = ([self.file_error] if self.file_error else []) + self.errors
        return {"path": self.path, "records": self.records, "valid": self.valid, "invalid": self.invalid,
                "errors": [{"line": line, "message": msg} for line, msg in errors]}


_SHAPE_KEYS = {"messages", "piece", "text", "source", "target", "chosen", "rejected"}


def _keys(value: dict, limit: int = 8) -> str:
    keys = sorted(map(str, value))
    return str(keys[:limit] + ["..."] if len(keys) > limit else keys)


@functools.cache
def checker_for(kind: str) -> KindChecker:
    return KindChecker(kind)


def _no_records_message(path: str) -> str:
    if not path.lower().endswith(".gz") and (fs.size(path) if fs.is_remote(path) else os.path.getsize(path)) == 0:
        return "empty file (0 bytes): a data file must hold at least one record"
    suffix = base_suffix(path)
    if suffix == ".json":
        return "no records: the JSON array is empty"
    if suffix in (".csv", ".tsv"):
        return "no records: the file has only a header row and/or blank lines"
    return "no records: the file has only blank lines"


def _raw_message(value, origin, fmt: str, schema: str) -> str | None:
    """A raw record (ShareGPT, Alpaca ...) is valid when `convert --from fmt` would keep it: the
    same converter, so validate and convert never disagree; the result is then schema-checked."""
    rec = convert_value(value, origin, fmt, None if schema == "auto" else schema)
    if not isinstance(rec, Record):
        return f"{rec.message} [{rec.reason}] (read as {fmt})"
    message = checker_for(rec.kind)(rec.to_json())
    return None if message is None else f"{message} (converted from {fmt})"


def validate_file(path: str, schema: str = "auto", encoding: str = "utf-8", max_errors: int = 50,
                  progress=None, fmt: str | None = None,
                  max_record_bytes: int | None = DEFAULT_MAX_RECORD_BYTES,
                  span: tuple[int, int | None] | None = None) -> FileResult:
    """Check every record of `path` (or of its byte range `span`, an input split) against `schema`
    ("auto" picks per record by shape).

    With `fmt` (a `convert --from` format), records are read as that raw format instead and a
    record is valid when it converts to a valid canonical record.
    `progress` wraps the record stream (a tqdm bar in the CLI). Counting never stops at
    `max_errors`; only the list of messages does, so memory stays bounded on a broken file.
    """
    result = FileResult(path)
    fixed = None if schema == "auto" else checker_for(schema)
    try:
        items = read_file(path, encoding, max_record_bytes, span)
        if progress is not None:
            items = progress(items)
        for item in items:
            result.records += 1
            if item.error is not None:
                message = item.error
            elif fmt is not None:
                message = _raw_message(item.value, item.origin, fmt, schema)
            elif fixed is not None:
                message = fixed(item.value)
            elif isinstance(item.value, dict) and not item.value.keys() & _SHAPE_KEYS:
                message = (f"unknown record shape: no 'messages' (sft), 'piece' (piece), 'text' or "
                           f"'source'+'target' (pretrain); keys {_keys(item.value)}; "
                           "`corpuskit convert` turns ShareGPT/Alpaca/... records into canonical ones")
            else:
                kind = kind_of(item.value)
                message = checker_for(kind)(item.value)
                if message is not None:
                    message += f" (checked as {kind})"
            if message is None:
                result.valid += 1
            else:
                result.invalid += 1
                if len(result.errors) < max_errors:
                    result.errors.append((item.origin.line, message))
    except InputError as e:
        result.file_error = (e.line, e.message)
        return result
    if result.records == 0 and span is None:
        result.file_error = (None, _no_records_message(path))
    return result


@dataclass(frozen=True)
class SplitCheck:
    """One split to validate (a task for the engine)."""

    split: Split
    schema: str
    encoding: str
    max_errors: int
    fmt: str | None
    max_record_bytes: int


def validate_split(task: SplitCheck) -> tuple[FileResult, int]:
    """(the split's result with split-local line numbers, its physical line count)."""
    s = task.split
    span = None if s.whole else (s.start, s.end)
    result = validate_file(s.path, task.schema, task.encoding, task.max_errors, fmt=task.fmt,
                           max_record_bytes=task.max_record_bytes, span=span)
    return result, (0 if s.whole else count_lines(s))


def merge_split_results(parts: list[tuple[FileResult, int]], splits: list[Split], numbers: LineNumbers,
                        max_errors: int) -> FileResult:
    """One file's result from its splits' results (in order): counts add up, line numbers become the file's."""
    merged = FileResult(splits[0].path)
    for (res, n_lines), split in zip(parts, splits):
        off = numbers.offset(split, n_lines)
        merged.records += res.records
        merged.valid += res.valid
        merged.invalid += res.invalid
        room = max(max_errors - len(merged.errors), 0)
        merged.errors.extend((None if line is None else line + off, msg) for line, msg in res.errors[:room])
        if res.file_error and merged.file_error is None:
            line, msg = res.file_error
            merged.file_error = (None if line is None else line + off, msg)
    if merged.records == 0 and merged.file_error is None:
        merged.file_error = (None, _no_records_message(merged.path))
    return merged
