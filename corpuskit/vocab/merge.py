"""Append new pieces to a SentencePiece BPE model without changing how it tokenizes old text.

SentencePiece BPE repeatedly merges the adjacent pair whose concatenation has the highest score.
Appended pieces get scores below every base piece, so all base merges happen first: a text whose
base tokenization has no adjacent pair forming a new piece (English and code, when only CJK
pieces are added) keeps exactly the base ids. Public merge scripts append with score 0, which
outranks most base pieces and re-tokenizes ordinary English.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, InputError, expand_inputs, iter_records
from corpuskit.ingest.paths import not_regular
from corpuskit.ingest.readers import base_suffix
from corpuskit.records import Origin, Rejected
from corpuskit.vocab.hf import NORMAL, export_problems, load_proto
from corpuskit.vocab.scripts import has_cjk

SKIP_REASONS = {
    "special": "control, unknown, byte or unused piece of an added model (only ordinary pieces are added)",
    "has_whitespace": "piece holds a space, which SentencePiece turns into \u2581 (U+2581) before matching",
    "duplicate": "piece is already in the base vocabulary",
    "repeated": "piece was already added from an earlier input",
    "not_cjk": "piece has no CJK character (--only cjk)",
    "not_producible": "BPE can never produce it: no split into two producible pieces",
}


@dataclass(slots=True)
class Candidate:
    piece: str
    origin: Origin
    score: float | None = None  # score in the added model (None for jsonl pieces)


@dataclass(slots=True)
class Added:
    piece: str
    id: int
    score: float
    origin: Origin

    def to_json(self) -> dict:
        return {"piece": self.piece, "id": self.id, "score": self.score, "from": str(self.origin)}


def model_candidates(path: str) -> Iterator[Candidate | Rejected]:
    """Pieces of a SentencePiece model, highest score first (its own merge priority); the origin
    'line' is the piece id in that model."""
    try:
        proto = load_proto(path)
    except Exception as e:  # protobuf raises DecodeError on anything that is not a model
        raise InputError(path, f"not a SentencePiece model ({e})") from e
    if not proto.pieces:
        raise InputError(path, "not a SentencePiece model (no pieces)")
    order = sorted(range(len(proto.pieces)), key=lambda i: (-proto.pieces[i].score, i))
    for i in order:
        p = proto.pieces[i]
        origin = Origin(path, i)
        if p.type != NORMAL:
            yield Rejected("special", origin, f"piece {p.piece!r} has type {p.type}", raw=p.piece)
        else:
            yield Candidate(p.piece, origin, p.score)


def piece_file_candidates(path: str, encoding: str,
                          max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Candidate | Rejected]:
    for item in iter_records([path], fmt="canonical", to="piece", encoding=encoding, max_record_bytes=max_record_bytes):
        if isinstance(item, Rejected):
            yield item
        else:
            yield Candidate(item.piece, item.origin)


def iter_candidates(paths: Iterable[str], encoding: str = "utf-8",
                    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Candidate | Rejected]:
    """Candidates from every --add input, in input order."""
    for path in expand_inputs(paths):
        if path.endswith(".model"):
            yield from model_candidates(path)
        elif base_suffix(path) == ".jsonl":
            yield from piece_file_candidates(path, encoding, max_record_bytes)
        else:
            raise InputError(path, "--add takes SentencePiece .model files or {\"piece\": ...} .jsonl files")


def scores_below(floor: float, n: int) -> list[float]:
    """n strictly decreasing float32 scores below `floor` (the model stores float32, so each step
    must be a representable number, not just `floor - k`)."""
    out, s = [], np.float32(floor)
    for _ in range(n):
        s = np.nextafter(s, np.float32(-np.inf))
        out.append(float(s))
    return out


def producible(pieces: list[Candidate], known: set[str]) -> tuple[list[Candidate], list[Candidate]]:
    """Split candidates into those BPE can produce (single characters, or a split into two
    producible pieces, counting other candidates) and the rest; order is kept."""
    ok = set(known)
    accepted: set[str] = set()
    changed = True
    while changed:
        changed = False
        for c in pieces:
            p = c.piece
            if p in accepted:
                continue
            if len(p) == 1 or any(p[:i] in ok and p[i:] in ok for i in range(1, len(p))):
                ok.add(p)
                accepted.add(p)
                changed = True
    return [c for c in pieces if c.piece in accepted], [c for c in pieces if c.piece not in accepted]


def plan_merge(base, candidates: Iterable[Candidate | Rejected], only: str,
               report) -> tuple[list[Added], list[Rejected]]:
    """Decide which candidates are appended (with ids and scores) and which are skipped (with a
    reason); every candidate is counted in `report`."""
    skipped: list[Rejected] = []

    def skip(rej: Rejected) -> None:
        skipped.append(rej)
        report.reject(rej)

    base_pieces = {p.piece for p in base.pieces}
    mergeable = {p.piece for p in base.pieces if p.type == NORMAL}
    seen: set[str] = set()
    kept: list[Candidate] = []
    for c in candidates:
        if isinstance(c, Rejected):
            skip(c)
            continue
        reason = None
        if " " in c.piece:
            reason = "has_whitespace"
        elif c.piece in base_pieces:
            reason = "duplicate"
        elif c.piece in seen:
            reason = "repeated"
        elif only == "cjk" and not has_cjk(c.piece):
            reason = "not_cjk"
        if reason:
            skip(Rejected(reason, c.origin, f"{c.piece!r}: {SKIP_REASONS[reason]}", raw=c.piece))
            continue
        seen.add(c.piece)
        kept.append(c)
    ok, dropped = producible(kept, mergeable)
    for c in dropped:
        skip(Rejected("not_producible", c.origin, f"{c.piece!r}: {SKIP_REASONS['not_producible']}",
                               raw=c.piece))
    report.keep(len(ok))
    floor = min(p.score for p in base.pieces)
    scores = scores_below(floor, len(ok))
    start = len(base.pieces)
    return [Added(c.piece, start + k, scores[k], c.origin) for k, c in enumerate(ok)], skipped


def apply_merge(base, added: list[Added]):
    """The base proto with `added` appended (base pieces, ids and scores untouched)."""
    from sentencepiece import sentencepiece_model_pb2 as spm_pb2

    merged = spm_pb2.ModelProto()
    merged.CopyFrom(base)
    for a in added:
        p = merged.pieces.add()
        p.piece, p.score, p.type = a.piece, a.score, NORMAL
    merged.trainer_spec.vocab_size = len(merged.pieces)
    assert all(math.isfinite(p.score) for p in merged.pieces)
    return merged


PAD_PIECE = "<unused_{}>"


def pad_to_multiple(proto, multiple: int) -> list[str]:
    """Append UNUSED pieces until the vocabulary size is a multiple of `multiple` (GPU matmuls
    like sizes divisible by 64). SentencePiece never emits an UNUSED piece and no BPE merge
    produces one, so every text keeps its ids. Returns the pieces added."""
    from corpuskit.vocab.hf import UNUSED

    known = {p.piece for p in proto.pieces}
    added: list[str] = []
    k = 0
    while (len(proto.pieces)) % multiple:
        name = PAD_PIECE.format(k)
        k += 1
        if name in known:
            continue
        p = proto.pieces.add()
        p.piece, p.score, p.type = name, 0.0, UNUSED
        added.append(name)
    proto.trainer_spec.vocab_size = len(proto.pieces)
    return added


def read_base(path: str | Path):
    if not Path(path).is_file():
        if Path(path).exists():  # a FIFO or a device: never read (it would block or never end)
            raise not_regular(str(path), os.stat(path))
        raise InputError(str(path), "no such file")
    try:
        proto = load_proto(path)
    except Exception as e:
        raise InputError(str(path), f"not a SentencePiece model ({e})") from e
    if proto.trainer_spec.model_type != 2:
        raise InputError(str(path), "--base must be a BPE SentencePiece model (like LLaMA-2's)")
    problems = export_problems(proto)
    if problems:  # checked here so the error names --base, not the temp output folder
        raise InputError(str(path), "--base must be LLaMA-style to get an exact HF tokenizer: " + "; ".join(problems))
    return proto
