"""The filter base class: `filter(doc)` returns True (keep) or `(False, rule, message)`, the way
datatrove's `BaseFilter.filter` does. Filters never change text.

Options come in two layers: `defaults` (datatrove's thresholds, used for every document) and
`zh_defaults` (overrides for documents judged Chinese, see `Doc.is_cjk`). A YAML file may set an
option for all documents (`min_doc_words: 30`) or for Chinese ones only (`zh: {min_doc_words: 30}`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from types import SimpleNamespace
from typing import Any, Union

from corpuskit.clean.doc import Doc

Verdict = Union[bool, tuple[bool, str, str]]


def reject(rule: str, message: str) -> tuple[bool, str, str]:
    return False, rule, message


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


def check_option(filter_name: str, key: str, value: Any, default: Any) -> None:
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
    name = key.rsplit(".", 1)[-1]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = _number_problem(value, name in FRACTIONS)
        if problem:
            raise ValueError(f"{where} must be {problem}, got {value!r}")
    if name == "top_n_grams":
        for n, frac in value:
            if _number_problem(frac, True):
                raise ValueError(f"{where}: the fraction for {n}-grams must be between 0 and 1, got {frac!r}")


class Filter(ABC):
    """Base: `name` is the YAML key; `defaults` the datatrove thresholds; `zh_defaults` what
    changes for Chinese documents; `apply_to` the record kinds."""

    name = ""
    defaults: dict[str, Any] = {}
    zh_defaults: dict[str, Any] = {}
    default_apply_to: tuple[str, ...] = ("pretrain", "sft", "preference")  # preference: each reply

    def __init__(self, apply_to=None, zh: dict | None = None, **params):
        zh = dict(zh or {})
        for scope, given in (("", params), ("zh.", zh)):
            unknown = set(given) - set(self.defaults)
            if unknown:
                raise ValueError(f"filter {self.name}: unknown option(s) {sorted(scope + k for k in unknown)}; "
                                 f"known: {sorted(self.defaults)}, zh and apply_to")
            for key, value in given.items():
                check_option(self.name, scope + key, value, self.defaults[key])
        self.params = {**self.defaults, **params}
        self.params_zh = {**self.defaults, **self.zh_defaults, **params, **zh}
        self._en = SimpleNamespace(**self.params)
        self._zh = SimpleNamespace(**self.params_zh)
        self.apply_to = tuple(apply_to) if apply_to is not None else self.default_apply_to

    def opts(self, doc: Doc) -> SimpleNamespace:
        """The thresholds for this document's script."""
        return self._zh if doc.is_cjk else self._en

    def describe(self) -> dict:
        changed = {k: v for k, v in self.params_zh.items() if self.params.get(k) != v}
        return {**self.params, **({"zh": changed} if changed else {}), "apply_to": list(self.apply_to)}

    @abstractmethod
    def filter(self, doc: Doc) -> Verdict:
        """True to keep, or (False, rule, message)."""
