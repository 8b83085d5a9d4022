"""Train a SentencePiece model from canonical records or plain text.

Input is streamed once: every record's text is cut into lines (SentencePiece's sentences), a
seeded coin sends about 1 line in 50 to a held-back reservoir for the report, and the rest go
through reservoir sampling (Algorithm R), so memory is bounded by `--max-sentences` whatever the
corpus size and the sample depends only on the input and the seed.

With `--pre-tokenize jieba`, each sampled line is segmented by jieba and the words are joined
with a private-use delimiter passed to SentencePiece as `pretokenization_delimiter`: pieces never
cross a word boundary and never contain the delimiter. (Joining with spaces, as some recipes do,
teaches the model `▁`-prefixed Chinese pieces that never match real, unspaced Chinese text.)
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from corpuskit.ingest import iter_records
from corpuskit.records import Rejected

DELIMITER = "\ue000"     # private-use character: never in real text (lines holding it are cleaned)
MAX_LINE_CHARS = 1000    # SentencePiece silently drops sentences over max_sentence_length bytes
MAX_SENTENCE_BYTES = 4 * MAX_LINE_CHARS + 192
HOLDOUT_SHARE = 0.02
HOLDOUT_MAX = 2000


@dataclass
class Sample:
    sentences: list[str] = field(default_factory=list)
    held_back: list[str] = field(default_factory=list)
    lines_seen: int = 0
    held_back_seen: int = 0
    long_lines_cut: int = 0


def record_lines(text: str) -> Iterator[str]:
    """Non-blank lines of a record, cut to MAX_LINE_CHARS so SentencePiece keeps them all."""
    for line in text.replace(DELIMITER, " ").split("\n"):
        line = line.strip("\r")
        if not line.strip():
            continue
        for start in range(0, len(line), MAX_LINE_CHARS):
            yield line[start:start + MAX_LINE_CHARS]


def reservoir_sample(items: Iterable, sample: Sample, max_sentences: int, seed: int, report) -> Sample:
    """Consume records (or Rejected), filling `sample`; counts every record in `report`."""
    rng = random.Random(seed)
    hold_rng = random.Random(seed + 1)
    for item in items:
        if isinstance(item, Rejected):
            report.reject(item)
            continue
        report.keep()
        text = item.content_text()
        for line in record_lines(text):
            if len(line) == MAX_LINE_CHARS:
                sample.long_lines_cut += 1
            if hold_rng.random() < HOLDOUT_SHARE:
                sample.held_back_seen += 1
                _reservoir_add(sample.held_back, line, sample.held_back_seen, HOLDOUT_MAX, hold_rng)
                continue
            sample.lines_seen += 1
            _reservoir_add(sample.sentences, line, sample.lines_seen, max_sentences, rng)
    return sample


def _reservoir_add(bucket: list, item, seen: int, cap: int, rng: random.Random) -> None:
    if len(bucket) < cap:
        bucket.append(item)
    else:
        j = rng.randrange(seen)
        if j < cap:
            bucket[j] = item


def _jieba_segment(line: str) -> str:
    import jieba

    return DELIMITER.join(w for w in jieba.cut(line, HMM=True) if w)


def jieba_segment_all(lines: list[str], workers: int, progress) -> list[str]:
    """Segment lines in order; the result does not depend on `workers`."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    if workers <= 1:
        jieba.initialize()
        return [_jieba_segment(line) for line in progress(lines, "jieba", total=len(lines), unit="line")]
    from corpuskit.pool import worker_pool

    with worker_pool(workers, jieba.initialize, start_method="fork") as pool:
        return list(progress(pool.imap(_jieba_segment, lines, chunksize=256), "jieba",
                             total=len(lines), unit="line"))


class TrainingFailed(Exception):
    pass


def train_sentencepiece(sentences: list[str], vocab_size: int, model_type: str, character_coverage: float,
                        normalization: str, workers: int, seed: int, delimiter: str | None,
                        workdir: str | Path | None = None) -> tuple[bytes, str]:
    """Train offline on the in-memory sample; returns (model bytes, .vocab text).

    The settings mirror LLaMA-2's tokenizer (byte fallback, split digits, no whitespace folding)
    so the pieces can be appended to it. Input shuffling and sampling are off (we sampled
    already); SentencePiece's own random generator is seeded as well.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    spm.set_random_generator_seed(seed)
    # Unigram EM sums expected counts per thread, so its scores change in the last digits with
    # the thread count; BPE training gives the same bytes for any thread count.
    threads = workers if model_type == "bpe" else 1
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:  # in the output's temp folder: no leftover
        prefix = str(Path(tmp) / "tokenizer")
        kwargs = dict(
            sentence_iterator=iter(sentences), model_prefix=prefix, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage,
            normalization_rule_name=normalization, byte_fallback=True, split_digits=True,
            remove_extra_whitespaces=False, add_dummy_prefix=True, allow_whitespace_only_pieces=True,
            max_sentencepiece_length=16, max_sentence_length=MAX_SENTENCE_BYTES,
            input_sentence_size=0, shuffle_input_sentence=False, num_threads=threads,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, train_extremely_large_corpus=False)
        if delimiter:
            kwargs["pretokenization_delimiter"] = delimiter
        try:
            spm.SentencePieceTrainer.train(**kwargs)
        except RuntimeError as e:
            raise TrainingFailed(str(e).strip().splitlines()[-1]) from e
        proto = spm_pb2.ModelProto()
        proto.ParseFromString(Path(prefix + ".model").read_bytes())
        # Where and with how many threads it was trained is not part of the model: drop those
        # fields so the temp folder and --workers never change the output bytes.
        for name in ("num_threads", "model_prefix", "input"):
            proto.trainer_spec.ClearField(name)
        vocab = Path(prefix + ".vocab").read_text(encoding="utf-8")
    return proto.SerializeToString(), vocab


def held_back_metrics(model_bytes: bytes, lines: list[str]) -> dict:
    """Tokens per character, the share of characters that are pieces themselves (coverage), and
    the share of tokens spent on byte fallback, on lines never used for training."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    chars = tokens = fallback = covered = counted = 0
    for line in lines:
        ids = sp.encode(line)
        chars += len(line)
        tokens += len(ids)
        fallback += sum(1 for i in ids if sp.is_byte(i) or sp.is_unknown(i))
        for ch in line:
            if not ch.isspace():
                counted += 1
                covered += not sp.is_unknown(sp.piece_to_id(ch))
    r = lambda a, b: round(a / b, 6) if b else None  # noqa: E731
    return {"held_back_lines": len(lines), "held_back_chars": chars, "tokens_per_char": r(tokens, chars),
            "char_coverage": r(covered, counted), "byte_fallback_token_share": r(fallback, tokens)}

