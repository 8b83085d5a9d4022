"""The clean stage in two streaming passes over the input.

Pass 1 normalises and filters each record and computes its exact-dedup key and MinHash signature
(clean's steps, steps.py, run by the engine over input splits: local processes with `--workers` or
Ray tasks with `--engine ray`, results in input order), then feeds the exact index and the LSH in
input order in this process, so results never depend on the engine, the workers or the splits. The
outcome of each record goes to a small events file inside the temp output folder. If some LSH
pairs were borderline (estimate within 3 standard errors of the threshold), a verify pass re-reads
the input and decides them on exact Jaccard. The write pass re-reads the input and writes kept
records (normalised again: texts are never held in memory) to clean.jsonl and every dropped record
to rejected.jsonl, both in input order. Near-duplicates are only decided at the end because a
later record can join two clusters; their state is an in-memory index for small inputs and sorted
runs on disk otherwise (`neardup_disk.NearDup` chooses, within `--memory`; same output).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from corpuskit.clean.config import CleanConfig
from corpuskit.clean.exact import ExactIndex
from corpuskit.clean.minhash import FormBatch, MinHashParams, batch_token_ids, ngram_hashes
from corpuskit.clean.neardup_disk import MemoryBudget, NearDup, TooManyRecords
from corpuskit.clean.steps import CleanSteps, FilterReject, normalized as normalize_record, run_clean_task
from corpuskit.cli_util import progress
from corpuskit.engine import make_executor
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import Split, auto_split_bytes
from corpuskit.engine.tasks import RecordTask, record_tasks
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, InputError, RawItem, convert_value, expand_inputs, read_raw
from corpuskit.outputs import atomic_dir, dumps
from corpuskit.records import Origin, Record, Rejected
from corpuskit.report import StageReport

DEDUP_METHODS = ("exact", "minhash")
CHUNK = 256  # borderline records whose shingles are hashed at once
# default --split-size cap: a task's records are held until the driver indexes them, and small
# splits keep peak memory near that of a record stream (measured: 4M splits +60 MB, 256K +0-30 MB)
MAX_AUTO_SPLIT_BYTES = 256 << 10
_CANDIDATE = "C\n"  # events-file line for a record that reached dedup


@dataclass
class CleanOptions:
    config: CleanConfig
    dedup: tuple[str, ...] = DEDUP_METHODS
    minhash: MinHashParams = field(default_factory=MinHashParams)
    workers: int = 1
    fmt: str = "auto"
    encoding: str = "utf-8"
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    memory: MemoryBudget = field(default_factory=MemoryBudget)  # near-dup: in memory while it fits, else disk
    tmp_dir: str | None = None  # near-dup scratch folder (default: beside the output)
    engine: str = "local"  # where the per-record steps run (corpuskit.engine): local processes or Ray
    ray_address: str | None = None
    split_bytes: int | None = None  # byte ranges .jsonl/.txt inputs are read in (None: sized for the workers)




# ---- the stage -----------------------------------------------------------------------------

NO_CATEGORY, UNREADABLE = "(none)", "(unreadable)"
EXAMPLES_PER_RULE = 3
EXCERPT_CHARS = 80


class _ByCategory:
    """input, kept and rejected per reason for each category: a user sees at once that, say,
    news keeps 99% and chats lose their short turns. Input that did not parse has no category."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def _row(self, category: str | None) -> dict:
        return self.rows.setdefault(category or NO_CATEGORY, {"input": 0, "kept": 0, "rejected": Counter()})

    def keep(self, category: str | None) -> None:
        row = self._row(category)
        row["input"] += 1
        row["kept"] += 1

    def reject(self, category: str | None, reason: str) -> None:
        row = self._row(category)
        row["input"] += 1
        row["rejected"][reason] += 1

    def to_json(self) -> dict:
        return {cat: {"input": r["input"], "kept": r["kept"], "kept_share": round(r["kept"] / r["input"], 4),
                      "rejected": dict(sorted(r["rejected"].items()))} for cat, r in sorted(self.rows.items())}


def _excerpt(rec: Record) -> str:
    text = " ".join(rec.content_text().split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"

class _Origins:
    """(file, line) of every record that reached dedup, in 6 bytes each."""

    def __init__(self, files: list[str]):
        self.files = files
        self._file_id = {f: i for i, f in enumerate(files)}
        self.file = array("H")
        self.line = array("I")

    def add(self, origin: Origin) -> None:
        self.file.append(self._file_id[origin.path])
        self.line.append(origin.line)

    def __getitem__(self, i: int) -> Origin:
        return Origin(self.files[self.file[i]], self.line[i])

    def __len__(self) -> int:
        return len(self.line)


def clean(inputs: list[str], outdir: str | os.PathLike, opts: CleanOptions) -> StageReport:
    files = expand_inputs(inputs)
    if len(files) > 65535:
        raise InputError(files[0], f"{len(files)} input files; clean handles at most 65535 per run")
    report = StageReport("clean", inputs=files)
    mh = opts.minhash
    report.details["config"] = opts.config.describe()
    dedup_info: dict = {"methods": list(opts.dedup)}
    if "minhash" in opts.dedup:
        dedup_info.update(threshold=mh.threshold, num_perm=mh.num_perm, ngram=mh.ngram, shingle=mh.shingle, seed=mh.seed,
                          lsh_index=mh.lsh_index)
    with atomic_dir(outdir, "clean") as tmp, contextlib.ExitStack() as stack:
        events_path = tmp / ".events"
        origins = _Origins(files)
        index = None
        if "minhash" in opts.dedup:
            if opts.tmp_dir:
                Path(opts.tmp_dir).mkdir(parents=True, exist_ok=True)
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".neardup.", dir=opts.tmp_dir or tmp)))
            # besides the near-dup state, each record that reaches dedup holds an origin (6 bytes)
            # and, with exact dedup, one dict entry (~120 bytes)
            index = NearDup(mh, scratch, opts.memory, other_per_record=6 + (120 if "exact" in opts.dedup else 0),
                            engine=opts.engine, ray_address=opts.ray_address)
            stack.callback(index.close)
        by_category = _ByCategory()
        t0 = time.perf_counter()
        try:
            counts = _pass_one(files, opts, report, events_path, origins, index, by_category)
        except TooManyRecords as e:
            raise InputError(files[-1], str(e)) from e
        report.time("pass1", time.perf_counter() - t0)
        if index is not None:
            t0 = time.perf_counter()
            index.finish()
            report.time("neardup_join", time.perf_counter() - t0)
            t0 = time.perf_counter()
            dedup_info.update(_resolve_borderline(files, opts, report, events_path, origins, index))
            report.time("verify_pass", time.perf_counter() - t0)
            b, r = index.bands_rows
            dedup_info.update(bands=b, rows=r, margin=round(index.margin, 4), **index.stats, **index.describe())
        t0 = time.perf_counter()
        _pass_two(files, opts, report, events_path, origins, index, tmp, by_category)
        report.time("pass2", time.perf_counter() - t0)
        events_path.unlink()
        report.details["dedup"] = dedup_info
        report.details.update(counts)
        report.details["by_category"] = by_category.to_json()
        stack.close()  # the near-dup scratch folder goes before the output is published
        report.write(tmp)
    return report


def _prepared(items: Iterable[Record | Rejected | RawItem], opts: CleanOptions) -> Iterator[tuple]:
    """(chunk, outcomes, signatures, band keys) per CHUNK items of a stream the caller reads itself,
    through the same steps on the engine; at most a few chunks in flight, so memory stays bounded
    however long the stream is."""
    build = CleanSteps(opts.config, opts.fmt, "exact" in opts.dedup, opts.minhash if "minhash" in opts.dedup else None)
    with make_executor(opts.engine, opts.workers, opts.ray_address) as ex:
        tasks = (RecordTask(build, Split("<stream>"), tuple(chunk), opts.encoding, opts.max_record_bytes)
                 for chunk in _chunks(items, CHUNK))
        for res in ex.map(run_clean_task, tasks):
            for batch in res.batches:
                yield batch


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _split_batches(files: list[str], opts: CleanOptions, report: StageReport) -> Iterator[tuple]:
    """(items, outcomes, signatures, band keys) per batch in input order, from clean's steps run on
    the engine over input splits; origins renumbered to their file's own lines. Never depends on
    the engine, the workers or the split size."""
    build = CleanSteps(opts.config, opts.fmt, "exact" in opts.dedup, opts.minhash if "minhash" in opts.dedup else None)
    numbers = LineNumbers()
    with make_executor(opts.engine, opts.workers, opts.ray_address) as ex:
        split_bytes = opts.split_bytes or min(MAX_AUTO_SPLIT_BYTES, auto_split_bytes(files, ex.workers))
        tasks = record_tasks(files, build, opts.encoding, opts.max_record_bytes, split_bytes, ex.workers)
        for res in progress(ex.map(run_clean_task, tasks), "clean: filter + signatures", unit="task"):
            for name, secs in res.timings.items():
                report.time(name, secs)
            off = numbers.offset(res.split, res.n_lines)
            for batch in res.batches:
                if off:
                    for item in batch.items:
                        item.origin = Origin(item.origin.path, item.origin.line + off)
                yield batch


def _pass_one(files, opts: CleanOptions, report: StageReport, events_path: Path,
              origins: _Origins, index: NearDup | None, by_category: _ByCategory) -> dict:
    exact = ExactIndex() if "exact" in opts.dedup else None
    by_filter: dict[str, Counter] = {f.name: Counter() for f in opts.config.filters}
    if opts.config.normalize.active:
        by_filter = {"normalize": Counter(), **by_filter}
    checked: Counter = Counter()
    normalized: Counter = Counter()
    scripts: Counter = Counter()
    examples: dict[str, dict[str, list]] = {name: {} for name in by_filter}
    batches = _split_batches(files, opts, report)
    with open(events_path, "w", encoding="utf-8", newline="\n") as events, contextlib.closing(batches):
        for chunk, results, sigs, keys in batches:  # closing: a failure here stops the workers at once
            t = time.perf_counter()
            rows = []  # signature rows of this chunk's records that reach near-dup, in order
            for item, res in zip(chunk, results):
                if isinstance(item, Rejected):
                    by_category.reject(UNREADABLE, item.reason)
                    _reject(report, events, item)
                    continue
                normalized.update(res.steps)
                if res.script:
                    scripts[res.script] += 1
                if "normalize" in by_filter:
                    checked["normalize"] += 1
                rejected_by = res.filter if isinstance(res, FilterReject) else None
                if rejected_by != "normalize":
                    for f in opts.config.filters:
                        if item.kind in f.apply_to:
                            checked[f.name] += 1
                            if f.name == rejected_by:
                                break
                if rejected_by is not None:
                    by_filter[rejected_by][res.rule] += 1
                    shown = examples[rejected_by].setdefault(res.rule, [])
                    if len(shown) < EXAMPLES_PER_RULE:
                        shown.append({"origin": str(item.origin), "text": _excerpt(item), "message": res.message})
                    reason = f"{rejected_by}.{res.rule}"
                    by_category.reject(item.category, reason)
                    _reject(report, events, Rejected(reason, item.origin, res.message,
                                                     raw=item.to_json(), detail={"filter": rejected_by}))
                    continue
                cand = len(origins)
                if exact is not None:
                    first = exact.first_or_add(res.key, cand)
                    if first is not None:
                        where = origins[first]
                        by_category.reject(item.category, "exact_duplicate")
                        _reject(report, events, Rejected(
                            "exact_duplicate", item.origin, f"same normalised text as {where}", raw=item.to_json(),
                            detail={"duplicate_of": where.to_json(), "similarity": 1.0}))
                        continue
                origins.add(item.origin)
                rows.append(res.row)
                events.write(_CANDIDATE)
            if index is not None and rows:
                index.add_batch(sigs[rows], keys[rows])
            report.time("dedup_index", time.perf_counter() - t)
    return {"normalized": dict(sorted(normalized.items())),
            "scripts": dict(sorted(scripts.items())),
            "filters": {name: {"checked": checked[name], "rejected": sum(c.values()), "by_rule": dict(sorted(c.items())),
                               "examples": dict(sorted(examples[name].items()))}
                        for name, c in by_filter.items()}}


def _reject(report: StageReport, events, rej: Rejected) -> None:
    report.reject(rej)
    events.write(dumps(rej.to_json()) + "\n")


def _replay(files, opts: CleanOptions, events_path: Path, origins: _Origins, desc: str, total: int,
            convert: Callable[[int], bool] | None = None) -> Iterator[tuple[str, Record | RawItem, int | None]]:
    """Re-read the input in step with the events of pass 1: (event, record, candidate id or None).
    `convert`: which candidates are wanted as records (the others stay raw items, which saves
    converting them); by default all. Fails with a clear error if the input changed between the
    passes."""
    items = iter(progress(read_raw(files, opts.encoding, opts.max_record_bytes), desc, total=total))
    cand = 0
    with open(events_path, encoding="utf-8") as events:
        for event, item in zip(events, items):
            if event != _CANDIDATE:
                was = json.loads(event)["origin"]
                if (was["path"], was["line"]) != (item.origin.path, item.origin.line):
                    raise InputError(item.origin.path, "input changed while clean was running", item.origin.line)
                yield event, item, None
                continue
            rec = item
            if item.error is None and (convert is None or convert(cand)):
                rec = convert_value(item.value, item.origin, opts.fmt)
            if item.error is not None or isinstance(rec, Rejected) or item.origin != origins[cand]:
                raise InputError(item.origin.path, "input changed while clean was running", item.origin.line)
            yield event, rec, cand
            cand += 1
        leftover = next(events, None) or next(items, None)
    if cand != len(origins) or leftover is not None:
        raise InputError(files[-1], "input changed while clean was running (record count differs on the second read)")


def _resolve_borderline(files, opts: CleanOptions, report: StageReport, events_path: Path, origins: _Origins,
                        index: NearDup) -> dict:
    """Extra pass, only when some LSH pairs were too close to the threshold to decide on the
    estimate: re-read those records and compare their exact shingle sets. Only those records are
    converted and normalised; their shingles are hashed a chunk at a time, fed in input order."""
    resolver = index.resolver()
    if not resolver.needed:
        return {"verify_pass": False}
    mh = opts.minhash
    last = resolver.last_needed
    pending: list[tuple[int, str]] = []

    def feed() -> None:
        hashes, off = ngram_hashes(*batch_token_ids(FormBatch([t for _, t in pending]), mh.shingle), mh.ngram)
        top = (hashes >> np.uint64(32)).astype(np.uint32)  # the values `shingle_hashes` gives
        for k, (cand, _) in enumerate(pending):
            resolver.feed(cand, np.unique(top[off[k]:off[k + 1]]))
        pending.clear()

    replay = _replay(files, opts, events_path, origins, "clean: verify borderline pairs", report.input + len(origins),
                     convert=resolver.wants)
    with contextlib.closing(replay):
        for _, item, cand in replay:
            if cand is not None and resolver.wants(cand):
                pending.append((cand, normalize_record(item, opts.config.normalize)[0].dedup_text()))
                if len(pending) >= CHUNK or cand >= last:
                    feed()
                if cand >= last:
                    break  # the write pass re-reads (and re-checks) the whole input anyway
    if pending:
        feed()
    return {"verify_pass": True, "max_records_held_for_verification": resolver.max_held}


def _pass_two(files, opts: CleanOptions, report: StageReport, events_path: Path, origins: _Origins,
              index: NearDup | None, tmp: Path, by_category: _ByCategory) -> None:
    clusters = set()
    with open(tmp / "clean.jsonl", "w", encoding="utf-8", newline="\n") as out, \
            open(tmp / "rejected.jsonl", "w", encoding="utf-8", newline="\n") as rejected:
        for event, item, cand in _replay(files, opts, events_path, origins, "clean: write", report.input + len(origins)):
            if cand is None:
                rejected.write(event)
                continue
            root = index.find(cand) if index is not None else cand
            if root == cand:
                report.keep()
                by_category.keep(item.category)
                out.write(dumps(normalize_record(item, opts.config.normalize)[0].to_json()) + "\n")
            else:
                clusters.add(root)
                kept, sim = origins[root], round(index.similarity(cand, root), 4)
                rej = Rejected("near_duplicate", item.origin,
                               f"near-duplicate of {kept} (estimated Jaccard {sim:.3f})", raw=item.to_json(),
                               detail={"duplicate_of": kept.to_json(), "similarity": sim})
                report.reject(rej)
                by_category.reject(item.category, "near_duplicate")
                rejected.write(dumps(rej.to_json()) + "\n")
    report.details["near_duplicate_clusters"] = len(clusters)
