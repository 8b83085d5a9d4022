"""Write a Hugging Face tokenizer directory whose ids equal SentencePiece's on any text.

Why not let transformers convert the .model: its converter ranks BPE merges by piece id, but
SentencePiece merges by piece *score*. LLaMA-2 gives its whitespace pieces (`▁▁`, id 259) the
score -1e9, so the converted tokenizer merges spaces first and splits "foo  bar" differently
(HF [5431, 259, 1646], SentencePiece [7953, 29871, 2594]). Its Metaspace pre-tokenizer also skips
the dummy prefix when the text already starts with a space. Here the merges are ranked exactly as
SentencePiece applies them, and the text gets SentencePiece's own normalisation (always prepend
`▁`, spaces become `▁`, the whole text is one BPE word), so `tokenizer.json` is a faithful copy.

UNUSED pieces (the padding of `merge-vocab --pad-to-multiple-of`) are in the vocabulary but in no
merge, so neither side ever produces them.

Literal `<s>`, `</s>` and `<unk>` in text are read as special tokens by the HF tokenizer (as in
the official LLaMA-2 HF tokenizer) but as plain characters by SentencePiece; that is the one
intended difference. There is no pad token: set one (e.g. to `</s>` or `<unk>`) when batching.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sentencepiece import sentencepiece_model_pb2 as spm_pb2

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"
MODEL_TYPE_BPE = 2


class UnsupportedModel(ValueError):
    pass


def load_proto(model_path: str | Path) -> spm_pb2.ModelProto:
    proto = spm_pb2.ModelProto()
    proto.ParseFromString(Path(model_path).read_bytes())
    return proto


def merge_rank_key(piece: str, score: float, left: str) -> tuple:
    """SentencePiece pops the highest-score pair, leftmost first on ties. Scores of ordinary pieces
    are unique; tied ones (LLaMA-2's whitespace runs at -1e9) only ever grow a run from its left,
    which ranking the longer result and the longer left part first reproduces."""
    return (-score, -len(piece), -len(left))


def bpe_merges(proto: spm_pb2.ModelProto) -> list[tuple[str, str]]:
    """Every (left, right) pair of ordinary pieces whose concatenation is a piece, ranked as SentencePiece merges."""
    mergeable = {p.piece: p.score for p in proto.pieces if p.type == NORMAL}
    ranked = []
    for piece, score in mergeable.items():
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in mergeable and right in mergeable:
                ranked.append((merge_rank_key(piece, score, left), left, right))
    ranked.sort()
    return [(left, right) for _, left, right in ranked]


def export_problems(proto: spm_pb2.ModelProto) -> list[str]:
    """Why `proto` cannot be exported as an exact HF tokenizer (empty when it can)."""
    ns, ts = proto.normalizer_spec, proto.trainer_spec
    problems = []
    if ts.model_type != MODEL_TYPE_BPE:
        problems.append("model type is not BPE")
    if ns.name not in ("identity", "") or ns.precompiled_charsmap:
        problems.append(f"normalizer {ns.name!r} (only 'identity', as LLaMA-2 uses, is exported)")
    if ns.remove_extra_whitespaces:
        problems.append("remove_extra_whitespaces is on")
    if not ns.escape_whitespaces:
        problems.append("escape_whitespaces is off")
    if ts.treat_whitespace_as_suffix:
        problems.append("treat_whitespace_as_suffix is on")
    if any(p.type == USER_DEFINED for p in proto.pieces):
        problems.append("it has user-defined pieces")
    if not ts.byte_fallback:
        problems.append("byte_fallback is off")
    return problems


def check_supported(proto: spm_pb2.ModelProto, where: str) -> None:
    problems = export_problems(proto)
    if problems:
        raise UnsupportedModel(f"{where}: cannot export an exact HF tokenizer: " + "; ".join(problems))


def build_tokenizer_json(proto: spm_pb2.ModelProto) -> dict:
    """tokenizer.json content (as a dict) for a LLaMA-style byte-fallback BPE SentencePiece model."""
    ts = proto.trainer_spec
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    specials = [(i, p.piece) for i, p in enumerate(proto.pieces) if p.type in (UNKNOWN, CONTROL)]
    bos = proto.pieces[ts.bos_id].piece if ts.bos_id >= 0 else None
    normalizers = [{"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]
    if proto.normalizer_spec.add_dummy_prefix:
        normalizers.insert(0, {"type": "Prepend", "prepend": SPACE})
    decoders = [{"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}]
    if proto.normalizer_spec.add_dummy_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
    post = None
    if bos is not None:
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [ts.bos_id], "tokens": [bos]}}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": piece, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, piece in specials],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": None,
        "post_processor": post,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": None, "unk_token": proto.pieces[ts.unk_id].piece,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab,
                  "merges": [[left, right] for left, right in bpe_merges(proto)]},
    }


def tokenizer_config(proto: spm_pb2.ModelProto) -> dict:
    """Loaded verbatim by transformers 4 and 5 (`PreTrainedTokenizerFast`): the LLaMA class of
    transformers 5 would rebuild the pipeline with the Metaspace pre-tokenizer and lose parity."""
    ts = proto.trainer_spec
    piece = lambda i: proto.pieces[i].piece if i >= 0 else None  # noqa: E731
    decoder = {str(i): {"content": p.piece, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": True}
               for i, p in enumerate(proto.pieces) if p.type in (UNKNOWN, CONTROL)}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": ts.bos_id >= 0,
        "add_eos_token": False,
        "bos_token": piece(ts.bos_id),
        "eos_token": piece(ts.eos_id),
        "unk_token": piece(ts.unk_id),
        "pad_token": None,
        "added_tokens_decoder": decoder,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "padding_side": "right",
    }


def write_hf_tokenizer(model_path: str | Path, outdir: str | Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and a copy of the
    .model into `outdir` (created if missing); returns `outdir`."""
    outdir = Path(outdir)
    proto = load_proto(model_path)
    check_supported(proto, str(model_path))
    outdir.mkdir(parents=True, exist_ok=True)
    from corpuskit.outputs import atomic_file

    with atomic_file(outdir / "tokenizer.json") as fh:
        json.dump(build_tokenizer_json(proto), fh, ensure_ascii=False, indent=1)
    config = tokenizer_config(proto)
    with atomic_file(outdir / "tokenizer_config.json") as fh:
        json.dump(config, fh, ensure_ascii=False, indent=2)
    with atomic_file(outdir / "special_tokens_map.json") as fh:
        json.dump({k: config[k] for k in ("bos_token", "eos_token", "unk_token") if config[k]}, fh,
                  ensure_ascii=False, indent=2)
    if Path(model_path).resolve() != (outdir / "tokenizer.model").resolve():
        shutil.copyfile(model_path, outdir / "tokenizer.model")
    return outdir
