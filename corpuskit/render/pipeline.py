"""`render` as a streaming pipeline on the engine: workers read input splits and render+tokenize
them (render.steps), the driver writes rows in input order. Output never depends on the engine,
--workers or --split-size: each piece is processed independently and written back in order.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from corpuskit.engine import make_executor
from corpuskit.engine.items import ItemResult, run_item_tasks
from corpuskit.engine.tasks import record_tasks
from corpuskit.ingest import expand_inputs, iter_records
from corpuskit.outputs import atomic_dir, write_json
from corpuskit.records import PRETRAIN, Rejected
from corpuskit.report import StageReport
from corpuskit.render.dataset_io import RENDER_FEATURES, write_dataset
from corpuskit.render.templates import ChatTemplate
from corpuskit.render.tokenize import IGNORE, RenderOptions, Renderer
from corpuskit.render.steps import RenderStep, RenderSteps, cached_tokenizer
from corpuskit.render.tokenizer_dir import TokenizerDir, tokenizer_fingerprint

FORMAT = "corpuskit.render/1"


def length_bucket(n: int) -> str:
    edge = 64
    while edge < n:
        edge *= 2
    return f"<={edge}"


@dataclass
class RenderStats:
    rows: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    untrained_blocks: int = 0  # --group-texts blocks with no trained token (inside a long source): not written
    untrained_block_tokens: int = 0
    lengths: Counter = field(default_factory=Counter)

    def add(self, ids: np.ndarray, labels: np.ndarray) -> None:
        self.rows += 1
        self.tokens += len(ids)
        self.trained_tokens += int(np.count_nonzero(labels != IGNORE))
        self.lengths[length_bucket(len(ids))] += 1

    def histogram(self) -> dict[str, int]:
        return dict(sorted(self.lengths.items(), key=lambda kv: int(kv[0][2:])))


def _row_dict(ids, labels, origin, category) -> dict:
    return {"input_ids": ids, "labels": labels, "origin": origin, "category": category}


def _kept(items: Iterable[list], report: StageReport) -> Iterator:
    """Each kept render result, in order; rejects are counted in the report as they pass."""
    for results in items:
        for r in results:
            if isinstance(r, Rejected):
                report.reject(r)
            else:
                report.keep()
                yield r


def rendered_rows(items: Iterable[list], report: StageReport, stats: RenderStats) -> Iterator[dict]:
    for r in _kept(items, report):
        stats.truncated += r.truncated
        stats.add(r.input_ids, r.labels)
        yield _row_dict(r.input_ids, r.labels, r.origin, r.category)


def grouped_rows(items: Iterable[list], block: int, report: StageReport, stats: RenderStats) -> Iterator[dict]:
    """Concatenate rows of one input file into `block`-token rows; the remainder is a last, shorter row.

    A block's origin and category are those of the record it starts in; blocks never cross files
    (a file is a pack group). A block with no trained token (it lies inside the masked source of
    {source,target} records) is counted, not written: it would give a NaN loss on its own and
    nothing to learn packed.
    """
    ids_buf: list[np.ndarray] = []
    lab_buf: list[np.ndarray] = []
    starts: list[tuple[int, str, str]] = []  # (offset in buffer, origin, category) of each record
    size = 0
    current_file = None

    def flush(final: bool) -> Iterator[dict]:
        nonlocal ids_buf, lab_buf, starts, size
        ids, labels = np.concatenate(ids_buf), np.concatenate(lab_buf)
        pos = 0
        while len(ids) - pos >= block or (final and pos < len(ids)):
            n = min(block, len(ids) - pos)
            _, origin, category = [s for s in starts if s[0] <= pos][-1]
            block_labels = labels[pos:pos + n]
            if np.any(block_labels != IGNORE):
                stats.add(ids[pos:pos + n], block_labels)
                yield _row_dict(ids[pos:pos + n], block_labels, origin, category)
            else:
                stats.untrained_blocks += 1
                stats.untrained_block_tokens += n
            pos += n
        if pos < len(ids):
            owner = [s for s in starts if s[0] <= pos][-1]
            starts = [(0, owner[1], owner[2])] + [(o - pos, g, c) for o, g, c in starts if o > pos]
            ids_buf, lab_buf, size = [ids[pos:]], [labels[pos:]], len(ids) - pos
        else:
            ids_buf, lab_buf, starts, size = [], [], [], 0

    for r in _kept(items, report):
        file = r.origin.rsplit(":", 1)[0]
        if current_file is not None and file != current_file and size:
            yield from flush(final=True)
        current_file = file
        starts.append((size, r.origin, r.category))
        ids_buf.append(r.input_ids)
        lab_buf.append(r.labels)
        size += len(r.input_ids)
        if size >= block:
            yield from flush(final=False)
    if size:
        yield from flush(final=True)


def task_items(result: ItemResult) -> list:
    """A task's rejects and rows, row origins renumbered to their file's own lines (a byte-range
    split numbers its lines from 1; the runner knows how many came before)."""
    if result.line_offset:
        for row in result.kept:
            path, line = row.origin.rsplit(":", 1)
            row.origin = f"{path}:{int(line) + result.line_offset}"
    return [*result.rejected, *result.kept]


def engine_results(ex, files: list[str], tok: TokenizerDir, template: ChatTemplate | None, opts, to: str | None,
                   fmt: str, encoding: str, max_record_bytes: int, split_bytes: int | None,
                   progress: Callable) -> Iterator[list]:
    """Each task's rejects and rows (task_items), in input order, from executor `ex`."""
    fingerprint = tokenizer_fingerprint(str(tok.path))
    cached_tokenizer(str(tok.path), fingerprint, tok)  # tasks run in this process reuse it
    build = RenderSteps(fmt, to, RenderStep(str(tok.path), fingerprint, template, opts))
    tasks = record_tasks(files, build, encoding, max_record_bytes, split_bytes, ex.workers)
    return (task_items(r) for r in progress(run_item_tasks(ex, tasks), desc="render"))


def render_corpus(inputs: list[str], outdir: str | Path, tok: TokenizerDir, template: ChatTemplate | None,
                  opts: RenderOptions, workers: int = 1, group_texts: int | None = None, fmt: str = "auto",
                  encoding: str = "utf-8", progress: Callable = lambda it, **kw: it, engine: str = "local",
                  ray_address: str | None = None, split_bytes: int | None = None) -> StageReport:
    """Records are read, rendered and tokenized by the engine's workers (byte ranges of big
    .jsonl/.txt files in parallel); rows are written here in input order, so the dataset never
    depends on the engine, the workers or the split size."""
    files = expand_inputs(inputs)
    report = StageReport("render", inputs=files)
    stats = RenderStats()
    t0 = time.perf_counter()
    with make_executor(engine, workers, ray_address) as ex, atomic_dir(outdir, "render") as tmp:
        results = engine_results(ex, files, tok, template, opts, opts.mode, fmt, encoding, opts.max_record_bytes,
                                 split_bytes, progress)
        rows = (grouped_rows(results, group_texts, report, stats) if group_texts
                else rendered_rows(results, report, stats))
        write_dataset(tmp, RENDER_FEATURES, rows)
        report.time("render", time.perf_counter() - t0)
        report.details.update({
            "mode": opts.mode, "template": template.name if template else None,
            "max_length": opts.max_length, "truncation": opts.truncation,
            "train_on": opts.train_on, "group_texts": group_texts,
            "rows": stats.rows, "truncated": stats.truncated, "tokens": stats.tokens,
            "untrained_blocks_dropped": stats.untrained_blocks,
            "untrained_block_tokens_dropped": stats.untrained_block_tokens,
            "trained_tokens": stats.trained_tokens, "length_histogram": stats.histogram(),
            "workers": workers,
        })
        manifest = {
            "format": FORMAT, "mode": opts.mode, "template": template.name if template else None,
            "max_length": group_texts or opts.max_length, "truncation": opts.truncation,
            "train_on": opts.train_on, "group_texts": group_texts,
            "tokenizer": tok.manifest(), "records": stats.rows, "tokens": stats.tokens,
            "trained_tokens": stats.trained_tokens,
        }
        write_json(tmp / "manifest.json", manifest)
        report.write(tmp)
    # the timing in report.json must not make outputs differ run to run: it lives only in report.*
    return report


def default_truncation(mode: str) -> str:
    return "right" if mode == PRETRAIN else "turns"


def show_samples(paths: list[str], tok: TokenizerDir, template: ChatTemplate | None, opts: RenderOptions,
                 n: int, fmt: str, encoding: str, color: bool, echo: Callable[[str], None]) -> None:
    """Print the first n rendered records with trained tokens marked, for a person to check the masks."""
    renderer = Renderer(tok, template, opts)
    shown = 0
    for rec in iter_records(expand_inputs(paths), fmt, opts.mode, encoding, max_record_bytes=opts.max_record_bytes):
        if shown >= n:
            break
        if isinstance(rec, Rejected):
            echo(f"== {rec.origin}: rejected ({rec.reason}): {rec.message}")
            shown += 1
            continue
        try:
            r = renderer.render_one(rec)
        except Exception as e:  # a record the template refuses: say so, as render would
            echo(f"== {rec.origin}: rejected: {e}")
            shown += 1
            continue
        trained = int(np.count_nonzero(r.labels != IGNORE))
        echo(f"== {rec.origin}: {len(r.ids)} tokens, {trained} trained "
             f"({'green' if color else '[[...]]'} = trained)")
        echo(highlight(r.text, r.offsets, r.labels != IGNORE, color))
        shown += 1


def highlight(text: str, offsets: np.ndarray, trained: np.ndarray, color: bool) -> str:
    on, off = ("\x1b[42;30m", "\x1b[0m") if color else ("[[", "]]")
    parts: list[str] = []
    pos = 0
    inside = False
    for (s, e), t in zip(offsets.tolist(), trained.tolist()):
        if s > pos:  # characters no token claims (normalizer-dropped): shown as untrained
            if inside:
                parts.append(off)
                inside = False
            parts.append(text[pos:s])
            pos = s
        piece = text[max(s, pos):e]
        if t != inside and piece:
            parts.append(on if t else off)
            inside = t
        parts.append(piece)
        pos = max(pos, e)
    if inside:
        parts.append(off)
    parts.append(text[pos:])
    return "".join(parts)

