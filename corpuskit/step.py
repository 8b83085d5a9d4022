"""The step protocol corpus stages are built from.

A step maps a batch of items to kept items plus rejects with reasons, and counts what it did. It
knows nothing of files, click, progress bars, processes or clusters: runners (corpuskit.engine) own
those, so the same steps run in one process, in a local pool or on Ray, with the same results.
Adding a step means writing one class and registering it under a name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

from corpuskit.records import Rejected

STEPS: dict[str, type["Step"]] = {}


@dataclass
class StepOutput:
    kept: list[Any] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)


class Step(ABC):
    """One job over a batch; `process` keeps the order of the items it keeps."""

    name: ClassVar[str] = "step"

    @abstractmethod
    def process(self, batch: list[Any]) -> StepOutput:
        """Kept items (in order), rejects and counters for `batch`."""


def register_step(name: str) -> Callable[[type[Step]], type[Step]]:
    def deco(cls: type[Step]) -> type[Step]:
        if name in STEPS and STEPS[name] is not cls:
            raise ValueError(f"step {name!r} is registered twice")
        cls.name = name
        STEPS[name] = cls
        return cls
    return deco


def run_steps(steps: Iterable[Step], batch: list[Any]) -> StepOutput:
    """The batch through each step in turn. Rejects come in input order (items of one batch are
    from one file, in line order), whichever step rejected them."""
    out = StepOutput(kept=batch)
    rejecting = 0
    for step in steps:
        res = step.process(out.kept)
        out.kept = res.kept
        if res.rejected:
            rejecting += 1
            out.rejected.extend(res.rejected)
        out.counters.update(res.counters)
    if rejecting > 1:
        out.rejected.sort(key=lambda r: r.origin.line)  # stable: same-line rejects keep their order
    return out
