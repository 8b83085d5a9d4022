"""One reader layer used by every command: files -> raw values -> canonical records (or rejects)."""

from __future__ import annotations

from typing import Iterable, Iterator

from corpuskit.ingest.formats import (FORMATS, REPAIRS, Reject, check_messages, convert_value,
                                      is_llama2_chinese)
from corpuskit.ingest.readers import (DEFAULT_MAX_RECORD_BYTES, MAX_DEPTH, STAGE_DATA, TOO_LARGE, InputError,
                                      RawItem, expand_inputs, read_file, read_raw, stage_data_files)
from corpuskit.records import Record, Rejected

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "MAX_DEPTH", "TOO_LARGE", "FORMATS", "REPAIRS", "InputError", "RawItem", "Reject", "check_messages", "convert_value",
           "expand_inputs", "is_llama2_chinese", "read_file", "read_raw", "iter_records", "STAGE_DATA",
           "stage_data_files", "to_record"]


def iter_records(inputs: Iterable[str], fmt: str = "auto", to: str | None = None,
                 encoding: str = "utf-8", repairs: Iterable[str] = (),
                 alpaca_layout: str = "newline",
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Record | Rejected]:
    """Every input record, in file order, as a canonical Record or a Rejected with its reason.

    Unparseable records (bad JSON line, invalid UTF-8, an array cut off mid-record, JSON nested
    deeper than MAX_DEPTH) come out as Rejected with reason `parse_error`, records over
    `max_record_bytes` as `record_too_large`, so `input == kept + rejected` holds for every stage.
    """
    repairs = frozenset(repairs)
    for item in read_raw(inputs, encoding, max_record_bytes):
        yield to_record(item, fmt, to, repairs, alpaca_layout)


def to_record(item: RawItem, fmt: str = "auto", to: str | None = None, repairs: frozenset = frozenset(),
              alpaca_layout: str = "newline") -> Record | Rejected:
    """One raw item as a canonical Record, or a Rejected with its reason."""
    if item.error is not None:
        return Rejected(item.reason, item.origin, item.error, raw=item.value)
    return convert_value(item.value, item.origin, fmt, to, repairs, alpaca_layout)
