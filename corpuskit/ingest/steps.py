"""convert's steps: parse raw items into canonical records, then tag records that have no category."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from corpuskit.ingest.formats import convert_value
from corpuskit.ingest.readers import RawItem
from corpuskit.records import PIECE, Record, Rejected
from corpuskit.step import Step, StepOutput, register_step


@register_step("parse")
@dataclass
class ParseStep(Step):
    """Raw values -> canonical records; unparseable items and unconvertible values leave with a reason."""

    fmt: str = "auto"
    to: str | None = None
    repairs: frozenset = frozenset()

    def process(self, batch: list[RawItem]) -> StepOutput:
        out = StepOutput()
        for item in batch:
            if item.error is not None:
                out.rejected.append(Rejected("parse_error", item.origin, item.error, raw=item.value))
                continue
            res = convert_value(item.value, item.origin, self.fmt, self.to, self.repairs)
            if isinstance(res, Rejected):
                out.rejected.append(res)
            else:
                out.counters.update(f"repaired.{name}" for name in res.repairs)
                out.kept.append(res)
        return out


@register_step("default-category")
@dataclass
class DefaultCategoryStep(Step):
    category: str

    def process(self, batch: list[Record]) -> StepOutput:
        for rec in batch:
            if rec.category is None and rec.kind != PIECE:
                rec.category = self.category
        return StepOutput(kept=batch, counters=Counter())
