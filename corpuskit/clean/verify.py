"""clean's verify pass as engine tasks: the records of borderline LSH pairs are re-read, converted,
normalised and shingle-hashed where their split lies (workers or Ray nodes); the driver only
intersects the hash sets, in input order, so its memory stays bounded by the records "open" at once
(minhash.BorderlineResolver). Splits and item counts are pass 1's (write.SplitPlan / SplitEvents);
tasks after the last record that still has to be compared are never started.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from corpuskit.clean.config import NormalizeConfig
from corpuskit.clean.minhash import FormBatch, batch_token_ids, ngram_hashes
from corpuskit.clean.steps import normalized as normalize_record
from corpuskit.clean.write import SplitEvents, SplitPlan, changed, reconverted
from corpuskit.engine.tasks import RecordTask, task_items


@dataclass(frozen=True)
class VerifyJob:
    task: RecordTask
    offset: int  # added to the split's own line numbers
    wanted: array  # positions (within the task) of the records to hash, increasing
    lines: array  # their file lines as pass 1 saw them
    fmt: str
    normalize: NormalizeConfig
    shingle: str
    ngram: int


def run_verify_job(job: VerifyJob) -> list[np.ndarray]:
    """The sorted distinct shingle hashes (as `shingle_hashes` gives them) of each wanted record."""
    path = job.task.split.path
    texts: list[str] = []
    k = 0
    for pos, item in enumerate(task_items(job.task)):
        if k == len(job.wanted):
            break
        if pos != job.wanted[k]:
            continue
        rec = reconverted(item, path, item.origin.line + job.offset, job.lines[k], job.fmt)
        texts.append(normalize_record(rec, job.normalize)[0].dedup_text())
        k += 1
    if k != len(job.wanted):
        raise changed(path, None, "fewer records on the second read")
    if not texts:
        return []
    hashes, off = ngram_hashes(*batch_token_ids(FormBatch(texts), job.shingle), job.ngram)
    top = (hashes >> np.uint64(32)).astype(np.uint32)
    return [np.unique(top[off[i]:off[i + 1]]) for i in range(len(texts))]


class VerifyPass:
    """The driver's side: which records each task must hash, and feeding their hashes to the resolver
    in input order (the executor yields results in job order)."""

    def __init__(self, events_path, origins, resolver, fmt: str, normalize: NormalizeConfig, shingle: str,
                 ngram: int):
        self.events = SplitEvents(events_path, origins)
        self.resolver = resolver
        self.fmt, self.normalize, self.shingle, self.ngram = fmt, normalize, shingle, ngram
        self._pending: deque = deque()  # per job in flight: the candidate ids it hashes

    def jobs(self, tasks, plan: SplitPlan) -> Iterator[VerifyJob]:
        last = self.resolver.last_needed
        for task, k, entries in self.events.walk(tasks, plan, complete=False):
            wanted, lines, cands = array("I"), array("Q"), []
            for pos, (line, cand, _) in enumerate(entries):
                if cand is not None and cand <= last and self.resolver.wants(cand):
                    wanted.append(pos)
                    lines.append(line)
                    cands.append(cand)
            if cands:
                self._pending.append(cands)
                yield VerifyJob(task, plan.offsets[k], wanted, lines, self.fmt, self.normalize, self.shingle,
                                self.ngram)
            if cands and cands[-1] >= last:
                return  # nothing after the last borderline record is needed (the write pass re-checks all)

    def feed(self, hashes: list[np.ndarray]) -> None:
        for cand, h in zip(self._pending.popleft(), hashes):
            self.resolver.feed(cand, h)
