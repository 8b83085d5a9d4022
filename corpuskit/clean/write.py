"""clean's write pass as engine tasks: each input split is re-read, converted and normalised where it
lies (a worker process or a Ray node), so the pass scales with the workers instead of running on the
driver alone (it re-reads the whole input: a cluster run over 1 TB would otherwise read it twice on
one node).

The driver knows every decision already: pass 1's events file says, item by item, which records it
rejected (their reject lines) and which reached dedup; the near-dup index says which of those are
dropped and for whom. It hands each split's decisions to its task, which returns the kept records
as JSON Lines bytes and the near-duplicate reject lines; the driver interleaves those with pass 1's
reject lines in input order. Splits are the same as in pass 1 (same files, same split size), so the
per-split item counts recorded there line the two passes up, and the task checks every item's line
against what pass 1 saw: a file that changed in between fails with a clear error, as before.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterator

from corpuskit.clean.config import NormalizeConfig
from corpuskit.clean.steps import normalized as normalize_record
from corpuskit.engine.tasks import RecordTask, task_items
from corpuskit.ingest import InputError, convert_value
from corpuskit.outputs import dumps
from corpuskit.records import Origin, Rejected

CANDIDATE = "C\n"  # events-file line for a record that reached dedup
_REJECTED, _KEPT, _NEAR_DUP = 0, 1, 2
_FROM_EVENTS, _FROM_TASK = ord("E"), ord("N")


def changed(path: str, line: int | None = None, why: str = "") -> InputError:
    return InputError(path, "input changed while clean was running" + (f" ({why})" if why else ""), line)


@dataclass
class SplitPlan:
    """Per pass-1 task: how many items it read and the line offset of its split (16 bytes a task)."""

    split_bytes: int | None = None
    items: array = field(default_factory=lambda: array("Q"))
    offsets: array = field(default_factory=lambda: array("Q"))

    def add(self, items: int, offset: int) -> None:
        self.items.append(items)
        self.offsets.append(offset)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class WriteJob:
    task: RecordTask
    offset: int  # added to the split's own line numbers
    marks: bytes  # per item: _REJECTED (pass 1), _KEPT or _NEAR_DUP
    lines: array  # per item: the file line pass 1 saw
    dups: tuple  # per near-duplicate, in order: (origin of the record it duplicates, similarity)
    fmt: str
    normalize: NormalizeConfig


@dataclass
class WriteResult:
    kept: bytes = b""
    kept_by_category: Counter = field(default_factory=Counter)
    dup_lines: list[str] = field(default_factory=list)  # near-duplicate reject lines, in order
    dup_categories: list = field(default_factory=list)
    order: bytes = b""  # per rejected item in input order: E (pass 1's line) or N (the next dup line)


def reconverted(item, path: str, line: int, seen_line: int, fmt: str):
    """The record of an item pass 1 let through to dedup, converted again at its file line; the item
    must stand where pass 1 saw it and still convert (else the file changed between the passes)."""
    rec = convert_value(item.value, Origin(path, line), fmt) if item.error is None and line == seen_line else None
    if rec is None or isinstance(rec, Rejected):
        raise changed(path, line)
    return rec


def near_dup_message(kept: Origin, sim: float) -> str:
    return f"near-duplicate of {kept} (estimated Jaccard {sim:.3f})"


def run_write_job(job: WriteJob) -> WriteResult:
    """Runs where the split lies: re-reads it, converts and normalises the kept records."""
    res = WriteResult()
    path = job.task.split.path
    out: list[str] = []
    order = bytearray()
    dups = iter(job.dups)
    n = 0
    for n, item in enumerate(task_items(job.task), 1):
        line = item.origin.line + job.offset
        if n > len(job.marks):
            raise changed(path, line, "more records on the second read")
        if line != job.lines[n - 1]:
            raise changed(path, line)
        mark = job.marks[n - 1]
        if mark == _REJECTED:
            order.append(_FROM_EVENTS)
            continue
        rec = reconverted(item, path, line, line, job.fmt)
        if mark == _KEPT:
            res.kept_by_category[rec.category] += 1
            out.append(dumps(normalize_record(rec, job.normalize)[0].to_json()))
            continue
        kept_json, sim = next(dups)
        kept = Origin(kept_json["path"], kept_json["line"])
        rej = Rejected("near_duplicate", rec.origin, near_dup_message(kept, sim), raw=rec.to_json(),
                       detail={"duplicate_of": kept_json, "similarity": sim})
        res.dup_lines.append(dumps(rej.to_json()) + "\n")
        res.dup_categories.append(rec.category)
        order.append(_FROM_TASK)
    if n != len(job.marks):
        raise changed(path, None, "fewer records on the second read")
    res.kept = ("\n".join(out) + "\n").encode("utf-8") if out else b""
    res.order = bytes(order)
    return res


class SplitEvents:
    """Pass 1's events, task by task: for each item of a task either its reject line (rejected in
    pass 1; the line holds its origin) or its candidate id and the file line pass 1 saw (it reached
    dedup). Checks that the second read has the same tasks, files and counts; a task's item lines
    are checked where it runs."""

    def __init__(self, events_path, origins):
        self.events_path, self.origins = events_path, origins
        self.cand = 0

    def walk(self, tasks, plan: SplitPlan, complete: bool = True) -> Iterator[tuple]:
        """(task, plan index, [(line, candidate id, None) or (None, None, reject line)]) per task.
        `complete`: the caller reads to the end (the checks for missing input run then)."""
        origins = self.origins
        n_tasks = 0
        with open(self.events_path, encoding="utf-8") as events:
            for k, task in enumerate(tasks):
                n_tasks = k + 1
                path = task.split.path
                if k >= len(plan):
                    raise changed(path, None, "more input on the second read")
                entries = []
                for _ in range(plan.items[k]):
                    event = events.readline()
                    if not event:
                        raise changed(path, None, "events file ended early")
                    if event != CANDIDATE:
                        entries.append((None, None, event))  # its line is in the event (WritePass reads it)
                        continue
                    origin = origins[self.cand]
                    if origin.path != path:
                        raise changed(path, origin.line)
                    entries.append((origin.line, self.cand, None))
                    self.cand += 1
                yield task, k, entries
            if not complete:
                return
            if n_tasks != len(plan):
                raise changed(origins.files[-1], None, "less input on the second read")
            if events.readline():
                raise changed(origins.files[-1], None, "fewer records on the second read")
        if self.cand != len(origins):
            raise changed(origins.files[-1], None, "record count differs on the second read")


class WritePass:
    """The driver's side: jobs from pass 1's events and the near-dup decisions, results written in
    input order. `index`: the near-dup index (find / similarity), or None without near-dup."""

    def __init__(self, events_path, origins, index, fmt: str, normalize: NormalizeConfig):
        self.events = SplitEvents(events_path, origins)
        self.origins, self.index = origins, index
        self.fmt, self.normalize = fmt, normalize
        self.clusters: set[int] = set()
        self._pending: deque = deque()  # per job in flight: (pass 1's reject lines, near-dup (origin, message))

    def jobs(self, tasks, plan: SplitPlan) -> Iterator[WriteJob]:
        origins, index = self.origins, self.index
        for task, k, entries in self.events.walk(tasks, plan):
            marks, lines, dups, rejects, dup_meta = bytearray(), array("Q"), [], [], []
            for line, cand, event in entries:
                if cand is None:
                    was = json.loads(event)["origin"]
                    if was["path"] != task.split.path:
                        raise changed(task.split.path, was["line"])
                    lines.append(was["line"])
                    marks.append(_REJECTED)
                    rejects.append(event)
                    continue
                lines.append(line)
                root = index.find(cand) if index is not None else cand
                if root == cand:
                    marks.append(_KEPT)
                    continue
                self.clusters.add(root)
                kept, sim = origins[root], round(index.similarity(cand, root), 4)
                marks.append(_NEAR_DUP)
                dups.append((kept.to_json(), sim))
                dup_meta.append((Origin(task.split.path, line), near_dup_message(kept, sim)))
            self._pending.append((rejects, dup_meta))
            yield WriteJob(task, plan.offsets[k], bytes(marks), lines, tuple(dups), self.fmt, self.normalize)

    def write(self, res: WriteResult, out, rejected, report, by_category) -> None:
        """One job's result, in input order (the executor yields them in job order)."""
        rejects, dup_meta = self._pending.popleft()
        out.write(res.kept)
        kept = sum(res.kept_by_category.values())
        report.keep(kept)
        for category, count in res.kept_by_category.items():
            by_category.keep(category, count)
        from_events, from_task = iter(rejects), iter(range(len(res.dup_lines)))
        for source in res.order:
            if source == _FROM_EVENTS:
                rejected.write(next(from_events).encode("utf-8"))
                continue
            k = next(from_task)
            origin, message = dup_meta[k]
            report.reject(Rejected("near_duplicate", origin, message))
            by_category.reject(res.dup_categories[k], "near_duplicate")
            rejected.write(res.dup_lines[k].encode("utf-8"))
