"""clean's per-record work as steps (corpuskit.step), run by any executor over input splits.

A record's fate as far as it can be decided alone: read it, normalise it, run the filters, compute
its exact-dedup key and MinHash signature with band keys. Dedup itself is global (a later record can
join two clusters) and stays on the driver (pipeline.py). Every step passes `Candidate`s, one per
input item; a rejected candidate leaves with its verdict, and `run_clean_task` puts them back in
input order, so the driver sees what one process would have seen. Adding a filter means one class
and an entry in `filters.FILTERS`; adding a per-record step means one class registered here and
listed in `CleanSteps`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, NamedTuple

import numpy as np

from corpuskit.clean.config import CleanConfig
from corpuskit.clean.doc import Doc
from corpuskit.clean.exact import exact_key_of_form
from corpuskit.clean.minhash import FormBatch, MinHashParams, Signer, band_key_matrix, choose_bands
from corpuskit.clean.normalize import NormalizeConfig, normalize_steps
from corpuskit.engine.splits import Split, count_lines
from corpuskit.engine.tasks import BATCH, RecordTask, task_items
from corpuskit.ingest import RawItem, to_record
from corpuskit.records import PREFERENCE, PRETRAIN, SFT, Origin, Record, Rejected
from corpuskit.step import Step, StepOutput, register_step, run_steps


class FilterReject(NamedTuple):
    steps: list[str]  # normalisation steps that changed the record
    filter: str
    rule: str
    message: str
    script: str = ""  # "zh" or "en": whose thresholds judged it ("" if normalisation rejected it)


class Prepared(NamedTuple):
    steps: list[str]
    key: bytes | None  # exact-dedup key
    row: int = -1  # row of the record's MinHash signature and band keys in its batch's matrices
    script: str = ""


@dataclass(slots=True)
class Candidate:
    """One input item on its way through the steps."""

    seq: int  # position in its task, to restore input order
    rec: Record | Rejected  # as read (a Rejected: it did not parse)
    outcome: FilterReject | Prepared | None = None
    norm: Record | None = None  # normalised
    steps: set = field(default_factory=set)
    docs: list = field(default_factory=list)  # (reply label, Doc) the filters judge
    script: str = ""
    text: str = ""  # what the dedup form is computed from
    sig: Any = None  # MinHash signature row
    band: Any = None  # LSH band keys row

    @property
    def origin(self) -> Origin:
        return self.rec.origin


def normalized(rec: Record, cfg: NormalizeConfig) -> tuple[Record, set[str]]:
    """The record with normalised content, and the normalisation steps that changed it."""
    steps: set[str] = set()
    if not cfg.active:
        return rec, steps

    def fn(text: str) -> str:
        out, changed = normalize_steps(text, cfg)
        steps.update(changed)
        return out

    return rec.with_content(fn), steps


def emptied(rec: Record) -> str | None:
    """Why a normalised record is no longer valid (a turn or the text became empty), or None.
    Checked even with filters off, so clean.jsonl never holds a record that validate rejects."""
    if rec.kind in (SFT, PREFERENCE):
        for i, m in enumerate(rec.messages or ()):
            if not m["content"].strip():
                return f"turn {i} ({m['role']}) is empty after normalisation"
        if rec.kind == PREFERENCE:
            for side, text in zip(("chosen", "rejected"), rec.reply_texts()):
                if not text.strip():
                    return f"the {side} reply is empty after normalisation"
    elif rec.kind == PRETRAIN:
        if rec.text is not None and not rec.text.strip():
            return "text is empty after normalisation"
        if rec.text is None and not (rec.target or "").strip():
            return "target is empty after normalisation"
    return None


@register_step("clean-read")
@dataclass(frozen=True)
class ReadStep(Step):
    """Raw items -> candidates; an item that is no record (parse error, too large, unknown shape)
    leaves at once, as a Rejected. Items the caller already read as records pass as they are."""

    fmt: str = "auto"

    def process(self, batch) -> StepOutput:
        out = StepOutput()
        for seq, item in enumerate(batch):
            cand = Candidate(seq, to_record(item, self.fmt) if isinstance(item, RawItem) else item)
            (out.rejected if isinstance(cand.rec, Rejected) else out.kept).append(cand)
        return out


@register_step("clean-normalize")
@dataclass(frozen=True)
class NormalizeStep(Step):
    """Unicode and whitespace normalisation; a record left with an empty text or turn leaves
    (normalize.emptied). Counts seconds under `time.normalize`."""

    config: NormalizeConfig

    def process(self, batch) -> StepOutput:
        out = StepOutput()
        t = time.perf_counter()
        for cand in batch:
            cand.norm, cand.steps = normalized(cand.rec, self.config)
            why = emptied(cand.norm) if cand.steps else None
            if why:
                cand.outcome = FilterReject(sorted(cand.steps), "normalize", "emptied", why)
                out.rejected.append(cand)
            else:
                out.kept.append(cand)
        out.counters["time.normalize"] += time.perf_counter() - t
        return out


@register_step("clean-filters")
@dataclass(frozen=True)
class FilterStep(Step):
    """The configured quality filters in order; the first that fails rejects the record (a
    preference record's filters judge each reply). Counts seconds under `time.filter.NAME`."""

    config: CleanConfig

    def process(self, batch) -> StepOutput:
        out = StepOutput()
        cfg = self.config
        for cand in batch:
            rec = cand.norm
            cand.docs = docs = [(label, Doc(text, cfg.words, cfg.script, cfg.records))
                                for label, text in rec.filter_texts()]
            cand.script = ("zh" if docs[0][1].is_cjk else "en") if cfg.filters and docs else ""
            verdict = self._judge(rec, docs, out.counters)
            if verdict is not None:
                name, rule, message = verdict
                cand.outcome = FilterReject(sorted(cand.steps), name, rule, message, cand.script)
                out.rejected.append(cand)
            else:
                out.kept.append(cand)
        return out

    def _judge(self, rec: Record, docs: list, counters) -> tuple[str, str, str] | None:
        for f in self.config.filters:
            if rec.kind not in f.apply_to:
                continue
            for label, doc in docs:
                t = time.perf_counter()
                verdict = f.filter(doc)
                counters[f"time.filter.{f.name}"] += time.perf_counter() - t
                if verdict is not True:
                    _, rule, message = verdict
                    return f.name, rule, f"{label} reply: {message}" if label else message
        return None


@register_step("clean-dedup-keys")
@dataclass(frozen=True)
class DedupKeysStep(Step):
    """Per record: the exact-dedup key and the MinHash signature with its LSH band keys, for the
    whole batch at once (the driver only indexes them). A preference record's duplicates are found
    on its prompt. Counts seconds under `time.dedup_form` and friends."""

    exact: bool
    minhash: MinHashParams | None

    def __post_init__(self):
        if self.minhash is not None:  # built once per task, in the process that runs it
            object.__setattr__(self, "_signer", Signer(self.minhash))
            object.__setattr__(self, "_bands", choose_bands(self.minhash.threshold, self.minhash.num_perm))

    def process(self, batch) -> StepOutput:
        out = StepOutput(kept=batch)
        for cand in batch:
            rec = cand.norm
            cand.text = rec.dedup_text() if rec.kind == PREFERENCE else cand.docs[0][1].text
            cand.outcome = Prepared(sorted(cand.steps), None, script=cand.script)
        if not batch or not (self.exact or self.minhash):
            return out
        c = out.counters
        t = time.perf_counter()
        forms = FormBatch([cand.text for cand in batch])
        c["time.dedup_form"] += time.perf_counter() - t
        keys: list = [None] * len(batch)
        if self.exact:
            t = time.perf_counter()
            keys = [exact_key_of_form(form) for form in forms.strings()]
            c["time.exact_key"] += time.perf_counter() - t
        sigs = bands = None
        if self.minhash is not None:
            t = time.perf_counter()
            sigs = self._signer.signatures(forms)
            c["time.signature"] += time.perf_counter() - t
            t = time.perf_counter()
            bands = band_key_matrix(sigs, *self._bands)
            c["time.band_keys"] += time.perf_counter() - t
        for i, cand in enumerate(batch):
            if keys[i] is not None:
                cand.outcome = cand.outcome._replace(key=keys[i])
            if sigs is not None:
                cand.sig, cand.band = sigs[i], bands[i]
        return out


@dataclass(frozen=True)
class CleanSteps:
    """clean's per-record steps for its options (picklable: every task builds them where it runs)."""

    config: CleanConfig
    fmt: str = "auto"
    exact: bool = True
    minhash: MinHashParams | None = None

    def __call__(self) -> list[Step]:
        return [ReadStep(self.fmt), NormalizeStep(self.config.normalize), FilterStep(self.config),
                DedupKeysStep(self.exact, self.minhash)]


class CleanBatch(NamedTuple):
    """What the driver needs of one batch, in input order: each item as read (Record or Rejected),
    its outcome (None for an item that did not parse), and the signature and band-key matrices of
    the records that passed the filters (row `Prepared.row`)."""

    items: list
    outcomes: list
    sigs: np.ndarray | None
    keys: np.ndarray | None


@dataclass
class CleanTaskResult:
    split: Split
    batches: list[CleanBatch] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    n_lines: int = 0  # physical lines of a byte-range split (the next split's line numbers start after them)


def _batch_result(cands: list[Candidate]) -> CleanBatch:
    cands.sort(key=lambda c: c.seq)
    rows = [c for c in cands if isinstance(c.outcome, Prepared) and c.sig is not None]
    sigs = keys = None
    if rows:
        sigs, keys = np.stack([c.sig for c in rows]), np.stack([c.band for c in rows])
        for row, c in enumerate(rows):
            c.outcome = c.outcome._replace(row=row)
    return CleanBatch([c.rec for c in cands], [c.outcome for c in cands], sigs, keys)


def run_clean_task(task: RecordTask) -> CleanTaskResult:
    """One split (or a batch of raw items the runner read) through clean's steps."""
    steps = task.build_steps()
    split = task.split
    result = CleanTaskResult(split)
    items = task_items(task)
    timings: dict[str, float] = {}
    while batch := list(islice(items, BATCH)):
        out = run_steps(steps, batch)
        for name, secs in out.counters.items():
            if name.startswith("time."):
                timings[name[5:]] = timings.get(name[5:], 0.0) + secs
        result.batches.append(_batch_result(out.kept + out.rejected))
    result.timings = timings
    if task.items is None and not split.whole:
        result.n_lines = count_lines(split)
    return result
