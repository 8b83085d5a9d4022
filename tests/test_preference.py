"""Preference data: the record kind, its schema and rules, convert from HH / UltraFeedback / flat
formats, clean/stats/bucket on pairs, and `render --mode preference|prompt` (ids equal to TRL's).

Pairs are built from the real text in tests/data (see preference_data.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from corpuskit.cli import main as corpuskit
from preference_data import hh_transcript, review_pairs, sharegpt_pairs, sharegpt_qa, write_jsonl


def ck(*args, code=0):
    result = CliRunner().invoke(corpuskit, [str(a) for a in args])
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- convert ---------------------------------------------------------------------------------

def hh_records():
    """HH-style transcripts from real ShareGPT turns: a shared first exchange and question, then
    the real answer (chosen) or another question's answer (rejected)."""
    qa = sharegpt_qa(12)
    out = []
    for i in range(0, len(qa) - 2, 2):
        (q1, a1), (q2, a2), (_, other) = qa[i], qa[i + 1], qa[i + 2]
        shared = [("user", q1), ("assistant", a1), ("user", q2)]
        out.append({"chosen": hh_transcript(shared + [("assistant", a2)]),
                    "rejected": hh_transcript(shared + [("assistant", other)]), "source": "hh-style"})
    return out


def test_convert_hh_splits_the_shared_prompt(tmp_path):
    records = hh_records()
    src = write_jsonl(tmp_path / "hh.jsonl", records)
    result = ck("convert", src, "-o", tmp_path / "pairs.jsonl", "--to", "preference")
    assert f"input {len(records)} = kept {len(records)} + rejected 0" in result.output
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    qa = sharegpt_qa(12)
    first = pairs[0]
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user"]
    assert first["messages"][0]["content"] == qa[0][0] and first["messages"][2]["content"] == qa[1][0]
    assert first["chosen"] == qa[1][1] and first["rejected"] == qa[2][1]
    assert first["source"] == "hh-style"  # other keys travel unchanged
    ck("validate", tmp_path / "pairs.jsonl", "--schema", "preference")


def test_convert_hh_that_diverges_early_keeps_multi_turn_replies(tmp_path):
    (q1, a1), (q2, a2), (q3, a3) = sharegpt_qa(3)
    rec = {"chosen": hh_transcript([("user", q1), ("assistant", a1), ("user", q2), ("assistant", a2)]),
           "rejected": hh_transcript([("user", q1), ("assistant", a3), ("user", q3), ("assistant", a2)])}
    src = write_jsonl(tmp_path / "hh.jsonl", [rec])
    ck("convert", src, "-o", tmp_path / "pairs.jsonl")
    pair, = read_jsonl(tmp_path / "pairs.jsonl")
    assert pair["messages"] == [{"role": "user", "content": q1}]
    assert [m["content"] for m in pair["chosen"]] == [a1, q2, a2]
    assert [m["role"] for m in pair["rejected"]] == ["assistant", "user", "assistant"]
    ck("validate", tmp_path / "pairs.jsonl")


def test_convert_ultrafeedback_trl_and_flat_formats(tmp_path):
    (q, a), (_, b), (q2, c) = sharegpt_qa(3)
    uf = {"prompt": q, "prompt_id": "p1", "score_chosen": 8.0, "score_rejected": 3.5,
          "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
          "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": b}],
          "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    trl = {"prompt": [{"role": "user", "content": q2}], "chosen": [{"role": "assistant", "content": c}],
           "rejected": [{"role": "assistant", "content": a}]}
    zhihu = {"prompt": q, "chosen": a, "rejected": b}
    stack = {"qid": 7, "question": q2, "response_j": c, "response_k": b, "date": "2020-01-01"}
    cvalues = {"prompt": q, "pos_resp": a, "neg_resp": b, "pos_type": "拒绝为主", "neg_type": "风险回复"}
    src = write_jsonl(tmp_path / "mixed.jsonl", [uf, trl, zhihu, stack, cvalues])
    ck("convert", src, "-o", tmp_path / "pairs.jsonl", "--to", "preference")
    out = read_jsonl(tmp_path / "pairs.jsonl")
    assert out[0] == {"messages": [{"role": "user", "content": q}], "chosen": a, "rejected": b,
                      "prompt_id": "p1", "score_chosen": 8.0, "score_rejected": 3.5}
    assert out[1] == {"messages": [{"role": "user", "content": q2}], "chosen": c, "rejected": a}
    assert out[2] == {"messages": [{"role": "user", "content": q}], "chosen": a, "rejected": b}
    assert out[3] == {"messages": [{"role": "user", "content": q2}], "chosen": c, "rejected": b, "qid": 7,
                      "date": "2020-01-01"}
    assert out[4]["chosen"] == a and out[4]["pos_type"] == "拒绝为主"
    # a forced format reads the same records
    ck("convert", write_jsonl(tmp_path / "z.jsonl", [zhihu]), "-o", tmp_path / "z-out.jsonl",
       "--from", "preference-flat")
    assert read_jsonl(tmp_path / "z-out.jsonl") == [out[2]]


def test_bad_preference_records_get_their_reasons(tmp_path):
    (q, a), (_, b) = sharegpt_qa(2)
    user = [{"role": "user", "content": q}]
    bad = [
        {"messages": user + [{"role": "assistant", "content": a}], "chosen": a, "rejected": b},  # prompt ends assistant
        {"messages": user, "chosen": "  ", "rejected": b},
        {"messages": user, "chosen": a, "rejected": a + "\n"},
        {"chosen": f"Human: {q}\nAssistant: {a}", "rejected": hh_transcript([("user", q), ("assistant", b)])},
        {"chosen": hh_transcript([("user", q), ("user", a)]), "rejected": hh_transcript([("user", q), ("assistant", b)])},
        {"chosen": hh_transcript([("user", q), ("assistant", a)]), "rejected": hh_transcript([("user", a), ("assistant", b)])},
        {"chosen": hh_transcript([("user", q), ("assistant", a), ("user", b)]),
         "rejected": hh_transcript([("user", q), ("assistant", b)])},
        {"messages": user, "chosen": [{"role": "user", "content": a}], "rejected": b},
        {"messages": [], "chosen": a, "rejected": b},
        {"messages": user, "chosen": a},
    ]
    src = write_jsonl(tmp_path / "bad.jsonl", [sharegpt_pairs(2)[0]] + bad)
    result = ck("convert", src, "-o", tmp_path / "out.jsonl", "--report", tmp_path / "r.json")
    assert "input 11 = kept 1 + rejected 10" in result.output
    rejects = read_jsonl(tmp_path / "out.rejected.jsonl")
    assert [(r["origin"]["line"], r["reason"]) for r in rejects] == [
        (2, "prompt_ends_with_assistant"), (3, "empty_reply"), (4, "identical_replies"),
        (5, "malformed_transcript"), (6, "malformed_transcript"), (7, "no_shared_prompt"),
        (8, "malformed_transcript"), (9, "non_alternating"), (10, "empty_prompt"), (11, "missing_field")]
    counts = json.loads((tmp_path / "r.json").read_text())["counts"]
    assert counts["input"] == counts["kept"] + sum(counts["rejected"].values())
    # validate agrees with convert on the canonical ones, naming path:line and the reason
    canonical = [r for r in [sharegpt_pairs(2)[0]] + bad if "messages" in r]
    path = write_jsonl(tmp_path / "canon.jsonl", canonical)
    out = ck("validate", path, code=1).output
    assert f"{path}:2: $: the prompt's last turn is assistant" in out and "[prompt_ends_with_assistant]" in out
    assert f"{path}:3: $.chosen: must contain a non-whitespace character" in out  # the schema says so
    assert f"{path}:4: $: chosen and rejected are the same reply" in out and "[identical_replies]" in out
    assert f"{path}:5: $: chosen turn 0 is user, expected assistant" in out and "[non_alternating]" in out
    assert f"{path}:6: $.messages: must have at least 1 items" in out
    assert f"{path}:7: $: 'rejected' is a required property" in out
    assert f"{path}: FAILED: 7 records, 1 valid, 6 invalid" in out


def test_preference_schema_is_a_valid_json_schema_and_matches_the_code(tmp_path):
    from jsonschema import Draft202012Validator

    from corpuskit.validate.schemas import kind_of, load_schema

    schema = load_schema("preference")
    Draft202012Validator.check_schema(schema)
    good = review_pairs(3) + sharegpt_pairs(3)
    for rec in good:
        assert kind_of(rec) == "preference"
        assert not list(Draft202012Validator(schema).iter_errors(rec))
    # a preference record is not an SFT record (and the other way round)
    assert list(Draft202012Validator(load_schema("sft")).iter_errors(good[0]))
    ck("validate", write_jsonl(tmp_path / "good.jsonl", good))
