"""The generic record-parallel task: read one split, run the stage's steps over it in batches, and
return the serialized kept records and the rejects (see runner.SplitResult)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Callable

from corpuskit.engine.executor import worker_cache
from corpuskit.engine.runner import SplitResult
from corpuskit.engine.splits import Split, count_lines
from corpuskit.ingest.readers import read_file
from corpuskit.outputs import dumps
from corpuskit.step import Step, run_steps

BATCH = 256


@dataclass(frozen=True)
class RecordTask:
    """A split plus what to run on it. `build_steps` must be a picklable zero-argument callable (a
    frozen dataclass or a functools.partial of a module-level function): workers build the steps once
    and reuse them for every task with an equal `build_steps`."""

    split: Split
    build_steps: Callable[[], list[Step]]
    encoding: str = "utf-8"
    keep_records: bool = False  # return Record objects (for a stage that goes on) instead of jsonl lines


def run_record_task(task: RecordTask) -> SplitResult:
    steps = worker_cache(("steps", task.build_steps), task.build_steps)
    split = task.split
    result = SplitResult(split)
    span = None if split.whole else (split.start, split.end)
    items = iter(read_file(split.path, task.encoding, span))
    n_items = 0
    while batch := list(islice(items, BATCH)):
        n_items += len(batch)
        out = run_steps(steps, batch)
        result.rejected.extend(out.rejected)
        result.counters.update(out.counters)
        if task.keep_records:
            result.extra.setdefault("records", []).extend(out.kept)
        else:
            result.lines.extend(dumps(r.to_json()) for r in out.kept)
    result.counters["items"] += n_items
    if not split.whole:
        result.n_lines = count_lines(split)
    result.rejected.sort(key=lambda r: r.origin.line)
    return result
