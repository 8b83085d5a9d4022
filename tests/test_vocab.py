"""train-vocab and merge-vocab end to end on tests/data, plus the HF tokenizer parity property."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main

pytestmark = pytest.mark.xdist_group("vocab")

ADVERSARIAL = [
    "", " ", "  ", "foo  bar", " foo", "  foo", "foo ", "a\n\nb", "\n", "\t x\ty", "a" + " " * 40 + "b",
    " " * 17, "emoji 😀👍🏽 done 🇨🇳", "中文 English 混合，好吗？", "def f(x):\n    return x  # c\n",
    "ǅ ﬁ Å é e\u0301", "\x00x\x7f", "\u200b\u200dzero width", "龘龘 𠀀𪚥 rare CJK", "カタカナ 한국어",
    "   中国   人民  ", "1234567890 3.14159", "<html><body class=\"x\">&nbsp;</body></html>",
    "\r\nwindows\r\n", "ａｂｃ　全角", "x" * 300, "中" * 200,
]


def run(args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def real_lines(data_dir: Path) -> list[str]:
    lines = []
    for rec in json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8")):
        for turn in rec["conversations"]:
            lines.append(turn["value"])
            lines += turn["value"].split("\n")
    for name in ("peoples_daily_199801_head.txt", "reviews_pos_head.txt", "reviews_neg_head.txt"):
        lines += (data_dir / name).read_text(encoding="utf-8").split("\n")
    return lines


def fuzz_strings(lines: list[str], n: int = 400, seed: int = 7) -> list[str]:
    """Seeded mixes of real fragments with whitespace runs, newlines and odd characters."""
    rng = random.Random(seed)
    glue = [" ", "  ", "   ", "\n", "\t", "", "😀", "\u3000", "龘", "é", " \n ", "▁"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 5)):
            line = rng.choice(lines)
            start = rng.randint(0, max(0, len(line) - 1))
            parts.append(line[start:start + rng.randint(0, 60)])
            parts.append(rng.choice(glue))
        out.append("".join(parts))
    return out


def assert_parity(model: Path, tokenizer_json: Path, texts: list[str]) -> None:
    import sentencepiece as spm
    from tokenizers import Tokenizer

    sp = spm.SentencePieceProcessor(model_file=str(model))
    fast = Tokenizer.from_file(str(tokenizer_json))
    bad = [t for t in texts if sp.encode(t) != fast.encode(t, add_special_tokens=False).ids]
    assert not bad, f"{len(bad)} of {len(texts)} texts differ, e.g. {bad[:3]!r}"
    # decoding agrees too, and both restore the text unless it holds U+2581 (SentencePiece's space)
    for t in texts:
        ids = sp.encode(t)
        assert fast.decode(ids, skip_special_tokens=False) == sp.decode(ids)
        if "\u2581" not in t:
            assert sp.decode(ids) == t


@pytest.fixture(scope="module")
def pd_jsonl(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("pd") / "news.jsonl"
    r = run(["convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", out])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def zh_vocab(tmp_path_factory, data_dir, pd_jsonl) -> Path:
    out = tmp_path_factory.mktemp("zh") / "vocab"
    r = run(["train-vocab", data_dir / "reviews_pos_head.txt", pd_jsonl, "-o", out, "--vocab-size", 3000,
             "--character-coverage", 0.995, "--pre-tokenize", "jieba", "--workers", 2])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def extra_pieces(tmp_path_factory) -> Path:
    """A hand-written piece file exercising every skip reason (built here, on purpose)."""
    path = tmp_path_factory.mktemp("pieces") / "extra.jsonl"
    rows = ['{"piece": "人工智能"}', '{"piece": "人工"}', '{"piece": "智能"}',  # producible via each other
            '{"piece": "the"}',           # duplicate of a base piece
            '{"piece": "xyzzyq"}',        # no CJK
            '{"piece": "人工"}',           # repeated
            '{"piece": "中 国"}',          # real space
            '{"piece": "龘𪚥"}',           # rare characters in neither vocabulary: never producible
            '{"text": "not a piece"}',    # wrong kind
            '{"piece": 3}',               # wrong type
            '{"piece": "broken',          # parse error
            ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def merged(tmp_path_factory, llama2_model, zh_vocab, extra_pieces, pd_jsonl, data_dir) -> Path:
    out = tmp_path_factory.mktemp("merged") / "llama2-zh"
    r = run(["merge-vocab", "--base", llama2_model, "--add", zh_vocab / "tokenizer.model", "--add", extra_pieces,
             "-o", out, "--eval", pd_jsonl, "--eval", data_dir / "reviews_neg_head.txt"])
    assert r.exit_code == 0, r.output
    return out


def test_train_vocab_report_and_determinism(zh_vocab, data_dir, pd_jsonl, tmp_path):
    report = json.loads((zh_vocab / "report.json").read_text())
    d = report["details"]
    assert report["counts"] == {"input": 700, "kept": 700, "rejected": {}}
    assert d["held_back_lines"] > 0 and 0 < d["tokens_per_char"] < 1.0 and d["char_coverage"] > 0.95
    vocab = (zh_vocab / "tokenizer.vocab").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == 3000
    pieces = [line.split("\t")[0] for line in vocab]
    assert "\ue000" not in "".join(pieces)                 # the jieba delimiter never leaks into pieces
    assert "中国" in pieces and not any(p.startswith("\u2581中") for p in pieces[:800])
    again = tmp_path / "again"
    r = run(["train-vocab", data_dir / "reviews_pos_head.txt", pd_jsonl, "-o", again, "--vocab-size", 3000,
             "--character-coverage", 0.995, "--pre-tokenize", "jieba", "--workers", 1])
    assert r.exit_code == 0, r.output
    assert (again / "tokenizer.model").read_bytes() == (zh_vocab / "tokenizer.model").read_bytes()


def test_train_vocab_errors_are_clear(tmp_path, data_dir):
    r = run(["train-vocab", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "v", "--vocab-size", 400])
    assert r.exit_code == 1 and "SentencePiece training failed" in r.output and "Traceback" not in r.output
    r = run(["train-vocab", tmp_path / "missing.txt", "-o", tmp_path / "v"])
    assert r.exit_code == 1 and "missing.txt" in r.output


def test_base_hf_tokenizer_matches_sentencepiece(llama2_model, tmp_path, data_dir):
    from corpuskit.vocab.hf import write_hf_tokenizer

    write_hf_tokenizer(llama2_model, tmp_path)
    lines = real_lines(data_dir)
    texts = ADVERSARIAL + lines + fuzz_strings(lines)
    assert_parity(llama2_model, tmp_path / "tokenizer.json", texts)
    import sentencepiece as spm
    from tokenizers import Tokenizer

    # the case transformers' own conversion gets wrong
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("foo  bar", add_special_tokens=False).ids \
        == spm.SentencePieceProcessor(model_file=str(llama2_model)).encode("foo  bar") == [7953, 29871, 2594]


def test_merged_hf_tokenizer_matches_sentencepiece(merged, data_dir):
    lines = real_lines(data_dir)
    assert_parity(merged / "tokenizer.model", merged / "tokenizer.json", ADVERSARIAL + lines + fuzz_strings(lines))


def test_merge_keeps_base_ids_and_orders_new_pieces(merged, llama2_model):
    from corpuskit.vocab.hf import load_proto

    base, out = load_proto(llama2_model), load_proto(merged / "tokenizer.model")
    n = len(base.pieces)
    assert list(out.pieces)[:n] == list(base.pieces)
    new = list(out.pieces)[n:]
    scores = [p.score for p in new]
    assert new and max(scores) < min(p.score for p in base.pieces)
    assert all(a > b for a, b in zip(scores, scores[1:]))
    added = [json.loads(line) for line in (merged / "added_pieces.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [a["piece"] for a in added] == [p.piece for p in new]
    assert [a["id"] for a in added] == list(range(n, n + len(new)))
    pieces = [a["piece"] for a in added]
    # jsonl pieces keep their file order, after the model's; 人工智能 is producible through the
    # pieces listed after it
    assert pieces[-3:] == ["人工智能", "人工", "智能"]


def test_merge_skip_reasons(merged):
    report = json.loads((merged / "merge-report.json").read_text())
    rej = report["counts"]["rejected"]
    assert report["counts"]["input"] == 3000 + 11
    assert rej["special"] == 259                       # <unk>, <s>, </s> and 256 byte pieces
    assert rej["duplicate"] >= 1 and rej["not_cjk"] >= 1
    assert rej["repeated"] >= 1 and rej["has_whitespace"] == 1 and rej["not_producible"] == 1
    assert rej["parse_error"] == 1 and rej["wrong_kind"] == 1 and rej["wrong_type"] == 1
    skipped = [json.loads(line) for line in (merged / "skipped_pieces.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(skipped) == sum(rej.values())
    assert {"piece": "the", "reason": "duplicate"}.items() <= next(s for s in skipped if s["piece"] == "the").items()


def test_merge_meets_targets_on_real_lines(merged, pd_jsonl, data_dir):
    ev = json.loads((merged / "merge-report.json").read_text())["details"]["eval"]
    for name in ("builtin:en", "builtin:code"):
        assert ev[name]["ids_unchanged"] == 1.0, name
        assert ev[name]["tokens_per_char_merged"] == ev[name]["tokens_per_char_base"]
    # the negative reviews were never trained on: the gain holds on held-out Chinese too
    held_out = str(data_dir / "reviews_neg_head.txt")
    for name in ("builtin:zh", str(pd_jsonl), held_out):
        assert ev[name]["tokens_per_char_merged"] < 0.8 * ev[name]["tokens_per_char_base"], name
    for name, r in ev.items():
        assert r["slow_fast_agree"] == 1.0 and r["round_trip"] == 1.0, name
        assert r["slow_fast_lines_compared"] == r["lines"] > 0


def test_merged_dir_loads_with_auto_tokenizer(merged):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    sp = spm.SentencePieceProcessor(model_file=str(merged / "tokenizer.model"))
    text = "人工智能 changes  everything:\n  中文和English混合 😀"
    for use_fast in (True, False):
        tok = AutoTokenizer.from_pretrained(str(merged), use_fast=use_fast)
        assert tok.encode(text) == [1] + sp.encode(text)      # <s> added, </s> not
        assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id, tok.pad_token) == (1, 2, 0, None)
        assert len(tok) == sp.get_piece_size()
        assert tok.decode(tok.encode(text), skip_special_tokens=True) == text


def test_merge_vocab_rejects_bad_inputs(tmp_path, llama2_model, data_dir):
    r = run(["merge-vocab", "--base", data_dir / "reviews_pos_head.txt", "--add", llama2_model, "-o", tmp_path / "o"])
    assert r.exit_code == 1 and "reviews_pos_head.txt" in r.output and "not a SentencePiece model" in r.output
    r = run(["merge-vocab", "--base", llama2_model, "--add", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o"])
    assert r.exit_code == 1 and "reviews_pos_head.txt" in r.output and ".jsonl" in r.output
    assert not (tmp_path / "o").exists()


def test_merge_vocab_refuses_base_it_cannot_export(tmp_path, llama2_model, extra_pieces):
    """A BPE base with a normaliser the HF writer cannot copy (built here from LLaMA-2 on purpose)
    is refused up front, naming --base, instead of failing inside the temp output folder."""
    from corpuskit.vocab.hf import load_proto

    proto = load_proto(llama2_model)
    proto.normalizer_spec.name = "nmt_nfkc"
    proto.trainer_spec.byte_fallback = False
    base = tmp_path / "nfkc.model"
    base.write_bytes(proto.SerializeToString())
    r = run(["merge-vocab", "--base", base, "--add", extra_pieces, "-o", tmp_path / "o"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert f"{base}: --base must be LLaMA-style" in r.output
    assert "nmt_nfkc" in r.output and "byte_fallback is off" in r.output
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o*"))
