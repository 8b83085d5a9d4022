"""`render --mode preference` and `--mode prompt`: pairs and prompts tokenized once, in the
columns TRL's trainers take pre-tokenised, so nothing re-tokenises in training.

A pair is tokenized exactly as TRL's DPOTrainer does it (`apply_chat_template` of the prompt with
the generation prompt, and of prompt + chosen and prompt + rejected; the completion starts where
the prompt and the full conversation stop sharing tokens), through the same chat template the SFT
data used. Rows hold `prompt_ids` (starting with the template's one BOS), `chosen_ids` and
`rejected_ids`: each reply's tokens up to and including its end-of-turn token (the end of its last
`{% generation %}` block), which are exactly the tokens trained on. A reward model reads
`prompt_ids + chosen_ids`; DPO the three columns as they are.

Too long (prompt + the longer reply > --max-length): `--truncation left` keeps BOS, the end of the
prompt and both whole replies (the two sides share one cut prompt), `drop` rejects the pair; a
reply that cannot fit with BOS and a prompt token is rejected either way. A reply is never cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from datasets import Features, Value

from corpuskit.engine import make_executor
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, expand_inputs, iter_records
from corpuskit.ingest.preference import reply_turns
from corpuskit.outputs import atomic_dir, write_json
from corpuskit.records import PREFERENCE, SFT, Record, Rejected
from corpuskit.render.dataset_io import INT_LIST, write_dataset
from corpuskit.render.pipeline import FORMAT, engine_results, length_bucket
from corpuskit.render.templates import ChatTemplate, TemplateError
from corpuskit.render.tokenize import _Reject
from corpuskit.render.tokenizer_dir import TokenizerDir
from corpuskit.report import StageReport

PROMPT = "prompt"
MODES = (PREFERENCE, PROMPT)
PAIR_TRUNCATIONS = ("left", "drop")
PREFERENCE_FEATURES = Features({"prompt_ids": INT_LIST, "chosen_ids": INT_LIST, "rejected_ids": INT_LIST,
                                "origin": Value("string"), "category": Value("string")})
PROMPT_FEATURES = Features({"prompt_ids": INT_LIST, "origin": Value("string"), "category": Value("string")})


@dataclass
class PairOptions:
    mode: str = PREFERENCE  # "preference" | "prompt"
    max_length: int = 4096
    truncation: str = "left"  # "left" | "drop"


@dataclass(slots=True)
class PairRow:
    prompt_ids: np.ndarray
    chosen_ids: np.ndarray | None
    rejected_ids: np.ndarray | None
    origin: str
    category: str
    truncated: bool = False
    boundary_shift: bool = False  # the template renders the prompt alone differently (TRL's rule applied)

    def to_row(self) -> dict:
        row = {"prompt_ids": self.prompt_ids, "origin": self.origin, "category": self.category}
        if self.chosen_ids is not None:
            row.update(chosen_ids=self.chosen_ids, rejected_ids=self.rejected_ids)
        return row


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    x, y = np.asarray(a[:n]), np.asarray(b[:n])
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if len(diff) else n


class PairRenderer:
    def __init__(self, tok: TokenizerDir, template: ChatTemplate, opts: PairOptions):
        self.tok, self.template, self.opts = tok, template, opts
        self.specials = tok.special_tokens_map()
        self.bos_id = tok.token_id(tok.bos_token)
        control = set(tok.special_tokens) | {tok.bos_token, tok.eos_token} | set(template.special_tokens)
        self.control_tokens = sorted(t for t in control if t)

    def _render(self, messages: list[dict], generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
        for m in messages:
            for t in self.control_tokens:
                if t in m["content"]:
                    raise _Reject("control_token_in_content",
                                  f"content contains the special token {t!r}, which would be read as a control token")
        try:
            return self.template.render(messages, self.specials, add_generation_prompt=generation_prompt)
        except TemplateError as e:
            raise _Reject("template_error", f"{self.template.name}: {e}") from None

    def _texts(self, rec: Record) -> tuple[list[str], list[int]]:
        """The texts to tokenize for one record and, for each full conversation, where its last
        generation block ends (the end of the trained reply)."""
        if self.opts.mode == PROMPT:
            if rec.kind == PREFERENCE:
                prompt = rec.messages
            elif rec.kind == SFT:
                last = max(i for i, m in enumerate(rec.messages) if m["role"] == "assistant")
                prompt = rec.messages[:last]
            else:
                raise _Reject("wrong_kind", f"{rec.kind} record in --mode prompt (needs preference or sft records)")
            return [self._render(prompt, generation_prompt=True)[0]], []
        if rec.kind != PREFERENCE:
            raise _Reject("wrong_kind", f"{rec.kind} record in --mode preference")
        texts, ends = [self._render(rec.messages, generation_prompt=True)[0]], []
        for reply in (rec.chosen, rec.rejected):
            turns = reply_turns(reply)
            text, spans = self._render(rec.messages + turns)
            n_assistant = sum(m["role"] == "assistant" for m in rec.messages + turns)
            if len(spans) != n_assistant:
                raise _Reject("template_error", f"template {self.template.name} marked {len(spans)} generation "
                                                f"blocks for {n_assistant} assistant messages")
            texts.append(text)
            ends.append(spans[-1][1])
        return texts, ends

    def process(self, records: list[Record | Rejected]) -> list[PairRow | Rejected]:
        prepared, texts = [], []
        for rec in records:
            if isinstance(rec, Rejected):
                prepared.append(rec)
                continue
            try:
                t, ends = self._texts(rec)
            except _Reject as r:
                prepared.append(Rejected(r.reason, rec.origin, r.message))
                continue
            prepared.append((rec, len(texts), [(end, len(text)) for end, text in zip(ends, t[1:])]))
            texts.extend(t)
        encoded = self.tok.tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
        out: list[PairRow | Rejected] = []
        for item in prepared:
            if isinstance(item, Rejected):
                out.append(item)
                continue
            rec, k, ends = item
            try:
                out.append(self._finish(rec, encoded[k:k + 1 + len(ends)], ends))
            except _Reject as r:
                out.append(Rejected(r.reason, rec.origin, r.message))
        return out

    def _finish(self, rec: Record, encs, ends: list[int]) -> PairRow:
        prompt = encs[0].ids
        if self.opts.mode == PROMPT:
            ids, truncated = self._fit(prompt, 0)
            return PairRow(np.asarray(ids, dtype=np.int32), None, None, str(rec.origin), rec.category or "", truncated)
        full = [e.ids for e in encs[1:]]
        cut = min(common_prefix(prompt, f) for f in full)
        replies = [ids[cut:_tokens_before(enc, end, text_len)] for enc, ids, (end, text_len) in zip(encs[1:], full, ends)]
        if not replies[0] or not replies[1]:
            raise _Reject("empty_reply", "a reply has no tokens after the prompt")
        if replies[0] == replies[1]:
            raise _Reject("identical_replies", "chosen and rejected tokenize to the same ids")
        prompt_ids, truncated = self._fit(prompt[:cut], max(len(r) for r in replies))
        return PairRow(np.asarray(prompt_ids, dtype=np.int32), np.asarray(replies[0], dtype=np.int32),
                       np.asarray(replies[1], dtype=np.int32), str(rec.origin), rec.category or "", truncated,
                       boundary_shift=cut < len(prompt))

    def _fit(self, prompt: list[int], reply_len: int) -> tuple[list[int], bool]:
        """The prompt cut from the left (its BOS kept) so that prompt + the longer reply fit."""
        limit = self.opts.max_length
        if len(prompt) + reply_len <= limit:
            return prompt, False
        what = "the prompt" if self.opts.mode == PROMPT else "prompt + the longer reply"
        if self.opts.truncation == "drop":
            raise _Reject("too_long", f"{what} is {len(prompt) + reply_len} tokens > --max-length {limit} "
                                      "(--truncation drop)")
        head = prompt[:1] if prompt and prompt[0] == self.bos_id else []
        room = limit - reply_len - len(head)
        if room < 1:
            raise _Reject("too_long", f"the longer reply has {reply_len} tokens: with BOS and one prompt token it "
                                      f"does not fit --max-length {limit} (replies are never cut)")
        return head + prompt[-room:], True


def _tokens_before(enc, end: int, text_len: int) -> int:
    """How many tokens start before character `end` (the tokens of the text up to `end`)."""
    if end >= text_len:
        return len(enc.ids)
    k = enc.char_to_token(end)
    if k is None:  # a character no token claims: fall back to the offsets
        return int(np.searchsorted(np.asarray([a for a, _ in enc.offsets]), end, side="left"))
    return k + 1 if enc.token_to_chars(k)[0] < end else k


@dataclass
class PairStats:
    rows: int = 0
    tokens: int = 0  # every token a trainer reads: prompt + chosen and prompt + rejected (prompt + generation for prompts)
    trained_tokens: int = 0  # reply tokens
    truncated: int = 0
    boundary_shifts: int = 0
    lengths: dict = field(default_factory=dict)

    def add(self, row: PairRow) -> None:
        self.rows += 1
        self.truncated += row.truncated
        self.boundary_shifts += row.boundary_shift
        p = len(row.prompt_ids)
        if row.chosen_ids is None:
            self.tokens += p
            longest = p
        else:
            c, r = len(row.chosen_ids), len(row.rejected_ids)
            self.tokens += 2 * p + c + r
            self.trained_tokens += c + r
            longest = p + max(c, r)
        key = length_bucket(longest)
        self.lengths[key] = self.lengths.get(key, 0) + 1


def render_pairs(inputs: list[str], outdir: str | Path, tok: TokenizerDir, template: ChatTemplate, opts: PairOptions,
                 workers: int = 1, fmt: str = "auto", encoding: str = "utf-8",
                 progress: Callable = lambda it, **kw: it, engine: str = "local", ray_address: str | None = None,
                 split_bytes: int | None = None) -> StageReport:
    """On the engine, as render_corpus: pairs written in input order whatever the engine or workers."""
    files = expand_inputs(inputs)
    report = StageReport("render", inputs=files)
    stats = PairStats()
    t0 = time.perf_counter()
    to = PREFERENCE if opts.mode == PREFERENCE else None

    def rows(results):
        for chunk in results:
            for r in chunk:
                if isinstance(r, Rejected):
                    report.reject(r)
                    continue
                report.keep()
                stats.add(r)
                yield r.to_row()

    features = PREFERENCE_FEATURES if opts.mode == PREFERENCE else PROMPT_FEATURES
    with make_executor(engine, workers, ray_address) as ex, atomic_dir(outdir) as tmp:
        results = engine_results(ex, files, tok, template, opts, to, fmt, encoding, DEFAULT_MAX_RECORD_BYTES,
                                 split_bytes, progress)
        write_dataset(tmp, features, rows(results), batch_rows=1000)
        report.time("render", time.perf_counter() - t0)
        lengths = dict(sorted(stats.lengths.items(), key=lambda kv: int(kv[0][2:])))
        report.details.update({
            "mode": opts.mode, "template": template.name, "max_length": opts.max_length,
            "truncation": opts.truncation, "rows": stats.rows, "truncated": stats.truncated,
            "tokens": stats.tokens, "trained_tokens": stats.trained_tokens,
            "prompt_boundary_shifts": stats.boundary_shifts, "length_histogram": lengths, "workers": workers})
        write_json(tmp / "manifest.json", {
            "format": FORMAT, "mode": opts.mode, "template": template.name, "max_length": opts.max_length,
            "truncation": opts.truncation, "columns": list(features), "tokenizer": tok.manifest(),
            "records": stats.rows, "tokens": stats.tokens, "trained_tokens": stats.trained_tokens})
        report.write(tmp)
    return report


def show_pairs(paths: list[str], tok: TokenizerDir, template: ChatTemplate, opts: PairOptions, n: int, fmt: str,
               encoding: str, echo: Callable[[str], None]) -> None:
    """Print the first n rendered pairs (prompt, then each reply in [[...]]) for a person to check."""
    renderer = PairRenderer(tok, template, opts)
    to = PREFERENCE if opts.mode == PREFERENCE else None
    shown = 0
    for rec in iter_records(expand_inputs(paths), fmt, to, encoding):
        if shown >= n:
            break
        shown += 1
        row, = renderer.process([rec])
        if isinstance(row, Rejected):
            echo(f"== {row.origin}: rejected ({row.reason}): {row.message}")
            continue
        decode = tok.tokenizer.decode
        echo(f"== {row.origin}: prompt {len(row.prompt_ids)} tokens"
             + ("" if row.chosen_ids is None else
                f", chosen {len(row.chosen_ids)}, rejected {len(row.rejected_ids)} ([[...]] = trained)"))
        echo(decode(row.prompt_ids.tolist(), skip_special_tokens=False))
        if row.chosen_ids is not None:
            echo(f"-- chosen: [[{decode(row.chosen_ids.tolist(), skip_special_tokens=False)}]]")
            echo(f"-- rejected: [[{decode(row.rejected_ids.tolist(), skip_special_tokens=False)}]]")
