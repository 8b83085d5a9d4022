"""Chinese character statistics for the junk rules: which characters are common, how much of a
text forms dictionary words, and whether a text is UTF-8 read with the wrong codec.

Everything comes from what is already installed, so no data file ships with corpuskit:
- common characters: GB2312 level 1 (the 3,755 常用字 of the 1980 standard) and Big5 level 1
  (the 5,401 常用國字), enumerated from Python's own codecs;
- dictionary words: the 2-4 character entries of jieba's dictionary (dict.txt, ~330k words),
  read once per process on first use (~0.3 s).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")
KANA = re.compile(r"[\u3040-\u30ff]")
HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f\ufffd]{2,}")
_NOT_CJK = re.compile(r"[^\u3000-\u9fff\uff00-\uffef]")  # what a misdecoded Chinese text turns back into


def _codec_rows(codec: str, rows: range, cols: list[int], stop: tuple[int, int] | None = None) -> set[str]:
    out = set()
    for r in rows:
        for c in cols:
            if stop and (r, c) > stop:
                break
            try:
                out.add(bytes([r, c]).decode(codec))
            except UnicodeDecodeError:
                pass
    return out


@lru_cache(maxsize=1)
def common_chars() -> frozenset[str]:
    """GB2312 level 1 (rows 0xB0-0xD7) and Big5 level 1 (0xA440-0xC67E): 6,722 characters."""
    gb = _codec_rows("gb2312", range(0xB0, 0xD8), list(range(0xA1, 0xFF)))
    big5 = _codec_rows("big5", range(0xA4, 0xC7), list(range(0x40, 0x7F)) + list(range(0xA1, 0xFF)), (0xC6, 0x7E))
    return frozenset(gb | big5)


@lru_cache(maxsize=1)
def dictionary() -> tuple[frozenset[str], frozenset[str]]:
    """(2-4 character words of jieba's dictionary, their first two characters)."""
    import jieba

    path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    words = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            w = line.split(" ", 1)[0]
            if 2 <= len(w) <= 4:
                words.add(w)
    return frozenset(words), frozenset(w[:2] for w in words)


def is_chinese(text: str, han: int) -> bool:
    """Han characters with little kana or hangul: Chinese, not Japanese (whose kanji runs are cut
    by kana) or Korean (whose hanja are not Chinese words)."""
    return han > 0 and len(KANA.findall(text)) + len(HANGUL.findall(text)) <= 0.05 * han


def common_share(chars: list[str]) -> float:
    common = common_chars()
    return sum(map(common.__contains__, chars)) / len(chars) if chars else 1.0


def word_coverage(text: str) -> tuple[int, int]:
    """(Han characters inside some dictionary word, Han characters in runs of 2+). Real Chinese
    has most of its characters inside words; a random string of characters has few. Longest
    word first at each position (4, 3, then 2 characters), as in forward maximum matching. A run
    of 2-4 characters set off by punctuation is a unit its writer delimited (a name in a list,
    树好多, 人好少) and counts as a word."""
    words, starts = dictionary()
    covered = total = 0
    for run in HAN_RUN.findall(text):
        n = len(run)
        total += n
        if n <= 4:
            covered += n
            continue
        until = 0  # run[:until] is already counted as covered
        for i in range(n - 1):
            if run[i:i + 2] not in starts:
                continue
            if i + 4 <= n and run[i:i + 4] in words:
                end = i + 4
            elif i + 3 <= n and run[i:i + 3] in words:
                end = i + 3
            elif run[i:i + 2] in words:
                end = i + 2
            else:
                continue
            if end > until:
                covered += end - (i if i > until else until)
                until = end
    return covered, total


MOJIBAKE_CODECS = ("gbk", "big5")


def misdecoded_share(text: str) -> tuple[float, str]:
    """Share of the non-ASCII text that is UTF-8 bytes shown through a CJK codec (the 鍦ㄦ...
    or 锟斤拷 kind), and that codec. Each run of non-ASCII characters is encoded back with the
    codec and decoded as UTF-8: for mojibake nearly all bytes decode; for real Chinese almost
    none do (two-byte GBK/Big5 codes rarely line up as three-byte UTF-8 sequences)."""
    best, which = 0.0, ""
    runs = _NON_ASCII_RUN.findall(text)
    size = sum(map(len, runs))
    if not size:
        return 0.0, ""
    for codec in MOJIBAKE_CODECS:
        ok = 0
        for run in runs:
            try:
                raw = run.encode(codec)
            except UnicodeEncodeError:
                continue
            decoded = _NOT_CJK.sub("", raw.decode("utf-8", errors="replace"))
            good = len(decoded.encode("utf-8"))  # bytes that formed CJK characters again
            ok += len(run) * good / len(raw)
        if ok / size > best:
            best, which = ok / size, codec
    return best, which


@lru_cache(maxsize=1)
def _gb2312() -> frozenset[str]:
    return frozenset(_codec_rows("gb2312", range(0xB0, 0xF8), list(range(0xA1, 0xFF))))


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str, han: list[str]) -> str:
    """Traditional characters mapped to simplified (OpenCC t2s), only when more than 5% of the
    Han characters (`han`, those of `text`) are outside GB2312: simplified text is returned
    unchanged, at no cost."""
    if not han:
        return text
    outside = len(han) - sum(map(_gb2312().__contains__, han))
    return _t2s().convert(text) if outside > 0.05 * len(han) else text
