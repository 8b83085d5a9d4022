"""One reader layer used by every command: files -> raw values -> canonical records (or rejects)."""

from __future__ import annotations

from typing import Iterable, Iterator

from corpuskit.ingest.formats import (FORMATS, REPAIRS, Reject, check_messages, convert_value,
                                      is_llama2_chinese)
from corpuskit.ingest.readers import (STAGE_DATA, InputError, RawItem, expand_inputs, read_file, read_raw,
                                      stage_data_files)
from corpuskit.records import Record, Rejected

__all__ = ["FORMATS", "REPAIRS", "InputError", "RawItem", "Reject", "check_messages", "convert_value",
           "expand_inputs", "is_llama2_chinese", "read_file", "read_raw", "iter_records", "STAGE_DATA",
           "stage_data_files"]


def iter_records(inputs: Iterable[str], fmt: str = "auto", to: str | None = None,
                 encoding: str = "utf-8", repairs: Iterable[str] = (),
                 alpaca_layout: str = "newline") -> Iterator[Record | Rejected]:
    """Every input record, in file order, as a canonical Record or a Rejected with its reason.

    Unparseable records (bad JSON line, invalid UTF-8, an array cut off mid-record) come out as
    Rejected with reason `parse_error`, so `input == kept + rejected` holds for every stage.
    """
    repairs = frozenset(repairs)
    for item in read_raw(inputs, encoding):
        if item.error is not None:
            yield Rejected("parse_error", item.origin, item.error, raw=item.value)
        else:
            yield convert_value(item.value, item.origin, fmt, to, repairs, alpaca_layout)
