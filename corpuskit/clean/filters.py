"""Quality filters in the datatrove style: `filter(doc)` returns True (keep) or
`(False, rule, message)`. Filters never change text; normalisation is a separate, reported step.

The rules and default thresholds follow datatrove's GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter and FineWebQualityFilter. Adaptations for Chinese (documented per rule):
words are CJK characters or jieba words (see `doc.py`), Chinese terminal punctuation counts as
terminal, Chinese stop words are used for mostly-Chinese documents, the average-word-length rule
is skipped for them (a CJK word is 1-2 characters by nature), and line lengths count a CJK
character as two. C4's line-removal rules only decide which lines count towards the sentence
minimum; the text itself is kept whole. The most frequent n-gram must occur at least twice to
count as repetition (datatrove lets a single n-gram fail a short document).
"""

from __future__ import annotations

import itertools
import math
import re
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, Union

from corpuskit.clean.doc import Doc, display_len

Verdict = Union[bool, tuple[bool, str, str]]

EN_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
ZH_STOP_WORDS = ("的", "了", "是", "在", "和", "有", "我", "不", "这", "也", "就", "都", "人", "我们", "一个")
TERMINAL = (".", "!", "?", '"', "'", "。", "！", "？", "”", "」", "』", "…", "；")
_SENTENCE_END = re.compile(r"[.!?。！？]+[\"'”」』]?(?=\s|$)|[。！？]+[”」』]?")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_PARAGRAPH = re.compile(r"\n{2,}")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def _reject(rule: str, message: str) -> tuple[bool, str, str]:
    return False, rule, message


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in repeats): Gopher's find_duplicates."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    """Word n-grams as tuples (built in C by zip: this filter dominates clean's run time)."""
    return list(zip(*(words[k:] for k in range(n))))


def _repeated_ngram_chars(ngrams: list[tuple[str, ...]], n: int, prefix: list[int], sep: int) -> int:
    """Characters covered by repeated n-grams, skipping past each repeat (Gopher's
    find_all_duplicate). An n-gram's length is its words plus `sep` per gap, as in datatrove's
    space-joined n-grams; `prefix` holds cumulative word lengths."""
    if len(set(ngrams)) == len(ngrams):
        return 0  # the common case, decided at C speed
    seen: set[tuple[str, ...]] = set()
    chars = i = 0
    gaps = sep * (n - 1)
    total = len(ngrams)
    while i < total:
        g = ngrams[i]
        if g in seen:
            chars += prefix[i + n] - prefix[i] + gaps
            i += n
        else:
            seen.add(g)
            i += 1
    return chars


# options that are shares (of lines, paragraphs, characters, words): between 0 and 1
FRACTIONS = {"dup_line_frac", "dup_para_frac", "dup_line_char_frac", "dup_para_char_frac", "max_bullet_lines_ratio",
             "max_ellipsis_lines_ratio", "max_non_alpha_words_ratio", "line_punct_thr", "short_line_thr",
             "char_duplicates_ratio"}


def _number_problem(value: Any, fraction: bool) -> str | None:
    if not math.isfinite(value) or value < 0:
        return "a finite number >= 0"
    if fraction and value > 1:
        return "a fraction between 0 and 1"
    return None


def _check_option(filter_name: str, key: str, value: Any, default: Any) -> None:
    """A YAML option must have its default's type, so a typo fails at start-up with the option's
    name instead of deep inside a filter. Numbers may be null (rule off); they must be finite and
    >= 0, and shares between 0 and 1."""
    where = f"filters.{filter_name}.{key}"
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok, want = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)), "a number or null"
    elif default and isinstance(default[0], list):
        ok = isinstance(value, list) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and not isinstance(p[0], bool) and p[0] >= 1
            and isinstance(p[1], (int, float)) and not isinstance(p[1], bool) for p in value)
        want = "a list of [n, fraction] pairs"
    else:
        ok, want = isinstance(value, list) and all(isinstance(w, str) for w in value), "a list of strings"
    if not ok:
        raise ValueError(f"{where} must be {want}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = _number_problem(value, key in FRACTIONS)
        if problem:
            raise ValueError(f"{where} must be {problem}, got {value!r}")
    if key == "top_n_grams":
        for n, frac in value:
            if _number_problem(frac, True):
                raise ValueError(f"{where}: the fraction for {n}-grams must be between 0 and 1, got {frac!r}")


class Filter(ABC):
    """Base: `name` is the YAML key; `defaults` are the datatrove thresholds; `apply_to` the record kinds."""

    name = ""
    defaults: dict[str, Any] = {}
    default_apply_to: tuple[str, ...] = ("pretrain", "sft")

    def __init__(self, apply_to=None, **params):
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"filter {self.name}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)} and apply_to")
        for key, value in params.items():
            _check_option(self.name, key, value, self.defaults[key])
        self.params = {**self.defaults, **params}
        self.apply_to = tuple(apply_to) if apply_to is not None else self.default_apply_to
        for k, v in self.params.items():
            setattr(self, k, v)

    @abstractmethod
    def filter(self, doc: Doc) -> Verdict:
        """True to keep, or (False, rule, message)."""


class LengthFilter(Filter):
    """Bounds on characters after normalisation; catches records emptied by normalisation."""

    name = "length"
    defaults = {"min_chars": 1, "max_chars": 1_000_000}

    def filter(self, doc: Doc) -> Verdict:
        n = len(doc.text.strip())
        if self.min_chars and n < self.min_chars:
            return _reject("too_short", f"{n} characters < min_chars {self.min_chars}")
        if self.max_chars and n > self.max_chars:
            return _reject("too_long", f"{n} characters > max_chars {self.max_chars}")
        return True


class GopherRepetitionFilter(Filter):
    """Gopher (Rae et al. 2021, table A1) repetition rules, as datatrove implements them."""

    name = "gopher_repetition"
    defaults = {"dup_line_frac": 0.3, "dup_para_frac": 0.3, "dup_line_char_frac": 0.2,
                "dup_para_char_frac": 0.2, "top_n_grams": [[2, 0.2], [3, 0.18], [4, 0.16]],
                "dup_n_grams": [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]]}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        text = doc.text
        size = len(text) or 1
        paragraphs = _PARAGRAPH.split(text.strip())
        n, chars = _duplicates(paragraphs)
        if self.dup_para_frac and n / len(paragraphs) > self.dup_para_frac:
            return _reject("dup_para_frac", f"{n}/{len(paragraphs)} paragraphs repeated > {self.dup_para_frac}")
        if self.dup_para_char_frac and chars / size > self.dup_para_char_frac:
            return _reject("dup_para_char_frac", f"{chars / size:.2f} of characters in repeated paragraphs > {self.dup_para_char_frac}")
        lines = doc.lines
        n, chars = _duplicates(lines)
        if self.dup_line_frac and n / len(lines) > self.dup_line_frac:
            return _reject("dup_line_frac", f"{n}/{len(lines)} lines repeated > {self.dup_line_frac}")
        if self.dup_line_char_frac and chars / size > self.dup_line_char_frac:
            return _reject("dup_line_char_frac", f"{chars / size:.2f} of characters in repeated lines > {self.dup_line_char_frac}")
        # CJK characters are joined without a separator, so an n-gram's length is what it covers
        words, sep = doc.tokens, (0 if doc.is_cjk else 1)
        prefix = [0, *itertools.accumulate(map(len, words))]
        for n_, frac in self.top_n_grams or ():
            grams = _ngrams(words, n_)
            if grams:
                gram, count = Counter(grams).most_common(1)[0]
                share = (sum(map(len, gram)) + sep * (n_ - 1)) * count / size
                if count > 1 and share > frac:  # an n-gram seen once is not repetition (matters for short docs)
                    shown = ("" if doc.is_cjk else " ").join(gram)[:30]
                    return _reject(f"top_{n_}_gram", f"most frequent {n_}-gram {shown!r} x{count} covers {share:.2f} > {frac}")
        unique_from = None  # once no n-gram repeats, no longer one can: skip those sizes
        for n_, frac in self.dup_n_grams or ():
            if unique_from is not None and n_ >= unique_from:
                continue
            grams = _ngrams(words, n_)
            if grams:
                repeated = _repeated_ngram_chars(grams, n_, prefix, sep)
                if not repeated and len(set(grams)) == len(grams):
                    unique_from = n_
                share = repeated / size
                if share > frac:
                    return _reject(f"duplicated_{n_}_n_grams", f"repeated {n_}-grams cover {share:.2f} > {frac}")
        return True


class GopherQualityFilter(Filter):
    """Gopher quality rules. Mostly-Chinese documents use Chinese stop words and skip the
    average-word-length rule."""

    name = "gopher_quality"
    defaults = {"min_doc_words": 50, "max_doc_words": 100_000, "min_avg_word_length": 3,
                "max_avg_word_length": 10, "max_symbol_word_ratio": 0.1, "max_bullet_lines_ratio": 0.9,
                "max_ellipsis_lines_ratio": 0.3, "max_non_alpha_words_ratio": 0.8, "min_stop_words": 2,
                "stop_words": list(EN_STOP_WORDS), "stop_words_zh": list(ZH_STOP_WORDS)}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        text, words = doc.text, doc.words
        n = len(words)
        if self.min_doc_words and n < self.min_doc_words:
            return _reject("short_doc", f"{n} words < {self.min_doc_words}")
        if self.max_doc_words and n > self.max_doc_words:
            return _reject("long_doc", f"{n} words > {self.max_doc_words}")
        if n == 0:
            return _reject("short_doc", "no words")
        if not doc.is_cjk:
            avg = sum(map(len, words)) / n
            if self.min_avg_word_length and avg < self.min_avg_word_length:
                return _reject("below_avg_word_length", f"mean word length {avg:.1f} < {self.min_avg_word_length}")
            if self.max_avg_word_length and avg > self.max_avg_word_length:
                return _reject("above_avg_word_length", f"mean word length {avg:.1f} > {self.max_avg_word_length}")
        if self.max_symbol_word_ratio:
            if text.count("#") / n > self.max_symbol_word_ratio:
                return _reject("too_many_hashes", f"{text.count('#')} '#' for {n} words")
            ell = text.count("...") + text.count("…")
            if ell / n > self.max_symbol_word_ratio:
                return _reject("too_many_ellipsis", f"{ell} ellipses for {n} words")
        lines = doc.lines
        if self.max_bullet_lines_ratio:
            bullets = sum(s.lstrip().startswith(("•", "●", "·")) for s in lines)
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return _reject("too_many_bullets", f"{bullets}/{len(lines)} lines start with a bullet")
        if self.max_ellipsis_lines_ratio:
            ends = sum(s.rstrip().endswith(("...", "…")) for s in lines)
            if ends / len(lines) > self.max_ellipsis_lines_ratio:
                return _reject("too_many_end_ellipsis", f"{ends}/{len(lines)} lines end with an ellipsis")
        if self.max_non_alpha_words_ratio:
            alpha = sum(any(c.isalpha() for c in w) for w in words)
            if alpha / n < self.max_non_alpha_words_ratio:
                return _reject("below_alpha_threshold", f"only {alpha}/{n} words contain a letter")
        if self.min_stop_words:
            stop = set(self.stop_words_zh if doc.is_cjk else self.stop_words)
            if doc.is_cjk and doc.word_mode == "char":
                found = sum(text.count(w) for w in stop)  # multi-character stop words match as substrings
            else:
                found = sum(w.lower() in stop for w in words)
            if found < self.min_stop_words:
                return _reject("not_enough_stop_words", f"{found} stop words < {self.min_stop_words}")
        return True


class C4QualityFilter(Filter):
    """C4 rules (Raffel et al. 2020) as datatrove implements them, at document level: lines that
    C4 would remove do not count towards `min_num_sentences`, but the text is never cut."""

    name = "c4"
    defaults = {"remove_citations": True, "filter_no_terminal_punct": True, "min_num_sentences": 5,
                "min_words_per_line": 3, "max_word_length": 1000, "filter_lorem_ipsum": True,
                "filter_javascript": True, "filter_curly_bracket": True, "filter_policy": True}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        sentences = 0
        for line in doc.lines:
            line = line.strip()
            words = Doc(line, doc.word_mode).words
            if self.max_word_length and self.max_word_length > 0 and any(len(w) > self.max_word_length for w in line.split()):
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(TERMINAL) or line.endswith("...")):
                continue
            if self.min_words_per_line and len(words) < self.min_words_per_line:
                continue
            low = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in low:
                return _reject("lorem_ipsum", "contains 'lorem ipsum'")
            if self.filter_javascript and "javascript" in low:
                continue
            if self.filter_curly_bracket and "{" in line:
                return _reject("curly_bracket", "contains '{' (C4 drops pages with code)")
            if self.filter_policy and any(p in low for p in POLICY):
                continue
            sentences += max(1, len(_SENTENCE_END.findall(line)))
        if self.min_num_sentences and sentences < self.min_num_sentences:
            return _reject("too_few_sentences", f"{sentences} sentences in lines C4 keeps < {self.min_num_sentences}")
        return True


class FineWebQualityFilter(Filter):
    """FineWeb line rules (Penedo et al. 2024) as datatrove implements them; Chinese terminal
    punctuation counts, and CJK characters count twice in line length."""

    name = "fineweb"
    defaults = {"line_punct_thr": 0.12, "line_punct_exclude_zero": False, "short_line_thr": 0.67,
                "short_line_length": 30, "char_duplicates_ratio": 0.01, "new_line_ratio": 0.3}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        lines = doc.text.split("\n")
        ratio = sum(line.endswith(TERMINAL) for line in lines) / len(lines)
        if self.line_punct_thr is not None and ratio <= self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return _reject("line_punct_ratio", f"{ratio:.2f} of lines end in terminal punctuation <= {self.line_punct_thr}")
        ratio = sum(display_len(line) <= self.short_line_length for line in lines) / len(lines)
        if self.short_line_thr is not None and ratio >= self.short_line_thr:
            return _reject("short_line_ratio", f"{ratio:.2f} of lines are short >= {self.short_line_thr}")
        nonempty = [line for line in lines if line.strip()]
        size = len(doc.text.replace("\n", "")) or 1
        ratio = _duplicates(nonempty)[1] / size
        if self.char_duplicates_ratio is not None and ratio >= self.char_duplicates_ratio:
            return _reject("char_dup_ratio", f"{ratio:.3f} of characters in repeated lines >= {self.char_duplicates_ratio}")
        words = len(doc.tokens) or 1
        ratio = doc.text.count("\n") / words
        if self.new_line_ratio is not None and ratio > self.new_line_ratio:
            return _reject("list_ratio", f"{ratio:.2f} newlines per word > {self.new_line_ratio}")
        return True


FILTERS: dict[str, type[Filter]] = {f.name: f for f in (
    LengthFilter, GopherRepetitionFilter, GopherQualityFilter, C4QualityFilter, FineWebQualityFilter)}
ORDER = tuple(FILTERS)  # cheap first; a record is rejected by the first filter that fails
