"""The one record model carried through every corpus stage.

A record is either pretrain (`text`, or `source` + `target`), SFT (`messages`), preference (a prompt
as `messages` ending with a user turn, plus `chosen` and `rejected` replies) or a vocabulary piece.
Its `origin` (file and 1-based line where the record starts) travels with it, so every error,
reject and output row can be traced back to the input line it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PRETRAIN = "pretrain"
SFT = "sft"
PIECE = "piece"
PREFERENCE = "preference"
KINDS = (PRETRAIN, SFT, PIECE, PREFERENCE)

ROLES = ("system", "user", "assistant")


@dataclass(slots=True, frozen=True)
class Origin:
    path: str
    line: int  # 1-based line where the record starts (CSV: the row's first line)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"

    def to_json(self) -> dict:
        return {"path": self.path, "line": self.line}


@dataclass(slots=True)
class Record:
    kind: str
    origin: Origin
    text: str | None = None
    source: str | None = None
    target: str | None = None
    messages: list[dict] | None = None
    piece: str | None = None
    category: str | None = None
    id: str | None = None
    chosen: str | list[dict] | None = None  # preference: the preferred reply (text, or assistant-first turns)
    rejected: str | list[dict] | None = None  # preference: the other reply
    extra: dict = field(default_factory=dict)  # unknown keys kept verbatim (e.g. provenance fields)
    repairs: tuple[str, ...] = ()  # opt-in fixes convert applied (reported, never written)

    def to_json(self) -> dict:
        """Canonical on-disk form (see schemas/)."""
        out: dict[str, Any] = {}
        if self.kind == SFT:
            out["messages"] = self.messages
        elif self.kind == PREFERENCE:
            out.update(messages=self.messages, chosen=self.chosen, rejected=self.rejected)
        elif self.kind == PIECE:
            out["piece"] = self.piece
        elif self.text is not None:
            out["text"] = self.text
        else:
            out["source"] = self.source
            out["target"] = self.target
        if self.category is not None:
            out["category"] = self.category
        if self.id is not None:
            out["id"] = self.id
        out.update(self.extra)
        return out

    def content_text(self) -> str:
        """The text that quality filters and dedup look at."""
        if self.kind == SFT:
            return "\n".join(m["content"] for m in self.messages or ())
        if self.kind == PREFERENCE:
            return "\n".join([self.prompt_text(), *self.reply_texts()])
        if self.kind == PIECE:
            return self.piece or ""
        if self.text is not None:
            return self.text
        return (self.source or "") + (self.target or "")

    def with_content(self, new_text_fn) -> "Record":
        """Copy with every text field passed through `new_text_fn` (used by normalising filters)."""
        r = Record(kind=self.kind, origin=self.origin, category=self.category, id=self.id,
                   extra=dict(self.extra))
        if self.kind == SFT:
            r.messages = [{**m, "content": new_text_fn(m["content"])} for m in self.messages or ()]
        elif self.kind == PREFERENCE:
            r.messages = [{**m, "content": new_text_fn(m["content"])} for m in self.messages or ()]
            r.chosen, r.rejected = (new_text_fn(x) if isinstance(x, str) else
                                    [{**m, "content": new_text_fn(m["content"])} for m in x]
                                    for x in (self.chosen, self.rejected))
        elif self.kind == PIECE:
            r.piece = self.piece
        elif self.text is not None:
            r.text = new_text_fn(self.text)
        else:
            r.source = new_text_fn(self.source or "")
            r.target = new_text_fn(self.target or "")
        return r

    # -- preference records: what clean filters (the replies) and deduplicates (the prompt) --------
    def prompt_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages or ())

    def reply_texts(self) -> list[str]:
        """The chosen and the rejected reply as plain text (multi-turn replies joined by lines)."""
        return [x if isinstance(x, str) else "\n".join(m["content"] for m in x or ())
                for x in (self.chosen, self.rejected)]

    def dedup_text(self) -> str:
        """What exact and near-duplicate removal compare: a preference record's prompt (the same
        question must not be over-represented), any other record's whole content."""
        return self.prompt_text() if self.kind == PREFERENCE else self.content_text()

    def filter_texts(self) -> list[tuple[str, str]]:
        """(label, text) pairs the quality filters judge: each reply of a preference record, else the content."""
        if self.kind == PREFERENCE:
            return list(zip(("chosen", "rejected"), self.reply_texts()))
        return [("", self.content_text())]


@dataclass(slots=True)
class Rejected:
    """A record that left the stream, with the reason it left and (when known) the raw input value."""

    reason: str
    origin: Origin
    message: str
    raw: Any = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"reason": self.reason, "message": self.message, "origin": self.origin.to_json(),
               "record": self.raw}
        out.update(self.detail)
        return out
