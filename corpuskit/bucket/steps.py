"""bucket's record-parallel step: raw items -> (category, canonical record), or a reject with its
reason. The engine (corpuskit.engine) runs it over input splits on any executor; the driver then
plans and assigns buckets over the whole corpus (plan.py), which needs every record's category.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from corpuskit.ingest import to_record
from corpuskit.records import Record, Rejected
from corpuskit.step import Step, StepOutput, register_step


def file_category(path: str) -> str:
    """`--category-by-file`: data/news.jsonl.gz -> news."""
    return Path(path).name.split(".")[0]


def record_category(rec: Record, field: str, default: str, by_file: bool = False) -> str | Rejected:
    """The record's category: `field` (top-level key); when missing or blank, its input file's
    name (with `by_file`) or `default`."""
    value = rec.category if field == "category" else rec.extra.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return file_category(rec.origin.path) if by_file else default
    if not isinstance(value, str):
        return Rejected("wrong_type", rec.origin, f"category field {field!r} must be a string, "
                        f"got {type(value).__name__}", raw=rec.to_json())
    return value


@register_step("bucket-categorise")
@dataclass(frozen=True)
class CategoriseStep(Step):
    """Parse each raw item (as `iter_records` does) and name its category; keeps (category, record)
    pairs. One step, not parse + categorise, so rejects of both kinds stay in item order even when
    several items share a line (a one-line JSON array)."""

    fmt: str = "auto"
    field: str = "category"
    default: str = "default"
    by_file: bool = False

    def process(self, batch) -> StepOutput:
        out = StepOutput()
        for item in batch:
            rec = to_record(item, self.fmt)
            if not isinstance(rec, Rejected):
                cat = record_category(rec, self.field, self.default, self.by_file)
                if not isinstance(cat, Rejected):
                    out.kept.append((cat, rec))
                    continue
                rec = cat
            out.rejected.append(rec)
        return out


@dataclass(frozen=True)
class BucketSteps:
    """Picklable builder of bucket's steps (engine.tasks.RecordTask.build_steps)."""

    fmt: str = "auto"
    field: str = "category"
    default: str = "default"
    by_file: bool = False

    def __call__(self) -> list[Step]:
        return [CategoriseStep(self.fmt, self.field, self.default, self.by_file)]
