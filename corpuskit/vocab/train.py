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
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from corpuskit.engine.executor import Executor
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import Split, count_lines
from corpuskit.engine.tasks import BATCH, RecordTask, record_tasks, task_items
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES
from corpuskit.ingest.steps import ParseStep
from corpuskit.records import Origin, Rejected
from corpuskit.step import Step, StepOutput, register_step, run_steps

DELIMITER = "\ue000"     # private-use character: never in real text (lines holding it are cleaned)
MAX_LINE_CHARS = 1000    # SentencePiece silently drops sentences over max_sentence_length bytes
MAX_SENTENCE_BYTES = 4 * MAX_LINE_CHARS + 192
HOLDOUT_SHARE = 0.02
HOLDOUT_MAX = 2000
JIEBA_TASK = 2048        # lines per jieba task: enough work to outweigh sending it to a worker


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
    """Consume records or their texts (or Rejected), filling `sample`; counts every record in `report`."""
    rng = random.Random(seed)
    hold_rng = random.Random(seed + 1)
    for item in items:
        if isinstance(item, Rejected):
            report.reject(item)
            continue
        report.keep()
        text = item if isinstance(item, str) else item.content_text()
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


def _jieba_ready() -> None:
    """Load jieba's dictionary once per process (quietly), in whichever process runs the step."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()  # a no-op once loaded


@register_step("jieba-segment")
@dataclass(frozen=True)
class JiebaStep(Step):
    """Lines -> the same lines cut into jieba words joined by DELIMITER (one output per input line)."""

    def process(self, batch) -> StepOutput:
        _jieba_ready()
        return StepOutput(kept=[_jieba_segment(line) for line in batch])


def _segment_task(lines: tuple[str, ...]) -> list[str]:
    return run_steps([JiebaStep()], list(lines)).kept


def jieba_segment_all(lines: list[str], executor: Executor, progress) -> list[str]:
    """Segment lines in order on the executor (JIEBA_TASK lines per task); the result does not
    depend on the engine or its workers."""
    out: list[str] = []
    bar = progress(None, "jieba", total=len(lines), unit="line")
    tasks = (tuple(lines[i:i + JIEBA_TASK]) for i in range(0, len(lines), JIEBA_TASK))
    for part in executor.map(_segment_task, tasks):
        out.extend(part)
        bar.update(len(part))
    bar.close()
    return out


@register_step("content-text")
@dataclass(frozen=True)
class ContentTextStep(Step):
    """Records -> the text train-vocab learns from (Record.content_text)."""

    def process(self, batch) -> StepOutput:
        return StepOutput(kept=[rec.content_text() for rec in batch])


@dataclass(frozen=True)
class VocabSteps:
    """Picklable builder of the reading steps (engine.tasks.RecordTask.build_steps)."""

    fmt: str = "auto"

    def __call__(self) -> list[Step]:
        return [ParseStep(self.fmt), ContentTextStep()]


@dataclass
class TextPart:
    split: Split
    texts: list[str]
    rejected: list[Rejected]
    n_lines: int


def _text_task(task: RecordTask) -> TextPart:
    """Worker: one piece of input -> its records' texts and its rejects."""
    steps, items = task.build_steps(), task_items(task)
    texts: list[str] = []
    rejected: list[Rejected] = []
    while batch := list(islice(items, BATCH)):
        out = run_steps(steps, batch)
        texts.extend(out.kept)
        rejected.extend(out.rejected)
    split = task.split
    return TextPart(split, texts, rejected, count_lines(split) if task.items is None and not split.whole else 0)


def read_texts(files: list[str], executor: Executor, fmt: str = "auto", encoding: str = "utf-8",
               max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               split_bytes: int | None = None) -> Iterator[str | Rejected]:
    """Every input record's text, or its reject (with its file's own line), read in splits on the
    executor; texts in input order, so the sample does not depend on the engine or split size."""
    numbers = LineNumbers()
    tasks = record_tasks(files, VocabSteps(fmt), encoding, max_record_bytes, split_bytes, executor.workers)
    for part in executor.map(_text_task, tasks):
        off = numbers.offset(part.split, part.n_lines)
        for rej in part.rejected:
            if off:
                rej.origin = Origin(rej.origin.path, rej.origin.line + off)
            yield rej
        yield from part.texts


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

