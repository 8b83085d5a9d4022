"""stats' step: each record's category, length in characters and (with a tokenizer) in tokens, so
the engine's workers do the reading, parsing and tokenizing and the driver only adds up counters."""

from __future__ import annotations

import os
from dataclasses import dataclass

from corpuskit.bucket.spool import record_category
from corpuskit.ingest.steps import ParseStep
from corpuskit.records import Rejected
from corpuskit.stats.collect import BATCH_CHARS
from corpuskit.step import Step, StepOutput, register_step


@register_step("stats-count")
@dataclass(frozen=True)
class StatsCountStep(Step):
    """Records -> (category, characters, tokens or -1); a category of the wrong type is a reject.
    Tokens are counted through the worker's cached tokenizer, in batches bounded by size."""

    category_field: str = "category"
    default_category: str = "default"
    category_by_file: bool = False
    tokenizer: str | None = None
    fingerprint: str = ""

    def process(self, batch) -> StepOutput:
        out = StepOutput()
        texts: list[str] = []
        for rec in batch:
            cat = record_category(rec, self.category_field, self.default_category, self.category_by_file)
            if isinstance(cat, Rejected):
                out.rejected.append(cat)
                continue
            text = rec.content_text()
            out.kept.append((cat, len(text), -1))
            if self.tokenizer is not None:
                texts.append(text)
        if texts:
            from corpuskit.stats.tokens import cached_token_counter

            os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one Rust thread per worker: the workers are the parallelism
            count = cached_token_counter(self.tokenizer, self.fingerprint)
            counts: list[int] = []
            start = chars = 0
            for i, t in enumerate(texts):
                chars += len(t)
                if chars >= BATCH_CHARS or i == len(texts) - 1:
                    counts.extend(count(texts[start:i + 1]))
                    start, chars = i + 1, 0
            out.kept = [(c, n, k) for (c, n, _), k in zip(out.kept, counts)]
        return out


@dataclass(frozen=True)
class StatsSteps:
    """Picklable recipe for a task's steps (engine.tasks.RecordTask.build_steps)."""

    fmt: str
    count: StatsCountStep

    def __call__(self) -> list[Step]:
        return [ParseStep(self.fmt, None), self.count]
