"""Text normalisation: the only step of `clean` that changes text, and each change is counted.

Control and invisible characters break tokenizers and hide duplicates; odd Unicode spaces,
trailing spaces and runs of blank lines waste tokens (indentation is kept: code needs it). NFKC is
optional because it rewrites full-width punctuation that Chinese training text usually keeps. The dedup key is a stronger, never-written normal form so that
copies differing only in width, case or spacing are still found.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from corpuskit.ingest.formats import INVISIBLE

# C0/C1 controls except tab and newline (carriage returns are folded into newlines first).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Zero-width and bidi formatting characters, soft hyphen, BOM, word joiners, variation selectors
# (one definition, shared with convert/validate, which call a turn of only these empty).
_INVISIBLE = INVISIBLE
# Exotic spaces become ASCII spaces; runs of ASCII spaces are kept (code indentation is content).
# U+3000 (ideographic space) is kept: it is part of Chinese layout.
_ODD_SPACES = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f]")
_TRAILING = re.compile(r"[ \t]+\n")
_BLANK_RUNS = re.compile(r"\n{3,}")
_ANY_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class NormalizeConfig:
    strip_control: bool = True
    strip_invisible: bool = True
    whitespace: bool = True
    nfkc: bool = False

    @property
    def active(self) -> bool:
        return self.strip_control or self.strip_invisible or self.whitespace or self.nfkc


def normalize_steps(text: str, cfg: NormalizeConfig) -> tuple[str, list[str]]:
    """Normalised text and the names of the steps that changed it (for the report)."""
    changed: list[str] = []
    if "\r" in text:
        new = text.replace("\r\n", "\n").replace("\r", "\n")
        if cfg.whitespace or cfg.strip_control:
            text = new
            changed.append("newlines")
    if cfg.strip_control:
        new = _CONTROL.sub("", text)
        if new != text:
            text = new
            changed.append("strip_control")
    if cfg.strip_invisible:
        new = _INVISIBLE.sub("", text)
        if new != text:
            text = new
            changed.append("strip_invisible")
    if cfg.nfkc:
        new = unicodedata.normalize("NFKC", text)
        if new != text:
            text = new
            changed.append("nfkc")
    if cfg.whitespace:
        new = _BLANK_RUNS.sub("\n\n", _TRAILING.sub("\n", _ODD_SPACES.sub(" ", text))).strip()
        if new != text:
            text = new
            changed.append("whitespace")
    return text, changed


def normalize(text: str, cfg: NormalizeConfig) -> str:
    return normalize_steps(text, cfg)[0]


def dedup_form(text: str) -> str:
    """Form compared by exact and near-duplicate detection: NFKC (full/half width folded),
    case-folded, all whitespace collapsed to one space. Never written to the output."""
    return _ANY_SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
