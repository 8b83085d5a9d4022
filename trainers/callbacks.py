"""Training metrics the Trainer does not log by itself: tokens/s, trained-token accuracy, buckets.

The meter is fed by every micro-batch and drained at each logging step into the logs that the
TensorBoard callback writes (train/tokens_per_second, train/token_accuracy, train/bucket,
train/category/<name> = share of the samples since the last log). It also keeps, for the whole
launch, what this rank trained on: row and token counts and a fingerprint of the row order, so a
data-parallel run can show that each rank read its own shard in the sampler's order.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter

import torch

from corpuskit.render.tokenize import IGNORE


class TokenMeter:
    def __init__(self, group_names: list[str] | None = None):
        self.group_names = group_names or []
        self._reset()
        self._since = None
        self.run_rows = 0
        self.run_tokens = 0
        self._row_digest = hashlib.sha256()

    def _reset(self) -> None:
        self.tokens = 0
        self.trained = 0
        self.correct = 0
        self.categories: Counter = Counter()
        self.last_group: int | None = None

    @torch.no_grad()
    def update(self, inputs: dict, meta: dict, logits: torch.Tensor | None) -> None:
        if self._since is None:
            self._since = time.perf_counter()
        labels = inputs["labels"]
        if "attention_mask" in inputs:
            self.tokens += int(inputs["attention_mask"].sum())
        else:
            self.tokens += int(meta.get("tokens", labels.numel()))
        target = labels[..., 1:]
        trained = target.ne(IGNORE)
        self.trained += int(trained.sum())
        if logits is not None:
            pred = logits[..., :-1, :].argmax(-1)
            self.correct += int((pred.eq(target) & trained).sum())
        self.categories.update(c or "(none)" for c in meta.get("categories", []))
        rows = meta.get("rows", [])
        self.run_rows += len(rows)
        self.run_tokens += int(meta.get("tokens", 0))
        self._row_digest.update(rows_fingerprint_bytes(rows))
        if meta.get("groups"):
            self.last_group = meta["groups"][-1]

    def drain(self, device: torch.device | None = None) -> dict[str, float]:
        """Metrics since the last drain, summed over all ranks when distributed."""
        now = time.perf_counter()
        elapsed = max(now - (self._since or now), 1e-9)
        counts = torch.tensor([self.tokens, self.trained, self.correct], dtype=torch.float64)
        last_group, categories = self.last_group, self.categories
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.to(device) if device is not None else counts
            torch.distributed.all_reduce(counts)
            counts = counts.cpu()
            # groups are trained in order, so the latest group of the global batch is the largest index
            group = torch.tensor([-1 if last_group is None else last_group], dtype=torch.float64)
            group = group.to(device) if device is not None else group
            torch.distributed.all_reduce(group, op=torch.distributed.ReduceOp.MAX)
            last_group = None if group.item() < 0 else int(group.item())
            per_rank = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(per_rank, dict(categories))
            categories = sum((Counter(c) for c in per_rank), Counter())
        tokens, trained, correct = counts.tolist()
        out = {"tokens_per_second": round(tokens / elapsed, 2), "tokens": tokens}
        if trained:
            out["token_accuracy"] = round(correct / trained, 6)
        if last_group is not None:
            out["bucket"] = last_group
        total = sum(categories.values())
        if any(name != "(none)" for name in categories):  # the data has categories at all
            for name, n in sorted(categories.items()):
                out[f"category/{name}"] = round(n / total, 4)
        self._reset()
        self._since = now
        return out

    def run_summary(self) -> dict:
        """What this rank trained on since launch (compare with `rows_fingerprint` of the rows)."""
        return {"rows": self.run_rows, "tokens": self.run_tokens, "rows_sha256": self._row_digest.hexdigest()}


def rows_fingerprint_bytes(rows) -> bytes:
    return b"".join(b"%d\n" % int(r) for r in rows)


def rows_fingerprint(rows) -> str:
    """sha256 of the row indices in training order, as TokenMeter.run_summary reports it."""
    return hashlib.sha256(rows_fingerprint_bytes(rows)).hexdigest()
