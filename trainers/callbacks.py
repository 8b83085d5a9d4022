"""Training metrics the Trainer does not log by itself: tokens/s, trained-token accuracy, buckets.

The meter is fed by every micro-batch and drained at each logging step into the logs that the
TensorBoard callback writes (train/tokens_per_second, train/token_accuracy, train/bucket,
train/category/<name> = share of the samples since the last log).
"""

from __future__ import annotations

import time
from collections import Counter

import torch

from corpuskit.render.tokenize import IGNORE


class TokenMeter:
    def __init__(self, group_names: list[str] | None = None):
        self.group_names = group_names or []
        self._reset()
        self._since = None

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
        if meta.get("groups"):
            self.last_group = meta["groups"][-1]

    def drain(self, device: torch.device | None = None) -> dict[str, float]:
        """Metrics since the last drain, summed over all ranks when distributed."""
        now = time.perf_counter()
        elapsed = max(now - (self._since or now), 1e-9)
        counts = torch.tensor([self.tokens, self.trained, self.correct], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.to(device) if device is not None else counts
            torch.distributed.all_reduce(counts)
            counts = counts.cpu()
        tokens, trained, correct = counts.tolist()
        out = {"tokens_per_second": round(tokens / elapsed, 2), "tokens": tokens}
        if trained:
            out["token_accuracy"] = round(correct / trained, 6)
        if self.last_group is not None:
            out["bucket"] = self.last_group
        total = sum(self.categories.values())
        if any(name != "(none)" for name in self.categories):  # the data has categories at all
            for name, n in sorted(self.categories.items()):
                out[f"category/{name}"] = round(n / total, 4)
        self._reset()
        self._since = now
        return out
