"""The record-parallel task for stages whose kept items are not records (render's token rows,
stats' per-record counts): the same pieces of input as engine.tasks (byte-range splits the worker
reads, or batches the runner read), the same steps protocol, but the kept items come back as
objects for the runner to write or merge in input order.

Kept items cannot be renumbered by the runner (it does not know their shape), so each result says
how many lines of its file came before its split (`line_offset`); rejects are renumbered here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Iterable, Iterator

from corpuskit.engine.executor import Executor
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import Split, count_lines
from corpuskit.engine.tasks import BATCH, RecordTask, task_items
from corpuskit.records import Origin, Rejected
from corpuskit.step import run_steps


@dataclass
class ItemResult:
    split: Split
    kept: list[Any] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    items: int = 0  # raw items read (kept + rejected)
    n_lines: int = 0  # physical lines of a byte-range split
    line_offset: int = 0  # set by the runner: lines of the file before this split


def run_item_task(task: RecordTask) -> ItemResult:
    steps = task.build_steps()
    split = task.split
    result = ItemResult(split)
    items = task_items(task)
    while batch := list(islice(items, BATCH)):
        result.items += len(batch)
        out = run_steps(steps, batch)
        result.rejected.extend(out.rejected)
        result.counters.update(out.counters)
        result.kept.extend(out.kept)
    if task.items is None and not split.whole:
        result.n_lines = count_lines(split)
    return result


def run_item_tasks(executor: Executor, tasks: Iterable[RecordTask]) -> Iterator[ItemResult]:
    """Results in task order, rejects renumbered to their file's own lines, `line_offset` set."""
    numbers = LineNumbers()
    for result in executor.map(run_item_task, tasks):
        off = result.line_offset = numbers.offset(result.split, result.n_lines)
        if off:
            for rej in result.rejected:
                rej.origin = Origin(rej.origin.path, rej.origin.line + off)
        yield result
