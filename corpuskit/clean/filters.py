"""Quality filters in the datatrove style: `filter(doc)` returns True (keep) or
`(False, rule, message)`. Filters never change text; normalisation is a separate, reported step.

The rules and default thresholds follow datatrove's GopherRepetitionFilter, GopherQualityFilter,
C4QualityFilter and FineWebQualityFilter. Chinese documents (see `Doc.is_cjk`) get their own
thresholds (`zh_defaults`, after FineWeb-2's cmn_Hani configuration where it has one) and count
in characters: words are CJK characters or jieba words (see `doc.py`), Chinese terminal
punctuation counts as terminal, Chinese stop words are used, the average-word-length rule is off
(a CJK word is 1-2 characters by nature), and line lengths count a CJK character as two. Lines in
fenced code blocks are not prose lines. C4's line-removal rules only decide which lines count
towards the sentence minimum; the text itself is kept whole. The most frequent n-gram must occur
at least twice to count as repetition (datatrove lets a single n-gram fail a short document).

With `records: paragraphs` (the default) a record is a paragraph, review or chat turn: rules over
lines judge only records of 2+ lines, and the word-statistics rules (Gopher's page minimum, word
ratios, n-gram shares) only records of at least `min_doc_words` words. Such short records are
judged by the rules that look at their characters (`junk.py`). `records: pages` judges every
record as a web page, as datatrove does.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter

from corpuskit.clean.base import Filter, Verdict, check_option, reject
from corpuskit.clean.doc import Doc, display_len
from corpuskit.clean.junk import BoilerplateFilter, EncodingFilter, GibberishFilter, MarkupFilter

__all__ = ["FILTERS", "ORDER", "Filter", "Verdict", "check_option"]

_reject = reject
EN_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# FineWeb-2's cmn_Hani stop words (its "·" left out), plus frequent function characters of
# news and everyday writing, so terse real paragraphs (lists of routes, specs) still count
ZH_STOP_WORDS = ("的", "年", "在", "月", "是", "和", "日", "了", "於", "为", "為", "有", "被", "人", "中", "他",
                 "与", "與", "后", "後", "也", "而", "由", "我", "你", "不", "这", "這", "就", "都", "等", "对", "對",
                 "以", "及", "将", "將", "从", "從", "到", "上", "个", "個", "之", "其", "并", "要", "会", "會",
                 "可", "还", "還", "很", "把")
TERMINAL = (".", "!", "?", '"', "'", "。", "！", "？", "”", "」", "』", "…", "；")
_SENTENCE_END = re.compile(r"[.!?。！？]+[\"'”」』]?(?=\s|$)|[。！？]+[”」』]?")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_PARAGRAPH = re.compile(r"\n{2,}")
_ELLIPSIS = re.compile(r"\.{3,}|…+")  # a run is one ellipsis: Chinese writes …… (two characters)
_CJK_WORD = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]$")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


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


class LengthFilter(Filter):
    """Bounds on characters after normalisation; catches records emptied by normalisation."""

    name = "length"
    defaults = {"min_chars": 1, "max_chars": 1_000_000}

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        n = len(doc.text.strip())
        if p.min_chars and n < p.min_chars:
            return _reject("too_short", f"{n} characters < min_chars {p.min_chars}")
        if p.max_chars and n > p.max_chars:
            return _reject("too_long", f"{n} characters > max_chars {p.max_chars}")
        return True


class GopherRepetitionFilter(Filter):
    """Gopher (Rae et al. 2021, table A1) repetition rules, as datatrove implements them. For
    Chinese the n-grams are of characters, with thresholds measured on real Chinese text (see
    docs/benchmarks.md); `min_doc_words` is the size below which a paragraph's n-gram shares are
    too noisy to judge (Gopher only measured documents of 50+ words)."""

    name = "gopher_repetition"
    defaults = {"dup_line_frac": 0.3, "dup_para_frac": 0.3, "dup_line_char_frac": 0.2,
                "dup_para_char_frac": 0.2, "top_n_grams": [[2, 0.2], [3, 0.18], [4, 0.16]],
                "dup_n_grams": [[5, 0.15], [6, 0.14], [7, 0.13], [8, 0.12], [9, 0.11], [10, 0.10]],
                "min_doc_words": 50}
    # FineWeb-2's cmn_Hani thresholds (set there on jieba words), applied to character n-grams
    zh_defaults = {"dup_line_frac": 0.287, "top_n_grams": [[2, 0.256], [3, 0.201], [4, 0.171]],
                   "dup_n_grams": [[5, 0.198], [6, 0.182], [7, 0.167], [8, 0.154], [9, 0.14], [10, 0.127]]}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        text = doc.text
        size = len(text) or 1
        paragraphs = _PARAGRAPH.split(text.strip())
        n, chars = _duplicates(paragraphs)
        if p.dup_para_frac and n / len(paragraphs) > p.dup_para_frac:
            return _reject("dup_para_frac", f"{n}/{len(paragraphs)} paragraphs repeated > {p.dup_para_frac}")
        if p.dup_para_char_frac and chars / size > p.dup_para_char_frac:
            return _reject("dup_para_char_frac", f"{chars / size:.2f} of characters in repeated paragraphs > {p.dup_para_char_frac}")
        lines = doc.prose_lines or [""]
        n, chars = _duplicates(lines)
        if p.dup_line_frac and n / len(lines) > p.dup_line_frac:
            return _reject("dup_line_frac", f"{n}/{len(lines)} lines repeated > {p.dup_line_frac}")
        if p.dup_line_char_frac and chars / size > p.dup_line_char_frac:
            return _reject("dup_line_char_frac", f"{chars / size:.2f} of characters in repeated lines > {p.dup_line_char_frac}")
        doc = doc.prose_doc  # n-grams of prose: code repeats names and paths by nature
        size = len(doc.text) or 1
        if doc.records == "paragraphs" and p.min_doc_words and len(doc.words) < p.min_doc_words:
            return True
        # CJK characters are joined without a separator, so an n-gram's length is what it covers
        words, sep = doc.tokens, (0 if doc.is_cjk else 1)
        prefix = [0, *itertools.accumulate(map(len, words))]
        for n_, frac in p.top_n_grams or ():
            grams = _ngrams(words, n_)
            if grams:
                gram, count = Counter(grams).most_common(1)[0]
                share = (sum(map(len, gram)) + sep * (n_ - 1)) * count / size
                if count > 1 and share > frac:  # an n-gram seen once is not repetition (matters for short docs)
                    shown = ("" if doc.is_cjk else " ").join(gram)[:30]
                    return _reject(f"top_{n_}_gram", f"most frequent {n_}-gram {shown!r} x{count} covers {share:.2f} > {frac}")
        unique_from = None  # once no n-gram repeats, no longer one can: skip those sizes
        for n_, frac in p.dup_n_grams or ():
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
    """Gopher quality rules. Chinese documents use Chinese stop words and skip the
    average-word-length rule; an ellipsis is a run of dots or of … (Chinese writes ……)."""

    name = "gopher_quality"
    defaults = {"min_doc_words": 50, "max_doc_words": 100_000, "min_avg_word_length": 3,
                "max_avg_word_length": 10, "max_symbol_word_ratio": 0.1, "max_bullet_lines_ratio": 0.9,
                "max_ellipsis_lines_ratio": 0.3, "max_non_alpha_words_ratio": 0.8, "min_stop_words": 2,
                "stop_words": list(EN_STOP_WORDS)}
    zh_defaults = {"min_avg_word_length": None, "max_avg_word_length": None, "stop_words": list(ZH_STOP_WORDS)}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        text, words = doc.text, doc.words
        n = len(words)
        if p.min_doc_words and n < p.min_doc_words:
            if doc.records == "paragraphs":
                return True  # a short paragraph, not a short page: too few words for word statistics
            return _reject("short_doc", f"{n} words < {p.min_doc_words}")
        if p.max_doc_words and n > p.max_doc_words:
            return _reject("long_doc", f"{n} words > {p.max_doc_words}")
        if n == 0:
            return _reject("short_doc", "no words")
        latin = [w for w in words if not _CJK_WORD.match(w)] or words  # a CJK character is not a short word
        avg = sum(map(len, latin)) / len(latin)
        if p.min_avg_word_length and avg < p.min_avg_word_length:
            return _reject("below_avg_word_length", f"mean word length {avg:.1f} < {p.min_avg_word_length}")
        if p.max_avg_word_length and avg > p.max_avg_word_length:
            return _reject("above_avg_word_length", f"mean word length {avg:.1f} > {p.max_avg_word_length}")
        if p.max_symbol_word_ratio:
            if text.count("#") / n > p.max_symbol_word_ratio:
                return _reject("too_many_hashes", f"{text.count('#')} '#' for {n} words")
            ell = len(_ELLIPSIS.findall(text))
            if ell / n > p.max_symbol_word_ratio:
                return _reject("too_many_ellipsis", f"{ell} ellipses for {n} words")
        lines = doc.prose_lines
        if lines and doc.line_rules_apply:
            if p.max_bullet_lines_ratio:
                bullets = sum(s.lstrip().startswith(("•", "●", "·")) for s in lines)
                if bullets / len(lines) > p.max_bullet_lines_ratio:
                    return _reject("too_many_bullets", f"{bullets}/{len(lines)} lines start with a bullet")
            if p.max_ellipsis_lines_ratio:
                ends = sum(s.rstrip().endswith(("...", "…")) for s in lines)
                if ends / len(lines) > p.max_ellipsis_lines_ratio:
                    return _reject("too_many_end_ellipsis", f"{ends}/{len(lines)} lines end with an ellipsis")
        if p.max_non_alpha_words_ratio:
            alpha = n - sum(map(str.isdigit, words))  # words are letters or digits: the rest have a letter
            if alpha / n < p.max_non_alpha_words_ratio:
                return _reject("below_alpha_threshold", f"only {alpha}/{n} words contain a letter")
        if p.min_stop_words:
            stop = set(p.stop_words)
            if doc.is_cjk and doc.word_mode == "char":
                found = sum(text.count(w) for w in stop)  # multi-character stop words match as substrings
            else:
                found = sum(w.lower() in stop for w in words)
            if found < p.min_stop_words:
                return _reject("not_enough_stop_words", f"{found} stop words < {p.min_stop_words}")
        return True


class C4QualityFilter(Filter):
    """C4 rules (Raffel et al. 2020) as datatrove implements them, at document level: lines that
    C4 would remove do not count towards `min_num_sentences`, but the text is never cut. The
    sentence minimum is a page rule: with `records: paragraphs` a one-line record skips it."""

    name = "c4"
    defaults = {"remove_citations": True, "filter_no_terminal_punct": True, "min_num_sentences": 5,
                "min_words_per_line": 3, "max_word_length": 1000, "filter_lorem_ipsum": True,
                "filter_javascript": True, "filter_curly_bracket": True, "filter_policy": True}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        p = self.opts(doc)
        sentences = 0
        for line in doc.prose_lines:
            line = line.strip()
            words = Doc(line, doc.word_mode).words
            if p.max_word_length and p.max_word_length > 0 and any(len(w) > p.max_word_length for w in line.split()):
                continue
            if p.remove_citations:
                line = _CITATION.sub("", line)
            if p.filter_no_terminal_punct and (not line.endswith(TERMINAL) or line.endswith("...")):
                continue
            if p.min_words_per_line and len(words) < p.min_words_per_line:
                continue
            low = line.lower()
            if p.filter_lorem_ipsum and "lorem ipsum" in low:
                return _reject("lorem_ipsum", "contains 'lorem ipsum'")
            if p.filter_javascript and "javascript" in low:
                continue
            if p.filter_curly_bracket and "{" in line:
                return _reject("curly_bracket", "contains '{' (C4 drops pages with code)")
            if p.filter_policy and any(x in low for x in POLICY):
                continue
            sentences += max(1, len(_SENTENCE_END.findall(line)))
        if p.min_num_sentences and sentences < p.min_num_sentences and doc.line_rules_apply:
            return _reject("too_few_sentences", f"{sentences} sentences in lines C4 keeps < {p.min_num_sentences}")
        return True


class FineWebQualityFilter(Filter):
    """FineWeb line rules (Penedo et al. 2024) as datatrove implements them; Chinese terminal
    punctuation counts, and CJK characters count twice in line length. Chinese documents take
    FineWeb-2's cmn_Hani choices: its line-punctuation and newline thresholds, no short-line
    rule, and 0.1 of characters in repeated lines (FineWeb-2 raised 0.01 for every language)."""

    name = "fineweb"
    defaults = {"line_punct_thr": 0.12, "line_punct_exclude_zero": False, "short_line_thr": 0.67,
                "short_line_length": 30, "char_duplicates_ratio": 0.01, "new_line_ratio": 0.3}
    zh_defaults = {"line_punct_thr": 0.106, "short_line_thr": None, "char_duplicates_ratio": 0.1,
                   "new_line_ratio": 0.178}
    default_apply_to = ("pretrain",)

    def filter(self, doc: Doc) -> Verdict:
        if not doc.line_rules_apply:
            return True
        p = self.opts(doc)
        lines = doc.prose_lines
        if not lines:
            return True  # nothing but code
        ratio = sum(line.endswith(TERMINAL) for line in lines) / len(lines)
        if p.line_punct_thr is not None and ratio <= p.line_punct_thr and not (ratio == 0 and p.line_punct_exclude_zero):
            return _reject("line_punct_ratio", f"{ratio:.2f} of lines end in terminal punctuation <= {p.line_punct_thr}")
        ratio = sum(display_len(line) <= p.short_line_length for line in lines) / len(lines)
        if p.short_line_thr is not None and ratio >= p.short_line_thr:
            return _reject("short_line_ratio", f"{ratio:.2f} of lines are short >= {p.short_line_thr}")
        size = len(doc.text.replace("\n", "")) or 1
        ratio = _duplicates(lines)[1] / size
        if p.char_duplicates_ratio is not None and ratio >= p.char_duplicates_ratio:
            return _reject("char_dup_ratio", f"{ratio:.3f} of characters in repeated lines >= {p.char_duplicates_ratio}")
        words = len(doc.tokens) or 1
        ratio = doc.text.count("\n") / words
        if p.new_line_ratio is not None and ratio > p.new_line_ratio:
            return _reject("list_ratio", f"{ratio:.2f} newlines per word > {p.new_line_ratio}")
        return True


FILTERS: dict[str, type[Filter]] = {f.name: f for f in (
    LengthFilter, EncodingFilter, MarkupFilter, BoilerplateFilter, GopherRepetitionFilter, GibberishFilter,
    GopherQualityFilter, FineWebQualityFilter, C4QualityFilter)}
ORDER = tuple(FILTERS)  # a record is rejected by the first filter that fails: junk rules name the cause first
