"""One document as the quality filters see it, with its lines and words computed once.

Word counting for Chinese (no spaces between words): in `char` mode every CJK character is one
word and Latin/digit runs are words; in `jieba` mode jieba cuts the text into words. Punctuation
and symbols are separate tokens that the rules exclude from word counts, as Gopher does.
"""

from __future__ import annotations

import re
from functools import cached_property

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_LETTER = re.compile(r"[^\W\d_]")
WORD_MODES = ("char", "jieba")


def _jieba_cut(text: str) -> list[str]:
    import jieba  # imported lazily: loading its dictionary takes ~1 s

    jieba.setLogLevel(60)
    return [w for w in jieba.lcut(text) if not w.isspace()]


def is_word(token: str) -> bool:
    """A token with at least one letter or digit (not pure punctuation/symbols)."""
    return any(c.isalnum() for c in token)


class Doc:
    __slots__ = ("text", "word_mode", "__dict__")

    def __init__(self, text: str, word_mode: str = "char"):
        if word_mode not in WORD_MODES:
            raise ValueError(f"word mode must be one of {WORD_MODES}, got {word_mode!r}")
        self.text = text
        self.word_mode = word_mode

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines() or [""]

    @cached_property
    def tokens(self) -> list[str]:
        """Words and punctuation tokens in text order."""
        if self.word_mode == "jieba" and self.cjk_ratio > 0:
            return _jieba_cut(self.text)
        return _TOKEN.findall(self.text)

    @cached_property
    def words(self) -> list[str]:
        return [t for t in self.tokens if is_word(t)]

    @cached_property
    def cjk_ratio(self) -> float:
        """Share of letters that are CJK; above 0.5 the Chinese variants of the rules apply."""
        letters = len(_LETTER.findall(self.text))
        return len(_CJK_CHAR.findall(self.text)) / letters if letters else 0.0

    @property
    def is_cjk(self) -> bool:
        return self.cjk_ratio > 0.5


def display_len(line: str) -> int:
    """Length with CJK characters counted twice: one CJK character carries about as much text as
    two Latin letters, so English line-length thresholds stay meaningful for Chinese."""
    return len(line) + len(_CJK_CHAR.findall(line))
