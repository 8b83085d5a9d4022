"""The record-parallel task: run a stage's steps over one piece of input and return what came out
(serialized kept records, rejects, counters), so any executor can run it and the runner can write
the results in input order.

A piece is an input split that the worker reads itself (an uncompressed .jsonl/.txt file or byte
range of one: workers on a cluster read in parallel), or a batch of raw items the runner read (a
JSON array, a CSV file or a .gz cannot be entered mid-file, so they are read in one stream and only
the steps run in parallel). Either way a task holds a bounded amount of data, whatever the input.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterable, Iterator

from corpuskit.engine.executor import Executor
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import DEFAULT_SPLIT_BYTES, Split, count_lines, plan_splits, splittable
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, RawItem, read_file
from corpuskit.outputs import dumps
from corpuskit.records import Origin, Rejected
from corpuskit.step import Step, run_steps

BATCH = 512  # records per step call, and raw items per task for inputs the runner reads


@dataclass(frozen=True)
class RecordTask:
    """One piece of input and what to run on it. `build_steps` is a picklable zero-argument callable
    (a frozen dataclass): each task builds its steps from it, in whichever process runs it."""

    build_steps: Callable[[], list[Step]]
    split: Split
    items: tuple[RawItem, ...] | None = None  # read by the runner; None: the task reads `split`
    encoding: str = "utf-8"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES


@dataclass
class TaskResult:
    split: Split
    data: bytes = b""  # the kept records as JSON Lines (UTF-8; a JSON line never holds a raw newline)
    kept: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    items: int = 0  # raw items read (kept + rejected)
    n_lines: int = 0  # physical lines of a byte-range split (the next split's line numbers start after them)


def run_record_task(task: RecordTask) -> TaskResult:
    steps = task.build_steps()
    split = task.split
    result = TaskResult(split)
    items = task_items(task)
    chunks: list[bytes] = []
    while batch := list(islice(items, BATCH)):
        result.items += len(batch)
        out = run_steps(steps, batch)
        result.rejected.extend(out.rejected)
        result.counters.update(out.counters)
        if out.kept:
            result.kept += len(out.kept)
            chunks.append(("\n".join(dumps(rec.to_json()) for rec in out.kept) + "\n").encode("utf-8"))
    result.data = b"".join(chunks)
    if task.items is None and not split.whole:
        result.n_lines = count_lines(split)
    return result


def task_items(task: RecordTask) -> Iterator[RawItem]:
    """The raw items of a task: the batch the runner read, or its split read here."""
    if task.items is not None:
        return iter(task.items)
    split = task.split
    return iter(read_file(split.path, task.encoding, task.max_record_bytes,
                          None if split.whole else (split.start, split.end)))


def record_tasks(files: Iterable[str], build_steps: Callable[[], list[Step]], encoding: str = "utf-8",
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 split_bytes: int | None = DEFAULT_SPLIT_BYTES, workers: int = 1) -> Iterator[RecordTask]:
    """Tasks in input order (lazily: inputs the runner reads are read as the executor asks for more);
    `split_bytes` None: sized for `workers` (splits.auto_split_bytes)."""
    for split in plan_splits(files, split_bytes, workers):
        if splittable(split.path):
            yield RecordTask(build_steps, split, None, encoding, max_record_bytes)
            continue
        items = iter(read_file(split.path, encoding, max_record_bytes))
        while batch := tuple(islice(items, BATCH)):
            yield RecordTask(build_steps, split, batch, encoding, max_record_bytes)


def run_record_tasks(executor: Executor, tasks: Iterable[RecordTask]) -> Iterator[TaskResult]:
    """Results in task order, rejects renumbered to their file's own lines."""
    numbers = LineNumbers()
    for result in executor.map(run_record_task, tasks):
        off = numbers.offset(result.split, result.n_lines)
        if off:
            for rej in result.rejected:
                rej.origin = Origin(rej.origin.path, rej.origin.line + off)
        yield result
