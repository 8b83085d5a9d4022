"""Reshapes `convert` applies after reading, for the layouts other training code expects.

Colossal-LLaMA-2 pretrains on `{"source", "target", "category"}` (loss on target only): from plain
text, the source is empty or the part of the text you choose (`SPLITS`). A default system turn
can be given to every conversation that has none (`--system`).
"""

from __future__ import annotations

import re

from corpuskit.records import PRETRAIN, SFT, Record

SPLITS = ("none", "first-line", "first-sentence")
_SENTENCE = re.compile(r"^.+?(?:[。！？!?]+[”」』\"']?|\.(?=\s))", re.S)


def split_text(text: str, split: str) -> tuple[str, str] | None:
    """(source, target) for `split`, or None when the text has no such split (one line for
    first-line, no sentence end before the last character for first-sentence)."""
    if split == "none":
        return "", text
    if split == "first-line":
        head, sep, tail = text.partition("\n")
        return (head + sep, tail) if tail.strip() else None
    m = _SENTENCE.match(text)
    if m is None or not text[m.end():].strip():
        return None
    return m.group(), text[m.end():]


def to_source_target(rec: Record, split: str) -> tuple[Record, bool]:
    """The record as {source, target}; a text without the chosen split becomes all target
    (returned flag False, counted by convert). Records already in source/target form are kept."""
    if rec.kind != PRETRAIN or rec.text is None:
        return rec, True
    parts = split_text(rec.text, split)
    split_done = parts is not None
    source, target = parts if split_done else ("", rec.text)
    return Record(PRETRAIN, rec.origin, source=source, target=target, category=rec.category, id=rec.id,
                  extra=dict(rec.extra), repairs=rec.repairs), split_done


def add_system(rec: Record, system: str) -> bool:
    """Prepend a system turn to a conversation that has none; True when one was added."""
    if rec.kind != SFT or not rec.messages or rec.messages[0]["role"] == "system":
        return False
    rec.messages = [{"role": "system", "content": system}, *rec.messages]
    return True
