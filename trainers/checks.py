"""Pre-flight checks: everything that would waste a GPU-hour or crash at step one is caught here.

Each check compares two things the user gave (data vs tokenizer, data vs model) and says which
file disagrees and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc

from corpuskit.render.tokenize import IGNORE
from corpuskit.render.tokenizer_dir import sha256_file
from trainers.errors import TrainError


class PreflightError(TrainError):
    """One or more problems found before training; the message lists them all."""


@dataclass
class DataStats:
    rows: int
    tokens: int
    trained_tokens: int
    longest_row: int
    max_token_id: int
    min_token_id: int


def data_stats(table) -> DataStats:
    """Scan the packed dataset's Arrow columns without turning rows into Python objects."""
    data = table.data
    ids = pc.list_flatten(data.column("input_ids"))
    labels = pc.list_flatten(data.column("labels"))
    lengths = pc.list_value_length(data.column("input_ids"))
    minmax = pc.min_max(ids)
    return DataStats(rows=len(table), tokens=len(ids),
                     trained_tokens=int(pc.sum(pc.not_equal(labels, IGNORE)).as_py() or 0),
                     longest_row=int(pc.max(lengths).as_py() or 0),
                     max_token_id=int(minmax["max"].as_py() if len(ids) else -1),
                     min_token_id=int(minmax["min"].as_py() if len(ids) else 0))


def tokenizer_sha256(tokenizer_dir: str | Path) -> str | None:
    path = Path(tokenizer_dir) / "tokenizer.json"
    return sha256_file(path) if path.is_file() else None


@dataclass
class Preflight:
    pdir: str
    tokenizer_dir: str
    problems: list[str] = field(default_factory=list)

    def check_tokenizer(self, manifest: dict, tokenizer) -> None:
        want = manifest["tokenizer"]
        where = f"{self.pdir}/manifest.json"
        if want.get("vocab_size") != len(tokenizer):
            self.problems.append(f"tokenizer mismatch: {where} was made with a {want.get('vocab_size')}-piece tokenizer, "
                                 f"{self.tokenizer_dir} has {len(tokenizer)} pieces")
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if key in want and want[key] != getattr(tokenizer, key):
                self.problems.append(f"tokenizer mismatch: {key} is {want[key]} in {where} but "
                                     f"{getattr(tokenizer, key)} in {self.tokenizer_dir}")
        sha = tokenizer_sha256(self.tokenizer_dir)
        if want.get("sha256") and sha and want["sha256"] != sha:
            self.problems.append(f"tokenizer mismatch: {self.tokenizer_dir}/tokenizer.json sha256 {sha[:12]}... differs "
                                 f"from {want['sha256'][:12]}... recorded in {where}; pass the tokenizer the data was "
                                 "rendered with")

    def check_data(self, stats: DataStats, vocab_rows: int) -> None:
        if stats.rows == 0:
            self.problems.append(f"{self.pdir}: no packed sequences to train on")
        elif stats.trained_tokens == 0:
            self.problems.append(f"{self.pdir}: all labels are masked (-100): nothing would be trained; "
                                 "check the render template's training roles")
        if stats.max_token_id >= vocab_rows or stats.min_token_id < 0:
            self.problems.append(f"{self.pdir}: token ids span {stats.min_token_id}..{stats.max_token_id} but the "
                                 f"tokenizer/model have {vocab_rows} rows")

    def check_model(self, model_config, seq_len: int, stats: DataStats, model_arg: str) -> None:
        limit = getattr(model_config, "max_position_embeddings", None)
        longest = max(seq_len, stats.longest_row)
        if limit is not None and longest > limit:
            self.problems.append(f"sequence length {longest} (pack --seq-len) is above the model's "
                                 f"max_position_embeddings {limit} ({model_arg}); re-pack with --seq-len <= {limit}")

    def check_mode(self, manifest: dict, command: str) -> None:
        mode = manifest.get("render", {}).get("mode")
        if mode and mode != command:
            self.problems.append(f"{self.pdir} holds {mode} data (render mode) but this is `trainers {command}`; "
                                 f"use `trainers {mode}`")

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)

    def raise_if_any(self) -> None:
        if self.problems:
            raise PreflightError("; ".join(self.problems) if len(self.problems) == 1 else
                                 "pre-flight checks failed:\n  - " + "\n  - ".join(self.problems))
