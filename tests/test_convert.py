"""`corpuskit convert` through the CLI on real samples: exact counts, reasons and line numbers."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner

from corpuskit.cli import main


def run(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)], catch_exceptions=False)


def read_jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_sharegpt_sample_counts_reasons_and_origins(data_dir, tmp_path):
    out = tmp_path / "chats.jsonl"
    res = run(data_dir / "sharegpt_sample.json", "-o", out, "--to", "sft", "--report", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert "convert: input 67 = kept 45 + rejected 22 (empty_conversation=5, empty_user=1, non_alternating=16)" in res.output
    kept, rejected = read_jsonl(out), read_jsonl(tmp_path / "chats.rejected.jsonl")
    assert (len(kept), len(rejected)) == (45, 22)
    assert kept[0]["id"] == "QWJhYvA_0" and [m["role"] for m in kept[0]["messages"]][:2] == ["user", "assistant"]
    first = rejected[0]
    assert (first["reason"], first["origin"]["line"]) == ("non_alternating", 134)
    assert first["message"].startswith("turn 0 is assistant, expected user")
    assert first["record"]["conversations"][0]["from"] == "gpt"  # the raw input travels with the reject
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["counts"] == {"input": 67, "kept": 45,
                                "rejected": {"empty_conversation": 5, "empty_user": 1, "non_alternating": 16}}
    # other roles seen in the sample map to canonical ones
    roles = {m["role"] for r in kept for m in r["messages"]}
    assert roles == {"system", "user", "assistant"}


def test_output_is_byte_identical_on_rerun(data_dir, tmp_path):
    run(data_dir / "sharegpt_sample.json", "-o", tmp_path / "a.jsonl")
    run(data_dir / "sharegpt_sample.json", "-o", tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.rejected.jsonl").read_bytes() == (tmp_path / "b.rejected.jsonl").read_bytes()


def test_truncated_array_keeps_complete_records_and_names_the_cut(data_dir, tmp_path):
    res = run(data_dir / "sharegpt_truncated_tail.json", "-o", tmp_path / "t.jsonl")
    assert res.exit_code == 0
    assert (f"{data_dir / 'sharegpt_truncated_tail.json'}:44: JSON array cut off mid-record: the record "
            "starting at line 44 is incomplete at end of file (line 69)") in res.output
    assert "convert: input 3 = kept 2 + rejected 1 (parse_error=1)" in res.output
    assert "Traceback" not in res.output
    res = run(data_dir / "sharegpt_truncated_tail.json", "-o", tmp_path / "t.jsonl", "--strict")
    assert res.exit_code == 1


def test_peoples_daily_to_plain_text(data_dir, tmp_path):
    res = run(data_dir / "peoples_daily_199801_head.txt", "-o", tmp_path / "news.jsonl", "--from", "peoples-daily")
    assert "convert: input 400 = kept 400 + rejected 0" in res.output
    first = read_jsonl(tmp_path / "news.jsonl")[0]
    assert first == {"text": "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"}


def test_bad_sft_records_each_rejected_with_reason_and_line(data_dir, tmp_path):
    """Real ShareGPT turns, each line broken in one way (wrong type, unknown role, order, empty)."""
    rec = json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8"))[0]
    human, gpt = rec["conversations"][0], rec["conversations"][1]
    lines = [
        {"conversations": [human, gpt]},                                     # 1 ok
        {"conversations": [human, {**gpt, "from": "robot"}]},                # 2 unknown role
        {"conversations": [human, human, gpt]},                              # 3 two user turns
        {"conversations": [human, {**gpt, "value": "  "}]},                  # 4 empty assistant
        {"conversations": [human, {**gpt, "value": 42}]},                    # 5 wrong type
        {"messages": [{"role": "user", "content": human["value"]}]},         # 6 ends with user
        {"messages": [{"role": "user", "content": human["value"]},
                      {"role": "assistant", "content": gpt["value"]}], "id": 7},  # 7 ok, id made a string
        [human],                                                             # 8 not an object
    ]
    src = tmp_path / "bad.jsonl"
    src.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines) + '{"text": "cut', encoding="utf-8")
    res = run(src, "-o", tmp_path / "out.jsonl")
    assert res.exit_code == 0
    assert ("convert: input 9 = kept 2 + rejected 7 (empty_assistant=1, ends_with_user=1, non_alternating=1, "
            "not_an_object=1, parse_error=1, unknown_role=1, wrong_type=1)") in res.output
    assert f"{src}:9: invalid JSON at column 10: Unterminated string starting at" in res.output
    got = [(r["origin"]["line"], r["reason"]) for r in read_jsonl(tmp_path / "out.rejected.jsonl")]
    assert got == [(2, "unknown_role"), (3, "non_alternating"), (4, "empty_assistant"), (5, "wrong_type"),
                   (6, "ends_with_user"), (8, "not_an_object"), (9, "parse_error")]
    assert read_jsonl(tmp_path / "out.jsonl")[1]["id"] == "7"


def test_canonical_kinds_and_mixed_kinds(data_dir, tmp_path):
    news = (data_dir / "peoples_daily_199801_head.txt").read_text(encoding="utf-8").split("\n")[0]
    src = tmp_path / "canon.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"text": news, "source": "people's daily"},              # 1 source as a provenance field
        {"source": "标题：", "target": news, "category": "news"},  # 2 Colossal-LLaMA-2 pretrain
        {"text": news, "target": news},                           # 3 two forms at once
        {"piece": "人民", "messages": []},                         # 4 two kinds at once
        {"piece": "人民"},                                         # 5
    ]) + "\n", encoding="utf-8")
    res = run(src, "-o", tmp_path / "c.jsonl")
    assert "convert: input 5 = kept 3 + rejected 2 (mixed_kinds=2)" in res.output
    assert read_jsonl(tmp_path / "c.jsonl")[0] == {"text": news, "source": "people's daily"}
    rejected = read_jsonl(tmp_path / "c.rejected.jsonl")
    assert [(r["origin"]["line"], r["message"]) for r in rejected] == [
        (3, "record has keys of more than one record kind or form: ['text', 'target']"),
        (4, "record has keys of more than one record kind or form: ['messages', 'piece']")]
    assert CliRunner().invoke(main, ["validate", str(tmp_path / "c.jsonl")]).exit_code == 0


def test_gbk_without_and_with_encoding(data_dir, tmp_path):
    reviews = (data_dir / "reviews_neg_head.txt").read_text(encoding="utf-8").splitlines()[:5]
    src = tmp_path / "neg_gbk.txt"
    src.write_bytes("\n".join(reviews).encode("gbk"))
    res = run(src, "-o", tmp_path / "u.jsonl")
    assert "convert: input 5 = kept 0 + rejected 5 (parse_error=5)" in res.output
    assert f"{src}:3: invalid utf-8 bytes at byte 0 of the line" in res.output
    res = run(src, "-o", tmp_path / "g.jsonl", "--encoding", "gbk")
    assert "convert: input 5 = kept 5 + rejected 0" in res.output
    assert [r["text"] for r in read_jsonl(tmp_path / "g.jsonl")] == reviews


def test_unknown_encoding_is_a_usage_error_not_a_traceback(data_dir, tmp_path):
    for cmd in (["convert", "-o", str(tmp_path / "x.jsonl")], ["validate"], ["stats"]):
        res = CliRunner().invoke(main, [*cmd, str(data_dir / "reviews_pos_head.txt"), "--encoding", "utf8x"])
        assert res.exit_code == 2, (cmd, res.output)
        assert "Invalid value for '--encoding': unknown encoding 'utf8x'" in res.output
        assert "Traceback" not in res.output and not isinstance(res.exception, LookupError)
    assert not (tmp_path / "x.jsonl").exists()


def test_llama2_chinese_csv_and_alpaca(data_dir, tmp_path):
    pos = (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines()[:4]
    src = tmp_path / "atom.csv"
    with open(src, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text"])
        w.writerow([f"<s>Human: {pos[0]}\n</s><s>Assistant: {pos[1]}\n</s>"])           # multi-line quoted field
        w.writerow([f"<s>Human: {pos[2]}\n</s><s>Human: {pos[3]}\n</s>"])              # two user turns
    res = run(src, "-o", tmp_path / "atom.jsonl", "--from", "llama2-chinese")
    assert "convert: input 2 = kept 1 + rejected 1 (non_alternating=1)" in res.output
    assert read_jsonl(tmp_path / "atom.jsonl") == [
        {"messages": [{"role": "user", "content": pos[0]}, {"role": "assistant", "content": pos[1]}]}]
    assert read_jsonl(tmp_path / "atom.rejected.jsonl")[0]["origin"]["line"] == 5  # row 1 spans lines 2-4
    alp = tmp_path / "alpaca.json"
    alp.write_text(json.dumps([{"instruction": pos[0], "input": pos[1], "output": pos[2]}], ensure_ascii=False),
                   encoding="utf-8")
    res = run(alp, "-o", tmp_path / "alp.jsonl")
    assert read_jsonl(tmp_path / "alp.jsonl")[0]["messages"][0] == {"role": "user", "content": f"{pos[0]}\n{pos[1]}"}


def test_file_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "empty.json").write_bytes(b"")
    res = CliRunner().invoke(main, ["convert", str(tmp_path / "empty.json"), "-o", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 1
    assert res.output.strip() == f"Error: {tmp_path / 'empty.json'}: empty file: expected a JSON array of records"
    assert not (tmp_path / "o.jsonl").exists()  # nothing half-written
    (tmp_path / "blank.jsonl").write_bytes(b"\n\n")
    res = run(tmp_path / "blank.jsonl", "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 0
    assert f"{tmp_path / 'blank.jsonl'}: no records (empty or blank lines only)" in res.output
    assert "convert: input 0 = kept 0 + rejected 0" in res.output


def test_opt_in_repairs_are_applied_and_counted(data_dir, tmp_path):
    out = tmp_path / "chats.jsonl"
    res = run(data_dir / "sharegpt_sample.json", "-o", out, "--to", "sft", "--report", tmp_path / "r.json",
              "--repair", "leading-assistant", "--repair", "trailing-user")
    assert res.exit_code == 0, res.output
    assert "convert: input 67 = kept 59 + rejected 8" in res.output
    assert "leading-assistant=14" in res.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["details"]["repaired"] == {"leading-assistant": 14}
    raw = {r["id"]: r for r in json.load(open(data_dir / "sharegpt_sample.json", encoding="utf-8"))}
    kept = read_jsonl(out)
    fixed = [k for k in kept if raw[k["id"]]["conversations"][0]["from"] == "gpt"]
    assert len(fixed) == 14
    for k in fixed:  # exactly the leading assistant turn(s) went; the rest is untouched
        conv = raw[k["id"]]["conversations"]
        skip = next(i for i, t in enumerate(conv) if t["from"] == "human")
        assert [m["content"] for m in k["messages"]] == [t["value"] for t in conv[skip:]]
    # without --repair the same records are rejected, never silently changed
    res = run(data_dir / "sharegpt_sample.json", "-o", tmp_path / "plain.jsonl", "--to", "sft")
    assert "kept 45 + rejected 22" in res.output


def test_trailing_user_repair(tmp_path):
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"},
                                            {"role": "user", "content": "再见"}]}, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    res = run(src, "-o", tmp_path / "no.jsonl")
    assert "rejected 1 (ends_with_user=1)" in res.output
    res = run(src, "-o", tmp_path / "yes.jsonl", "--repair", "trailing-user")
    assert "kept 1 + rejected 0" in res.output and "trailing-user=1" in res.output
    assert [m["content"] for m in read_jsonl(tmp_path / "yes.jsonl")[0]["messages"]] == ["你好", "你好！"]


def test_lone_surrogate_is_rejected_not_a_crash(data_dir, tmp_path):
    a, b = (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines()[:2]
    src = tmp_path / "s.jsonl"
    src.write_text(json.dumps({"text": a}) + "\n" + json.dumps({"text": b}).replace('"}', '\\ud800"}') + "\n",
                   encoding="utf-8")
    res = CliRunner().invoke(main, ["convert", str(src), "-o", str(tmp_path / "o.jsonl")])
    assert res.exit_code == 0, res.output
    assert "convert: input 2 = kept 1 + rejected 1 (parse_error=1)" in res.output
    assert f"{src}:2: invalid JSON string: lone surrogate escape \\ud800 is not a Unicode character" in res.output
    assert read_jsonl(tmp_path / "o.jsonl") == [{"text": a}]


def test_unwritable_output_is_one_line_error(data_dir, tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    out = tmp_path / "file" / "sub" / "o.jsonl"  # parent is a regular file: cannot be created
    res = CliRunner().invoke(main, ["convert", str(data_dir / "peoples_daily_199801_head.txt"), "-o", str(out)])
    assert res.exit_code == 1
    assert res.output.strip() == f"Error: {tmp_path / 'file' / 'sub'}: Not a directory"
    assert res.exception is not None and not isinstance(res.exception, OSError)


def test_output_must_be_named_jsonl(data_dir, tmp_path):
    res = CliRunner().invoke(main, ["convert", str(data_dir / "peoples_daily_199801_head.txt"), "-o",
                                    str(tmp_path / "news.json")])
    assert res.exit_code == 2
    assert f"Invalid value for '-o' / '--output': {tmp_path / 'news.json'}: the output is JSON Lines" in res.output
    assert not (tmp_path / "news.json").exists()


def test_category_is_set_where_missing_and_kept_where_present(data_dir, tmp_path):
    src = tmp_path / "mixed.jsonl"
    src.write_text('{"text": "人民日报社论"}\n{"text": "好评", "category": "review"}\n', encoding="utf-8")
    res = run(src, data_dir / "peoples_daily_199801_head.txt", "-o", tmp_path / "out.jsonl", "--category", "news")
    assert res.exit_code == 0, res.output
    cats = [r.get("category") for r in read_jsonl(tmp_path / "out.jsonl")]
    assert cats[:2] == ["news", "review"] and cats[2:] == ["news"] * 400


def test_bad_json_line_travels_with_its_reject(tmp_path):
    src = tmp_path / "broken.jsonl"
    src.write_text('{"text": "好"}\n{"text": "坏\n{"text": "好"}\n', encoding="utf-8")
    res = run(src, "-o", tmp_path / "out.jsonl")
    assert "input 3 = kept 2 + rejected 1 (parse_error=1)" in res.output
    (rej,) = read_jsonl(tmp_path / "out.rejected.jsonl")
    assert rej["origin"]["line"] == 2 and rej["record"] == '{"text": "坏'


def test_repairs_accept_a_comma_list_and_refuse_unknown_names(data_dir, tmp_path):
    res = run(data_dir / "sharegpt_sample.json", "-o", tmp_path / "a.jsonl", "--repair", "leading-assistant,trailing-user")
    assert res.exit_code == 0 and "kept 59 + rejected 8" in res.output
    res = CliRunner().invoke(main, ["convert", str(data_dir / "sharegpt_sample.json"), "-o", str(tmp_path / "b.jsonl"),
                                    "--repair", "merge-turns"])
    assert res.exit_code == 2 and "unknown repair 'merge-turns'" in res.output
    assert not (tmp_path / "b.jsonl").exists()
