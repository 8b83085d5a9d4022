"""One document as the quality filters see it, with its lines and words computed once.

Word counting for Chinese (no spaces between words): in `char` mode every CJK character is one
word and Latin/digit runs are words; in `jieba` mode jieba cuts the text into words. Punctuation
and symbols are separate tokens that the rules exclude from word counts, as Gopher does.

Which thresholds a rule uses is decided per document: `script` "auto" judges a document Chinese
when most of its letters are CJK ("zh" and "en" force one side). `records` "paragraphs" means a
record is a paragraph, review or chat turn rather than a web page, so rules that measure page
structure (line ratios, the page word minimum) only judge records that have that structure;
"pages" applies them to every record, as datatrove does on crawled pages.
"""

from __future__ import annotations

import re
from functools import cached_property

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
# A run of punctuation is one token ("...", "。。。", "!!!"), as word tokenizers keep "..."
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_LATIN_WORD = re.compile(rf"[^\W\d_{_CJK}]+")
# Markdown code: fenced blocks and inline spans. Their lines are code, not prose lines.
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
WORD_MODES = ("char", "jieba")
SCRIPTS = ("auto", "zh", "en")
RECORD_SHAPES = ("paragraphs", "pages")
MIN_PAGE_LINES = 3  # with records: paragraphs, line rules judge records of this many prose lines


def _jieba_cut(text: str) -> list[str]:
    import jieba  # imported lazily: loading its dictionary takes ~1 s

    jieba.setLogLevel(60)
    return [w for w in jieba.lcut(text) if not w.isspace()]


def is_word(token: str) -> bool:
    """A token with at least one letter or digit (not pure punctuation/symbols)."""
    return any(c.isalnum() for c in token)


class Doc:
    __slots__ = ("text", "word_mode", "script", "records", "__dict__")

    def __init__(self, text: str, word_mode: str = "char", script: str = "auto", records: str = "pages"):
        if word_mode not in WORD_MODES:
            raise ValueError(f"word mode must be one of {WORD_MODES}, got {word_mode!r}")
        self.text = text
        self.word_mode = word_mode
        self.script = script
        self.records = records

    @cached_property
    def lines(self) -> list[str]:
        return self.text.splitlines() or [""]

    @cached_property
    def prose(self) -> tuple[list[str], str]:
        """(non-empty lines outside fenced code blocks, text without fenced and inline code)."""
        lines, kept, in_fence = [], [], False
        for line in self.lines:
            if _FENCE.match(line):
                in_fence = not in_fence
                continue
            if not in_fence:
                kept.append(line)
                if line.strip():
                    lines.append(line)
        return lines, _INLINE_CODE.sub(" ", "\n".join(kept))

    @property
    def prose_lines(self) -> list[str]:
        return self.prose[0]

    @property
    def prose_text(self) -> str:
        return self.prose[1]

    @cached_property
    def prose_doc(self) -> "Doc":
        """This document without its Markdown code (itself when it has none): repeated paths and
        code lines are not repeated prose."""
        text = self.prose_text
        if text == self.text:
            return self
        return Doc(text, self.word_mode, self.script, self.records)

    @property
    def line_rules_apply(self) -> bool:
        """Line-ratio rules need lines: a paragraph, or a chat turn of two lines, has no page
        structure to measure (a ratio over two lines is 0, 0.5 or 1)."""
        return self.records == "pages" or len(self.prose_lines) >= MIN_PAGE_LINES

    @cached_property
    def tokens(self) -> list[str]:
        """Words and punctuation tokens in text order."""
        if self.word_mode == "jieba" and self.cjk_ratio > 0:
            return _jieba_cut(self.text)
        return _TOKEN.findall(self.text)

    @cached_property
    def words(self) -> list[str]:
        # a token is a CJK character, a \w run or a punctuation run: only a run of underscores
        # starts with a non-alphanumeric character and can still be a "word" to check
        return [t for t in self.tokens if t[0].isalnum() or (t[0] == "_" and is_word(t))]

    @cached_property
    def cjk_ratio(self) -> float:
        """Share of words that are CJK characters (a Latin word counts once, whatever its length);
        above 0.5 the Chinese variants of the rules apply. Counting words, not letters, keeps a
        Chinese review with a few English product names Chinese."""
        cjk = len(_CJK_CHAR.findall(self.text))
        total = cjk + len(_LATIN_WORD.findall(self.text))
        return cjk / total if total else 0.0

    @property
    def is_cjk(self) -> bool:
        if self.script != "auto":
            return self.script == "zh"
        return self.cjk_ratio > 0.5


def display_len(line: str) -> int:
    """Length with CJK characters counted twice: one CJK character carries about as much text as
    two Latin letters, so English line-length thresholds stay meaningful for Chinese."""
    return len(line) + len(_CJK_CHAR.findall(line))
