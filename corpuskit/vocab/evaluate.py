"""Measure a merged tokenizer against its base on real lines.

Per line: tokens per character before and after, whether the merged ids equal the base ids,
whether SentencePiece (slow) and tokenizer.json (fast) ids agree, and whether both decode back
to the line. Lines the base itself cannot round-trip (it turns U+2581 into a space) are counted
apart, and lines holding a literal `<s>`/`</s>`/`<unk>` are left out of the slow/fast agreement
because the HF tokenizer reads those as special tokens by design.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator

from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, iter_records
from corpuskit.records import Rejected

BUILTIN_SAMPLES = {"builtin:zh": "vocab_eval_zh.txt", "builtin:en": "vocab_eval_en.txt",
                   "builtin:code": "vocab_eval_code.txt"}


def builtin_lines(name: str) -> list[str]:
    text = resources.files("corpuskit").joinpath("data", BUILTIN_SAMPLES[name]).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line.strip()]


def file_lines(path: str, encoding: str = "utf-8",
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> tuple[list[str], int]:
    """Non-blank lines of every record's text, and the number of input records rejected."""
    lines, rejected = [], 0
    for item in iter_records([path], encoding=encoding, max_record_bytes=max_record_bytes):
        if isinstance(item, Rejected):
            rejected += 1
            continue
        lines += [line for line in item.content_text().split("\n") if line.strip()]
    return lines, rejected


class Evaluator:
    def __init__(self, base_model: str | Path, merged_model: str | Path, merged_tokenizer_json: str | Path):
        import sentencepiece as spm
        from tokenizers import Tokenizer

        self.base = spm.SentencePieceProcessor(model_file=str(base_model))
        self.slow = spm.SentencePieceProcessor(model_file=str(merged_model))
        self.fast = Tokenizer.from_file(str(merged_tokenizer_json))
        self.specials = [self.slow.id_to_piece(i) for i in range(self.slow.get_piece_size())
                         if self.slow.is_control(i) or self.slow.is_unknown(i)]

    def line_stats(self, lines: Iterable[str]) -> Iterator[dict]:
        for line in lines:
            base_ids = self.base.encode(line)
            slow_ids = self.slow.encode(line)
            has_special = any(s in line for s in self.specials)
            fast_ids = None if has_special else self.fast.encode(line, add_special_tokens=False).ids
            yield {
                "chars": len(line), "base_tokens": len(base_ids), "tokens": len(slow_ids),
                "unchanged": slow_ids == base_ids,
                "agree": None if fast_ids is None else fast_ids == slow_ids,
                "base_round_trip": self.base.decode(base_ids) == line,
                "round_trip": self.slow.decode(slow_ids) == line and (
                    fast_ids is None or self.fast.decode(fast_ids, skip_special_tokens=False) == line),
            }

    def evaluate(self, lines: list[str]) -> dict:
        n = chars = base_tokens = tokens = unchanged = agree = compared = rt = rt_lines = 0
        for s in self.line_stats(lines):
            n += 1
            chars += s["chars"]
            base_tokens += s["base_tokens"]
            tokens += s["tokens"]
            unchanged += s["unchanged"]
            if s["agree"] is not None:
                compared += 1
                agree += s["agree"]
            if s["base_round_trip"]:
                rt_lines += 1
                rt += s["round_trip"]
        share = lambda a, b: round(a / b, 6) if b else None  # noqa: E731
        return {
            "lines": n, "chars": chars,
            "tokens_per_char_base": share(base_tokens, chars),
            "tokens_per_char_merged": share(tokens, chars),
            "ids_unchanged": share(unchanged, n),
            "slow_fast_agree": share(agree, compared),
            "slow_fast_lines_compared": compared,
            "round_trip": share(rt, rt_lines),
            "round_trip_lines": rt_lines,
            "lines_base_cannot_round_trip": n - rt_lines,
        }
