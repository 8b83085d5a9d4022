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
    (q1, a1), (q2, a2), (q3, a3) = qa[:3]  # diverging at the first answer: multi-turn replies
    out.append({"chosen": hh_transcript([("user", q1), ("assistant", a1), ("user", q2), ("assistant", a2)]),
                "rejected": hh_transcript([("user", q1), ("assistant", a3), ("user", q3), ("assistant", a2)])})
    return out


def test_convert_hh_splits_the_shared_prompt(tmp_path):
    records = hh_records()
    src = write_jsonl(tmp_path / "hh.jsonl", records)
    result = ck("convert", src, "-o", tmp_path / "pairs.jsonl", "--to", "preference")
    assert f"input {len(records)} = kept {len(records)} + rejected 0" in result.output
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert isinstance(pairs[-1]["chosen"], list)
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


# ---- render --mode preference / prompt ----------------------------------------------------------

END_OF_TURN = {"llama2-chinese": "\n</s>", "llama2": " </s>", "chatml": "<|im_end|>", "colossal": "</s>"}


@pytest.fixture(scope="module")
def work(tmp_path_factory, llama2_tokenizer_dir):
    """Review-verdict, ShareGPT and multi-turn HH pairs (canonical), and tokenizer dirs with templates."""
    import shutil

    w = tmp_path_factory.mktemp("pref")
    write_jsonl(w / "hh.jsonl", hh_records())
    ck("convert", w / "hh.jsonl", "-o", w / "hh-pairs.jsonl", "--to", "preference")
    write_jsonl(w / "pairs.jsonl", review_pairs(60) + sharegpt_pairs(30) + read_jsonl(w / "hh-pairs.jsonl"))
    for name in END_OF_TURN:
        shutil.copytree(llama2_tokenizer_dir, w / f"tok-{name}")
        ck("template", "export", name, "--tokenizer", w / f"tok-{name}")
    return w


def load(d):
    from datasets import load_from_disk

    return load_from_disk(str(d))


def trl_preprocess(records, tok_dir, trainer: str):
    """TRL's own tokenisation of the same conversations (its trainers' `_prepare_dataset`)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from corpuskit.ingest.preference import reply_turns

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    ds = Dataset.from_list([{"prompt": r["messages"], "chosen": reply_turns(r["chosen"]),
                             "rejected": reply_turns(r["rejected"]), "line": i + 1} for i, r in enumerate(records)])
    cls, cfg = (DPOTrainer, DPOConfig) if trainer == "dpo" else (RewardTrainer, RewardConfig)
    out = cls._prepare_dataset(None, ds, tok, cfg(output_dir="unused", max_length=None, bf16=False), "train")
    return {r["line"]: r for r in out}, tok


@pytest.mark.parametrize("name", list(END_OF_TURN))
def test_rendered_pairs_equal_trl_tokenisation(work, name):
    out = work / f"r-{name}"
    ck("render", work / "pairs.jsonl", "--tokenizer", work / f"tok-{name}", "--mode", "preference",
       "--max-length", 4096, "-o", out)
    rows = {int(r["origin"].rsplit(":", 1)[1]): r for r in load(out)}
    records = read_jsonl(work / "pairs.jsonl")
    assert len(rows) == len(records)
    trl_dpo, tok = trl_preprocess(records, work / f"tok-{name}", "dpo")
    trl_rm, _ = trl_preprocess(records, work / f"tok-{name}", "rm")
    # chatml puts a newline after <|im_end|>: TRL's completion runs to the end of the text, ours
    # stops at the end-of-turn token (the newline is template text, not something to train on)
    tail = tok("\n", add_special_tokens=False)["input_ids"] if name == "chatml" else []
    eot = tok.convert_tokens_to_ids("<|im_end|>") if name == "chatml" else tok.eos_token_id
    multi_turn = 0
    for line, row in rows.items():
        rec, ref = records[line - 1], trl_dpo[line]
        assert row["prompt_ids"] == ref["prompt_ids"], (name, line)
        assert row["chosen_ids"] + tail == ref["chosen_ids"] and row["rejected_ids"] + tail == ref["rejected_ids"]
        assert row["prompt_ids"] + row["chosen_ids"] + tail == trl_rm[line]["chosen_ids"]
        assert row["prompt_ids"] + row["rejected_ids"] + tail == trl_rm[line]["rejected_ids"]
        # one BOS opening the sequence (never a second one added by tokenisation), replies end on
        # their end-of-turn token
        ids = row["prompt_ids"] + row["chosen_ids"]
        assert ids[0] == tok.bos_token_id and all(not (a == b == tok.bos_token_id) for a, b in zip(ids, ids[1:]))
        for side in ("chosen", "rejected"):
            assert row[f"{side}_ids"][-1] == eot
            if isinstance(rec[side], str):  # the trained tokens are exactly the reply and its end of turn
                decoded = tok.decode(row[f"{side}_ids"])
                assert decoded.lstrip(" ") == (rec[side] + END_OF_TURN[name]).lstrip(" "), (name, line)
            else:
                multi_turn += 1
    assert multi_turn >= 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["mode"] == "preference" and manifest["tokenizer"]["sha256"]


def test_truncation_keeps_prompt_end_and_whole_replies(work):
    full, cut = work / "r-full", work / "r-cut"
    tok_dir = work / "tok-llama2-chinese"
    ck("render", work / "pairs.jsonl", "--tokenizer", tok_dir, "--mode", "preference", "-o", full)
    result = ck("render", work / "pairs.jsonl", "--tokenizer", tok_dir, "--mode", "preference", "-o", cut,
                "--max-length", 160)
    report = json.loads((cut / "report.json").read_text())
    counts = report["counts"]
    assert counts["input"] == counts["kept"] + sum(counts["rejected"].values())
    assert counts["rejected"].get("too_long", 0) > 0 and report["details"]["truncated"] > 0
    assert "truncated" in result.output
    whole = {r["origin"]: r for r in load(full)}
    truncated = 0
    for row in load(cut):
        ref = whole[row["origin"]]
        assert row["chosen_ids"] == ref["chosen_ids"] and row["rejected_ids"] == ref["rejected_ids"]
        assert len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) <= 160
        if row["prompt_ids"] != ref["prompt_ids"]:
            truncated += 1
            keep = len(row["prompt_ids"]) - 1
            assert row["prompt_ids"][0] == 1 and row["prompt_ids"][1:] == ref["prompt_ids"][-keep:]
    assert truncated == report["details"]["truncated"]
    rejected = read_jsonl(cut / "rejected.jsonl") if (cut / "rejected.jsonl").exists() else report["examples"]["too_long"]
    assert any("replies are never cut" in r["message"] for r in rejected)
    # drop rejects every pair that does not fit instead
    drop = work / "r-drop"
    ck("render", work / "pairs.jsonl", "--tokenizer", tok_dir, "--mode", "preference", "-o", drop,
       "--max-length", 160, "--truncation", "drop")
    assert len(load(drop)) == len(load(cut)) - truncated


def test_prompt_mode_renders_generation_prompts(work, data_dir):
    from transformers import AutoTokenizer

    tok_dir = work / "tok-llama2-chinese"
    ck("convert", data_dir / "sharegpt_sample.json", "-o", work / "chats.jsonl", "--to", "sft")
    out = work / "r-prompts"
    ck("render", work / "pairs.jsonl", work / "chats.jsonl", "--tokenizer", tok_dir, "--mode", "prompt",
       "--max-length", 4096, "-o", out)
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    pairs, chats = read_jsonl(work / "pairs.jsonl"), read_jsonl(work / "chats.jsonl")
    rows = load(out)
    assert rows.column_names == ["prompt_ids", "origin", "category"] and len(rows) == len(pairs) + len(chats)
    for row in rows:
        path, line = row["origin"].rsplit(":", 1)
        if path.endswith("pairs.jsonl"):
            prompt = pairs[int(line) - 1]["messages"]
        else:
            messages = chats[int(line) - 1]["messages"]
            prompt = messages[:max(i for i, m in enumerate(messages) if m["role"] == "assistant")]
        assert row["prompt_ids"] == list(tok.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"])
        assert tok.decode(row["prompt_ids"]).endswith("Assistant:")


def test_pair_render_is_reproducible_and_rejects_bad_usage(work):
    tok_dir = work / "tok-llama2"
    a, b = work / "r-w1", work / "r-w2"
    ck("render", work / "pairs.jsonl", "--tokenizer", tok_dir, "--mode", "preference", "-o", a, "--workers", 1)
    ck("render", work / "pairs.jsonl", "--tokenizer", tok_dir, "--mode", "preference", "-o", b, "--workers", 2)
    for f in ("data-00000-of-00001.arrow", "state.json", "manifest.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    res = ck("render", work / "pairs.jsonl", "--tokenizer", tok_dir, "--mode", "preference", "-o", work / "x",
             "--truncation", "turns", code=1)
    assert "does not apply to --mode preference" in res.output and "Traceback" not in res.output
    # SFT records are not pairs: each is rejected with its reason, none is lost
    ck("convert", write_jsonl(work / "one.jsonl", [{"messages": [{"role": "user", "content": "你好"},
                                                                {"role": "assistant", "content": "你好！"}]}]),
       "-o", work / "one-sft.jsonl")
    res = ck("render", work / "one-sft.jsonl", "--tokenizer", tok_dir, "--mode", "preference", "-o", work / "r-sft")
    assert "input 1 = kept 0 + rejected 1 (wrong_kind=1)" in res.output


# ---- clean / stats / bucket on pairs ------------------------------------------------------------

def test_clean_filters_replies_and_deduplicates_prompts(tmp_path):
    pairs = review_pairs(40)
    same_question = {**pairs[0], "chosen": pairs[0]["chosen"] + "评论说得很清楚。", "id": "dup-exact"}
    near = {**pairs[1], "messages": [{"role": "user", "content": pairs[1]["messages"][0]["content"] + "！"}],
            "id": "dup-near"}
    long_reply = {**pairs[2], "messages": [{"role": "user", "content": "另一个问题：" + pairs[3]["messages"][0]["content"]}],
                  "rejected": sharegpt_qa(1)[0][1], "id": "long"}
    records = pairs + [same_question, near, long_reply]
    src = write_jsonl(tmp_path / "pairs.jsonl", records)
    (tmp_path / "f.yaml").write_text("filters:\n  length: {min_chars: 1, max_chars: 300}\n", encoding="utf-8")
    ck("clean", src, "-o", tmp_path / "clean", "--filters", tmp_path / "f.yaml", "--threshold", 0.7)
    report = json.loads((tmp_path / "clean" / "report.json").read_text())
    counts = report["counts"]
    assert counts["input"] == len(records) == counts["kept"] + sum(counts["rejected"].values())
    rejected = {r["record"].get("id"): r for r in read_jsonl(tmp_path / "clean" / "rejected.jsonl")}
    assert rejected["dup-exact"]["reason"] == "exact_duplicate"  # same prompt, other replies
    assert rejected["dup-near"]["reason"] == "near_duplicate"
    assert rejected["long"]["reason"] == "length.too_long" and rejected["long"]["message"].startswith("rejected reply:")
    kept = read_jsonl(tmp_path / "clean" / "clean.jsonl")
    # all the verdict replies are the same two strings: replies are not what dedup compares
    assert len(kept) == len(pairs) and kept == pairs
    ck("validate", tmp_path / "clean" / "clean.jsonl", "--schema", "preference")
    # stats and bucket read the clean folder and keep every pair whole
    stats = ck("stats", tmp_path / "clean").output
    assert "reviews" in stats
    ck("bucket", tmp_path / "clean", "-o", tmp_path / "buckets", "-n", 2, "--seed", 1)
    bucketed = [r for f in sorted((tmp_path / "buckets").glob("bucket-*.jsonl")) for r in read_jsonl(f)]
    assert sorted(json.dumps(r, sort_keys=True) for r in bucketed) == sorted(json.dumps(r, sort_keys=True) for r in kept)
