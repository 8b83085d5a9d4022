"""Streaming statistics: a few counters and a fixed power-of-two histogram per category, so memory
does not depend on corpus size. Tokens are counted in batches through the fast tokenizer's Rust
batch call (on `--workers` threads)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from corpuskit.bucket.spool import record_category
from corpuskit.records import Record, Rejected
from corpuskit.report import StageReport

TokenCounter = Callable[[list[str]], list[int]]
BATCH_CHARS = 1 << 23  # a tokenizer batch holds ~130 bytes per character: bound it by size, not only count


def length_bin(n: int) -> int:
    """Bin 0 holds length 0; bin k holds lengths 2^(k-1) .. 2^k - 1 (1, 2-3, 4-7, 8-15, ...)."""
    return n.bit_length()


def bin_label(k: int) -> str:
    if k <= 1:
        return str(k)
    return f"{1 << (k - 1)}-{(1 << k) - 1}"


@dataclass
class CategoryStats:
    records: int = 0
    chars: int = 0
    tokens: int = 0
    min_chars: int | None = None
    max_chars: int = 0
    chars_hist: Counter = field(default_factory=Counter)
    tokens_hist: Counter = field(default_factory=Counter)

    def add_text(self, n_chars: int) -> None:
        self.records += 1
        self.chars += n_chars
        self.min_chars = n_chars if self.min_chars is None else min(self.min_chars, n_chars)
        self.max_chars = max(self.max_chars, n_chars)
        self.chars_hist[length_bin(n_chars)] += 1

    def add_tokens(self, n_tokens: int) -> None:
        self.tokens += n_tokens
        self.tokens_hist[length_bin(n_tokens)] += 1

    def merge(self, other: "CategoryStats") -> None:
        self.records += other.records
        self.chars += other.chars
        self.tokens += other.tokens
        if other.min_chars is not None:
            self.min_chars = other.min_chars if self.min_chars is None else min(self.min_chars, other.min_chars)
        self.max_chars = max(self.max_chars, other.max_chars)
        self.chars_hist.update(other.chars_hist)
        self.tokens_hist.update(other.tokens_hist)


@dataclass
class CorpusStats:
    report: StageReport
    counted_tokens: bool
    categories: dict[str, CategoryStats] = field(default_factory=dict)

    def total(self) -> CategoryStats:
        out = CategoryStats()
        for s in self.categories.values():
            out.merge(s)
        return out

    def sorted_categories(self) -> list[tuple[str, CategoryStats]]:
        return sorted(self.categories.items())


def collect_stats(records: Iterable[Record | Rejected], report: StageReport, category_field: str = "category",
                  default_category: str = "default", count_tokens: TokenCounter | None = None,
                  batch_size: int = 1000, on_reject: Callable[[Rejected], None] | None = None,
                  category_by_file: bool = False) -> CorpusStats:
    """One pass over `records`; texts are held only for the current tokenizer batch."""
    stats = CorpusStats(report, count_tokens is not None)
    batch_texts: list[str] = []
    batch_cats: list[CategoryStats] = []
    batch_chars = 0

    def flush() -> None:
        nonlocal batch_chars
        for cat, n in zip(batch_cats, count_tokens(batch_texts)):
            cat.add_tokens(n)
        batch_texts.clear()
        batch_cats.clear()
        batch_chars = 0

    for item in records:
        if isinstance(item, Rejected):
            cat = item
        else:
            cat = record_category(item, category_field, default_category, category_by_file)
        if isinstance(cat, Rejected):
            report.reject(cat)
            if on_reject:
                on_reject(cat)
            continue
        report.keep()
        text = item.content_text()
        s = stats.categories.setdefault(cat, CategoryStats())
        s.add_text(len(text))
        if count_tokens is not None:
            batch_texts.append(text)
            batch_cats.append(s)
            batch_chars += len(text)
            if len(batch_texts) >= batch_size or batch_chars >= BATCH_CHARS:
                flush()
    if batch_texts:
        flush()
    return stats


def merge_counts(results: Iterable, report: StageReport, counted_tokens: bool,
                 on_reject: Callable[[Rejected], None] | None = None) -> CorpusStats:
    """The engine's per-record counts (stats.steps.StatsCountStep), task results in input order,
    added up on the driver: the same CorpusStats as collect_stats over the same records."""
    stats = CorpusStats(report, counted_tokens)
    for result in results:
        for rej in result.rejected:
            report.reject(rej)
            if on_reject:
                on_reject(rej)
        report.keep(len(result.kept))
        for cat, n_chars, n_tokens in result.kept:
            s = stats.categories.get(cat)
            if s is None:
                s = stats.categories[cat] = CategoryStats()
            s.add_text(n_chars)
            if counted_tokens:
                s.add_tokens(n_tokens)
    return stats
