"""The record-parallel runner: splits -> tasks on an executor -> results in input order.

A task reads one split, passes its records through the stage's steps in batches and returns what
the split produced (output lines, rejects, counters, its line count); the runner fixes rejects'
line numbers (see splits.py) and hands results to the command's writer in order.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from corpuskit.engine.executor import Executor
from corpuskit.engine.splits import Split
from corpuskit.records import Origin, Rejected


@dataclass
class SplitResult:
    """What one task made of one split. `lines` are serialized output records (no newline)."""

    split: Split
    lines: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    n_lines: int = 0  # physical lines the split held (for the next split's line numbers)
    extra: dict[str, Any] = field(default_factory=dict)


class LineNumbers:
    """Turns split-local origins into file line numbers; results must arrive in split order."""

    def __init__(self) -> None:
        self._offset: dict[str, int] = {}

    def offset(self, split: Split, n_lines: int) -> int:
        """Lines in the earlier splits of `split`'s file; call once per split, in split order."""
        off = 0 if split.index == 0 else self._offset[split.path]
        self._offset[split.path] = off + n_lines
        return off

    def fix(self, result: SplitResult) -> SplitResult:
        path = result.split.path
        off = self.offset(result.split, result.n_lines)
        if off:
            for rej in result.rejected:
                if rej.origin.path == path:
                    rej.origin = Origin(path, rej.origin.line + off)
        return result


def run_splits(executor: Executor, task_fn: Callable[[Any], SplitResult], tasks: Iterable[Any]) -> Iterator[SplitResult]:
    """Results of `task_fn` over `tasks` (each naming one split) in order, with file line numbers."""
    numbers = LineNumbers()
    for result in executor.map(task_fn, tasks):
        yield numbers.fix(result)
