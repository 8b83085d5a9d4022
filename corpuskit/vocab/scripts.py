"""Which characters count as CJK for `merge-vocab --only cjk`.

Ideographs (all planes), CJK punctuation, kana, hangul, bopomofo and full-width forms: text made
only of Latin letters, digits, ASCII punctuation and whitespace can never contain such a piece,
so English and code keep their base ids.
"""

from __future__ import annotations

CJK_RANGES = (
    (0x2E80, 0x2FDF),    # CJK radicals, Kangxi radicals
    (0x3000, 0x303F),    # CJK symbols and punctuation
    (0x3040, 0x30FF),    # hiragana, katakana
    (0x3100, 0x312F),    # bopomofo
    (0x3190, 0x31FF),    # kanbun, bopomofo ext., CJK strokes, katakana ext.
    (0x3200, 0x33FF),    # enclosed CJK, CJK compatibility
    (0x3400, 0x4DBF),    # ext. A
    (0x4E00, 0x9FFF),    # unified ideographs
    (0xAC00, 0xD7AF),    # hangul syllables
    (0xF900, 0xFAFF),    # compatibility ideographs
    (0xFE30, 0xFE4F),    # CJK compatibility forms
    (0xFF00, 0xFFEF),    # half-width and full-width forms
    (0x20000, 0x3FFFF),  # ext. B and later planes
)


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def has_cjk(text: str) -> bool:
    return any(is_cjk(ch) for ch in text)
