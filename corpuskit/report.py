"""One report shape for every command: what came in, what was kept, what was rejected and why.

`input == kept + sum(rejected.values())` is checked before a report is written, so a stage that
loses a record fails loudly instead of reporting wrong numbers.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpuskit import __version__
from corpuskit.outputs import atomic_file, write_json
from corpuskit.records import Rejected


class CountMismatch(AssertionError):
    pass


@dataclass
class StageReport:
    command: str
    inputs: list[str] = field(default_factory=list)
    input: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, list[dict]] = field(default_factory=dict)  # a few rejects per reason
    max_examples: int = 3
    _t0: float = field(default_factory=time.perf_counter)

    def keep(self, n: int = 1) -> None:
        self.input += n
        self.kept += n

    def reject(self, rej: Rejected) -> None:
        self.input += 1
        self.rejected[rej.reason] += 1
        ex = self.examples.setdefault(rej.reason, [])
        if len(ex) < self.max_examples:
            ex.append({"origin": str(rej.origin), "message": rej.message})

    def time(self, name: str, seconds: float) -> None:
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 4)

    def check(self) -> None:
        total = self.kept + sum(self.rejected.values())
        if total != self.input:
            raise CountMismatch(f"{self.command}: input {self.input} != kept {self.kept} + rejected {total - self.kept}")

    def to_json(self) -> dict:
        self.check()
        timings = dict(self.timings)
        timings.setdefault("total", round(time.perf_counter() - self._t0, 4))
        return {
            "command": self.command,
            "version": __version__,
            "inputs": self.inputs,
            "counts": {"input": self.input, "kept": self.kept,
                       "rejected": dict(sorted(self.rejected.items()))},
            "timings": timings,
            **({"details": self.details} if self.details else {}),
            **({"examples": self.examples} if self.examples else {}),
        }

    def summary(self) -> str:
        rej = sum(self.rejected.values())
        parts = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items()))
        return f"{self.command}: input {self.input} = kept {self.kept} + rejected {rej}" + (f" ({parts})" if parts else "")

    def to_markdown(self) -> str:
        d = self.to_json()
        lines = [f"# corpuskit {self.command} report", "",
                 f"- version: {__version__}",
                 f"- inputs: {', '.join(self.inputs) if self.inputs else '-'}",
                 f"- input records: {self.input}",
                 f"- kept: {self.kept}",
                 f"- rejected: {sum(self.rejected.values())}", ""]
        if self.rejected:
            lines += ["| reason | records | examples |", "|---|---:|---|"]
            for reason, n in sorted(self.rejected.items(), key=lambda kv: -kv[1]):
                ex = "; ".join(f"`{e['origin']}` {e['message']}" for e in self.examples.get(reason, []))
                lines.append(f"| {reason} | {n} | {ex.replace('|', '/')} |")
            lines.append("")
        if self.details:
            lines += ["## Details", ""]
            for k, v in self.details.items():
                lines.append(f"- {k}: {v}")
            lines.append("")
        lines += ["## Timings (s)", ""] + [f"- {k}: {v}" for k, v in d["timings"].items()]
        return "\n".join(lines) + "\n"

    def write(self, outdir: str | Path, name: str = "report") -> None:
        outdir = Path(outdir)
        write_json(outdir / f"{name}.json", self.to_json())
        with atomic_file(outdir / f"{name}.md") as fh:
            fh.write(self.to_markdown())
