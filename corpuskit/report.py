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
            lines += ["## Details", ""] + details_markdown(self.details)
        lines += ["## Timings (s)", ""] + [f"- {k}: {v}" for k, v in d["timings"].items()]
        return "\n".join(lines) + "\n"

    def write(self, outdir: str | Path, name: str = "report") -> None:
        outdir = Path(outdir)
        write_json(outdir / f"{name}.json", self.to_json())
        with atomic_file(outdir / f"{name}.md") as fh:
            fh.write(self.to_markdown())


# ---- report.md "Details": nested dicts as tables -----------------------------------------------

def _cell(value: Any) -> str:
    """A value inside a table cell: dicts as `k=v, ...`, lists comma-joined, one line, no pipes."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(f"[{_cell(v)}]" if isinstance(v, (list, tuple)) else _cell(v) for v in value) or "-"
    elif value is None:
        text = "-"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def _examples(name: str, rows: dict) -> list[str]:
    """Rows' `examples` ({rule: [{origin, text, message}]}) as one table of their own."""
    found = [(row, rule, ex) for row, d in rows.items() if isinstance(d, dict) and isinstance(d.get("examples"), dict)
             for rule, exs in d["examples"].items() for ex in exs if isinstance(ex, dict)]
    if not found:
        return []
    keys = list(dict.fromkeys(k for _, _, ex in found for k in ex))
    return [f"Examples ({name}):", ""] + _table(["", "rule", *keys], [[r, rule, *(ex.get(k) for k in keys)]
                                                                      for r, rule, ex in found])


def details_markdown(details: dict, level: int = 3) -> list[str]:
    """Scalars as a key/value table; each nested dict under its own heading, as a table with one
    row per key when its values are dicts sharing their keys (per category, per filter, per eval
    set), else key/value; `examples` sub-dicts get a table of their own."""
    lines: list[str] = []
    flat = {k: v for k, v in details.items() if not isinstance(v, dict) or not v}
    if flat:
        lines += _table(["item", "value"], [[k, v] for k, v in flat.items()])
    for name, value in details.items():
        if name in flat:
            continue
        lines += [f"{'#' * level} {name}", ""]
        rows = {k: v for k, v in value.items() if isinstance(v, dict)}
        if len(rows) == len(value):
            columns = list(dict.fromkeys(c for v in rows.values() for c in v if c != "examples"))
            shared = sum(all(c in v for v in rows.values()) for c in columns)
            if shared >= max(1, len(columns) // 2):
                lines += _table(["", *columns], [[k, *(v.get(c) for c in columns)] for k, v in rows.items()])
                lines += _examples(name, rows)
                continue
        if any(isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) for v in value.values()):
            lines += details_markdown(value, level + 1)
        else:
            lines += _table(["item", "value"], [[k, v] for k, v in value.items()])
    return lines
