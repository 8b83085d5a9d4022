"""The clean stage in two streaming passes over the input.

Pass 1 normalises and filters each record and computes its exact-dedup key and MinHash signature
(clean's steps, steps.py, run by the engine over input splits: local processes with `--workers` or
Ray tasks with `--engine ray`, results in input order), then feeds the exact index and the LSH in
input order in this process, so results never depend on the engine, the workers or the splits. The
outcome of each record goes to a small events file inside the temp output folder. If some LSH
pairs were borderline (estimate within 3 standard errors of the threshold), a verify pass re-reads
those records on the engine (verify.py) and decides them here on exact Jaccard. The write pass
re-reads the input on the engine too (write.py: same splits as pass 1; kept records are normalised
again there, so texts are never held in memory) and this process writes clean.jsonl and every
dropped record to rejected.jsonl, both in input order. Near-duplicates are only decided at the end because a
later record can join two clusters; their state is an in-memory index for small inputs and sorted
runs on disk otherwise (`neardup_disk.NearDup` chooses, within `--memory`; same output).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from corpuskit.clean.config import CleanConfig
from corpuskit.clean.exact import ExactIndex
from corpuskit.clean.minhash import MinHashParams
from corpuskit.clean.neardup_disk import MemoryBudget, NearDup, TooManyRecords
from corpuskit.clean.steps import CleanSteps, FilterReject, run_clean_task
from corpuskit.clean.verify import VerifyPass, run_verify_job
from corpuskit.clean.write import CANDIDATE, SplitPlan, WritePass, run_write_job
from corpuskit.cli_util import progress
from corpuskit.engine import make_executor
from corpuskit.engine.executor import Executor
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import auto_split_bytes
from corpuskit.engine.tasks import record_tasks
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, InputError, expand_inputs
from corpuskit.outputs import atomic_dir, dumps
from corpuskit.records import Origin, Record, Rejected
from corpuskit.report import StageReport

DEDUP_METHODS = ("exact", "minhash")
# default --split-size cap: a task's records are held until the driver indexes them, and small
# splits keep peak memory near that of a record stream (measured: 4M splits +60 MB, 256K +0-30 MB)
MAX_AUTO_SPLIT_BYTES = 256 << 10


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

    def keep(self, category: str | None, n: int = 1) -> None:
        row = self._row(category)
        row["input"] += n
        row["kept"] += n

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
        # one executor for every pass: one pool (forked while this process is small) or one Ray session
        ex = stack.enter_context(make_executor(opts.engine, opts.workers, opts.ray_address))
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
                            on_ray=ex.name == "ray")
            stack.callback(index.close)
        by_category = _ByCategory()
        plan = SplitPlan()
        t0 = time.perf_counter()
        try:
            counts = _pass_one(ex, files, opts, report, events_path, origins, index, by_category, plan)
        except TooManyRecords as e:
            raise InputError(files[-1], str(e)) from e
        report.time("pass1", time.perf_counter() - t0)
        if index is not None:
            t0 = time.perf_counter()
            index.finish()
            report.time("neardup_join", time.perf_counter() - t0)
            t0 = time.perf_counter()
            dedup_info.update(_resolve_borderline(ex, files, opts, report, events_path, origins, index, plan))
            report.time("verify_pass", time.perf_counter() - t0)
            b, r = index.bands_rows
            dedup_info.update(bands=b, rows=r, margin=round(index.margin, 4), **index.stats, **index.describe())
        t0 = time.perf_counter()
        _pass_two(ex, files, opts, report, events_path, origins, index, tmp, by_category, plan)
        report.time("pass2", time.perf_counter() - t0)
        events_path.unlink()
        report.details["dedup"] = dedup_info
        report.details.update(counts)
        report.details["by_category"] = by_category.to_json()
        stack.close()  # the near-dup scratch folder goes before the output is published
        report.write(tmp)
    return report


def _split_batches(ex: Executor, files: list[str], opts: CleanOptions, report: StageReport,
                   plan: SplitPlan) -> Iterator[tuple]:
    """(items, outcomes, signatures, band keys) per batch in input order, from clean's steps run on
    the engine over input splits; origins renumbered to their file's own lines. Never depends on
    the engine, the workers or the split size."""
    build = CleanSteps(opts.config, opts.fmt, "exact" in opts.dedup, opts.minhash if "minhash" in opts.dedup else None)
    numbers = LineNumbers()
    split_bytes = opts.split_bytes or min(MAX_AUTO_SPLIT_BYTES, auto_split_bytes(files, ex.workers))
    plan.split_bytes = split_bytes
    tasks = record_tasks(files, build, opts.encoding, opts.max_record_bytes, split_bytes, ex.workers)
    results = ex.map(run_clean_task, tasks)
    with contextlib.closing(results):  # closed early (a failure downstream): no more tasks start
        for res in progress(results, "clean: filter + signatures", unit="task"):
            for name, secs in res.timings.items():
                report.time(name, secs)
            off = numbers.offset(res.split, res.n_lines)
            plan.add(sum(len(b.items) for b in res.batches), off)
            for batch in res.batches:
                if off:
                    for item in batch.items:
                        item.origin = Origin(item.origin.path, item.origin.line + off)
                yield batch


def _pass_one(ex: Executor, files, opts: CleanOptions, report: StageReport, events_path: Path,
              origins: _Origins, index: NearDup | None, by_category: _ByCategory, plan: SplitPlan) -> dict:
    exact = ExactIndex() if "exact" in opts.dedup else None
    by_filter: dict[str, Counter] = {f.name: Counter() for f in opts.config.filters}
    if opts.config.normalize.active:
        by_filter = {"normalize": Counter(), **by_filter}
    checked: Counter = Counter()
    normalized: Counter = Counter()
    scripts: Counter = Counter()
    examples: dict[str, dict[str, list]] = {name: {} for name in by_filter}
    batches = _split_batches(ex, files, opts, report, plan)
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
                events.write(CANDIDATE)  # a record that reached dedup
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


def _resolve_borderline(ex: Executor, files, opts: CleanOptions, report: StageReport, events_path: Path, origins: _Origins,
                        index: NearDup, plan: SplitPlan) -> dict:
    """Extra pass, only when some LSH pairs were too close to the threshold to decide on the
    estimate: the records of those pairs are re-read and shingle-hashed on the engine (verify.py)
    and their exact shingle sets compared here, in input order."""
    resolver = index.resolver()
    if not resolver.needed:
        return {"verify_pass": False}
    mh = opts.minhash
    verify = VerifyPass(events_path, origins, resolver, opts.fmt, opts.config.normalize, mh.shingle, mh.ngram)
    tasks = record_tasks(files, None, opts.encoding, opts.max_record_bytes, plan.split_bytes, ex.workers)
    results = ex.map(run_verify_job, verify.jobs(tasks, plan))
    with contextlib.closing(results):
        for hashes in progress(results, "clean: verify borderline pairs", unit="task"):
            verify.feed(hashes)
    return {"verify_pass": True, "max_records_held_for_verification": resolver.max_held}


def _pass_two(ex: Executor, files, opts: CleanOptions, report: StageReport, events_path: Path, origins: _Origins,
              index: NearDup | None, tmp: Path, by_category: _ByCategory, plan: SplitPlan) -> None:
    """The write pass on the engine (write.py): splits as in pass 1, results in input order."""
    writer = WritePass(events_path, origins, index, opts.fmt, opts.config.normalize)
    with open(tmp / "clean.jsonl", "wb") as out, open(tmp / "rejected.jsonl", "wb") as rejected:
        tasks = record_tasks(files, None, opts.encoding, opts.max_record_bytes, plan.split_bytes, ex.workers)
        results = ex.map(run_write_job, writer.jobs(tasks, plan))
        for res in progress(results, "clean: write", total=len(plan), unit="task"):
            writer.write(res, out, rejected, report, by_category)
    report.details["near_duplicate_clusters"] = len(writer.clusters)
