"""Records -> (input_ids, labels): render the text, tokenize it once, label by character spans.

The whole rendered string is tokenized in one call (exactly what `apply_chat_template` does), and
a token is trained when it overlaps a trained character span (a `{% generation %}` block, or the
target of a pretrain record). SentencePiece merges across the edge of a span (the space before an
answer joins the answer's first word), and the overlap rule trains such a token whole, exactly as
transformers' `return_assistant_tokens_mask` does. BOS is never trained: labels are shifted
inside the model, and a trained BOS would teach "predict the next document" across a packed
boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corpuskit.records import PRETRAIN, SFT, Record, Rejected
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES
from corpuskit.render.sandbox import TemplateLimits
from corpuskit.render.templates import ChatTemplate, TemplateError, TemplateLimitError
from corpuskit.render.tokenizer_dir import TokenizerDir

IGNORE = -100
TRUNCATIONS = ("turns", "right", "drop")
ENCODE_CHARS = 1 << 23  # characters per encode_batch call


@dataclass
class RenderOptions:
    mode: str = SFT  # "sft" | "pretrain"
    max_length: int = 4096
    truncation: str = "turns"
    train_on: str = "all"  # "all" | "last" assistant turns
    truncate: bool = True  # False when --group-texts splits long records into blocks instead
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES  # also bounds what a chat template may render


@dataclass(slots=True)
class Row:
    input_ids: np.ndarray  # int32
    labels: np.ndarray  # int32, IGNORE where not trained
    origin: str
    category: str
    truncated: bool = False


@dataclass(slots=True)
class Rendered:
    """One record rendered and tokenized, before truncation (what `--show` prints)."""

    text: str
    ids: np.ndarray
    offsets: np.ndarray  # (n, 2) character offsets into text
    labels: np.ndarray


class Renderer:
    def __init__(self, tok: TokenizerDir, template: ChatTemplate | None, opts: RenderOptions):
        self.tok, self.template, self.opts = tok, template, opts
        self.specials = tok.special_tokens_map()
        self.bos_id, self.eos_id = tok.token_id(tok.bos_token), tok.token_id(tok.eos_token)
        control = set(tok.special_tokens) | {tok.bos_token, tok.eos_token}
        if template is not None:
            control |= set(template.special_tokens)
        self.control_tokens = sorted(t for t in control if t)
        self.limits = TemplateLimits.for_record_bytes(opts.max_record_bytes)

    # -- text and spans -------------------------------------------------------------------------
    def _text_and_spans(self, rec: Record, messages: list[dict] | None = None):
        """(text, trained spans, assistant message indices); raises _Reject."""
        bos, eos = self.tok.bos_token, self.tok.eos_token
        if self.opts.mode == PRETRAIN:
            if rec.kind != PRETRAIN:
                raise _Reject("wrong_kind", f"{rec.kind} record in --mode pretrain")
            self._check_control(rec.text if rec.text is not None else (rec.source or "") + (rec.target or ""))
            if rec.text is not None:
                text = bos + rec.text + eos
                return text, [(len(bos), len(text))], []
            text = bos + (rec.source or "") + (rec.target or "") + eos
            return text, [(len(bos) + len(rec.source or ""), len(text))], []
        if rec.kind != SFT:
            raise _Reject("wrong_kind", f"{rec.kind} record in --mode sft")
        messages = rec.messages if messages is None else messages
        for m in messages:
            self._check_control(m["content"])
        try:
            text, spans = self.template.render(messages, self.specials, limits=self.limits)
        except TemplateLimitError as e:
            raise _Reject("template_limit", f"{self.template.name}: {e}") from None
        except TemplateError as e:
            raise _Reject("template_error", f"{self.template.name}: {e}") from None
        assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        if len(spans) != len(assistants):
            raise _Reject("template_error", f"template {self.template.name} marked {len(spans)} generation "
                          f"blocks for {len(assistants)} assistant messages")
        return text, spans, assistants

    def _check_control(self, content: str) -> None:
        for t in self.control_tokens:
            if t in content:
                raise _Reject("control_token_in_content",
                              f"content contains the special token {t!r}, which would be read as a control token")

    # -- tokens and labels ----------------------------------------------------------------------
    def _labels(self, ids: np.ndarray, offsets: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
        labels = np.full(len(ids), IGNORE, dtype=np.int32)
        if not len(ids):
            return labels
        starts, ends = offsets[:, 0], offsets[:, 1]
        for a, b in spans:
            if b <= a:
                continue
            i = int(np.searchsorted(ends, a, side="right"))  # first token ending after a
            j = int(np.searchsorted(starts, b, side="left"))  # first token starting at/after b
            labels[i:j] = ids[i:j]
        return labels

    def _labels_fast(self, enc, ids: np.ndarray, text_len: int, spans: list[tuple[int, int]]) -> np.ndarray:
        """`_labels` without materialising all offsets (building them costs ~20% of a render).

        Asks the encoding only about the span edges; falls back to the offsets when an edge
        character belongs to no token (the same rule, then computed over every offset).
        """
        labels = np.full(len(ids), IGNORE, dtype=np.int32)
        for a, b in spans:
            if b <= a:
                continue
            i = enc.char_to_token(a)  # first token ending after a, when a is covered
            if b >= text_len:
                j = len(ids)
            else:
                k = enc.char_to_token(b)  # first token starting at/after b: k, or k+1 when k straddles b
                j = None if k is None else (k + 1 if enc.token_to_chars(k)[0] < b else k)
            if i is None or j is None:
                return self._labels(ids, _offsets(enc), spans)
            labels[i:j] = ids[i:j]
        return labels

    def _encode(self, texts: list[str]):
        """encode_batch in groups of at most ENCODE_CHARS characters: the Rust encoder holds ~130
        bytes per input character at once, so 256 large records in one call could abort it."""
        out, group, size = [], [], 0
        for text in texts:
            if group and size + len(text) > ENCODE_CHARS:
                out += self.tok.tokenizer.encode_batch(group, add_special_tokens=False)
                group, size = [], 0
            group.append(text)
            size += len(text)
        if group:
            out += self.tok.tokenizer.encode_batch(group, add_special_tokens=False)
        return out

    def _trained_spans(self, spans):
        return spans[-1:] if self.opts.train_on == "last" and self.opts.mode == SFT else spans

    def render_one(self, rec: Record) -> Rendered:
        text, spans, _ = self._text_and_spans(rec)
        enc, = self._encode([text])
        ids, offsets = _ids(enc), _offsets(enc)
        return Rendered(text, ids, offsets, self._labels(ids, offsets, self._trained_spans(spans)))

    def process(self, records: list[Record | Rejected]) -> list[Row | Rejected]:
        """Rows or rejects, one per item, in input order (rejects from reading pass through)."""
        prepared: list = []
        texts: list[str] = []
        for rec in records:
            if isinstance(rec, Rejected):
                prepared.append(rec)
                continue
            try:
                text, spans, assistants = self._text_and_spans(rec)
            except _Reject as r:
                prepared.append(Rejected(r.reason, rec.origin, r.message))
                continue
            prepared.append((rec, spans, assistants, len(texts)))
            texts.append(text)
        encoded = self._encode(texts) if texts else []
        out: list[Row | Rejected] = []
        for item in prepared:
            if isinstance(item, Rejected):
                out.append(item)
                continue
            rec, spans, assistants, k = item
            try:
                out.append(self._finish(rec, encoded[k], len(texts[k]), spans, assistants))
            except _Reject as r:
                out.append(Rejected(r.reason, rec.origin, r.message))
        return out

    def _finish(self, rec, enc, text_len, spans, assistants) -> Row:
        ids = _ids(enc)
        labels = self._labels_fast(enc, ids, text_len, self._trained_spans(spans))
        truncated = False
        limit = self.opts.max_length
        if self.opts.truncate and len(ids) > limit:
            truncated = True
            how = self.opts.truncation
            if how == "drop":
                raise _Reject("too_long", f"{len(ids)} tokens > --max-length {limit} (--truncation drop)")
            if how == "turns":
                ids, labels = self._drop_turns(rec, ids, _offsets(enc), spans, assistants)
            else:
                ids, labels = self._cut_right(ids, labels)
        if not np.any(labels != IGNORE):
            raise _Reject("no_trained_tokens", "no token left to train on"
                          + (f" after truncation to {limit} tokens" if truncated else ""))
        return Row(ids, labels, str(rec.origin), rec.category or "", truncated)

    def _cut_right(self, ids, labels):
        """Cut to max_length but end on EOS; EOS is trained when the cut lands in a trained region.

        A cut landing just after an EOS keeps that EOS as the end instead of adding a second one.
        """
        n = self.opts.max_length
        for m in (n, n - 1):
            if ids[m - 1] == self.eos_id:
                return ids[:m], labels[:m]
        n -= 1
        eos_label = self.eos_id if labels[n - 1] != IGNORE else IGNORE
        return (np.append(ids[:n], np.int32(self.eos_id)).astype(np.int32),
                np.append(labels[:n], np.int32(eos_label)).astype(np.int32))

    def _drop_turns(self, rec, ids, offsets, spans, assistants):
        """Drop whole user/assistant pairs from the end until the conversation fits."""
        limit = self.opts.max_length
        if self.opts.mode == PRETRAIN:
            raise _Reject("too_long", "--truncation turns does not apply to pretrain records")
        ends = offsets[:, 1]
        # estimate: the last assistant turn whose answer ends within the limit
        keep = sum(1 for _, b in spans if int(np.searchsorted(ends, b, side="left")) + 1 <= limit)
        while keep >= 1:
            messages = rec.messages[: assistants[keep - 1] + 1]
            text, new_spans, _ = self._text_and_spans(rec, messages)
            enc, = self._encode([text])
            if len(enc.ids) <= limit:
                new_ids = _ids(enc)
                return new_ids, self._labels_fast(enc, new_ids, len(text), self._trained_spans(new_spans))
            keep -= 1
        first = rec.messages[: assistants[0] + 1] if assistants else rec.messages
        text, _, _ = self._text_and_spans(rec, first)
        enc, = self._encode([text])
        raise _Reject("too_long", f"first user/assistant pair alone has {len(enc.ids)} tokens > --max-length {limit}")


def _ids(enc) -> np.ndarray:
    return np.asarray(enc.ids, dtype=np.int32)


def _offsets(enc) -> np.ndarray:
    return np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)


class _Reject(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message

