"""convert's steps: parse raw items into canonical records, fill in a default category, reshape
pretrain text as {source, target}, add a default system turn. Counters feed convert's report."""

from __future__ import annotations

from dataclasses import dataclass

from corpuskit.ingest import to_record
from corpuskit.ingest.bridges import add_system, to_source_target
from corpuskit.records import PIECE, Rejected
from corpuskit.step import Step, StepOutput, register_step


@register_step("parse")
@dataclass(frozen=True)
class ParseStep(Step):
    """Raw items -> canonical records; unparseable items and unconvertible values leave with a reason.
    Counts `repaired.NAME` per opt-in repair applied."""

    fmt: str = "auto"
    to: str | None = None
    repairs: frozenset = frozenset()
    alpaca_layout: str = "newline"

    def process(self, batch) -> StepOutput:
        out = StepOutput()
        for item in batch:
            res = to_record(item, self.fmt, self.to, self.repairs, self.alpaca_layout)
            if isinstance(res, Rejected):
                out.rejected.append(res)
            else:
                out.counters.update(f"repaired.{name}" for name in res.repairs)
                out.kept.append(res)
        return out


@register_step("default-category")
@dataclass(frozen=True)
class DefaultCategoryStep(Step):
    """Records without a category get this one (vocabulary pieces have none)."""

    category: str

    def process(self, batch) -> StepOutput:
        for rec in batch:
            if rec.category is None and rec.kind != PIECE:
                rec.category = self.category
        return StepOutput(kept=batch)


@register_step("source-target")
@dataclass(frozen=True)
class SourceTargetStep(Step):
    """Pretrain text as {source, target} (see bridges.split_text); counts `not_split` texts."""

    split: str = "none"

    def process(self, batch) -> StepOutput:
        out = StepOutput()
        for rec in batch:
            rec, done = to_source_target(rec, self.split)
            out.kept.append(rec)
            if not done and self.split != "none":
                out.counters["not_split"] += 1
        return out


@register_step("system-turn")
@dataclass(frozen=True)
class SystemTurnStep(Step):
    """A system turn for conversations that have none; counts `system_turn_added`."""

    system: str

    def process(self, batch) -> StepOutput:
        out = StepOutput(kept=batch)
        out.counters["system_turn_added"] = sum(add_system(rec, self.system) for rec in batch)
        return out
