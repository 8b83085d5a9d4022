"""`corpuskit render` / `corpuskit template` on real ShareGPT and People's Daily samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from corpuskit.cli import main

pytestmark = pytest.mark.xdist_group("tok")

TEMPLATES = ["llama2-chinese", "colossal", "llama2", "chatglm2", "chatml"]
# the text each template puts after an answer; the model is trained on answer + this
END_OF_TURN = {"llama2-chinese": "\n</s>", "colossal": "</s>", "llama2": " </s>", "chatglm2": "</s>",
               "chatml": "<|im_end|>"}


def run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def work(tmp_path_factory, data_dir, llama2_tokenizer_dir):
    """Canonical chats/news from the real samples plus one tokenizer dir per exported template."""
    w = tmp_path_factory.mktemp("render")
    run("convert", data_dir / "sharegpt_sample.json", "-o", w / "chats.jsonl", "--to", "sft")
    run("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", w / "news.jsonl")
    for name in TEMPLATES:
        shutil.copytree(llama2_tokenizer_dir, w / f"tok-{name}")
        run("template", "export", name, "--tokenizer", w / f"tok-{name}")
    return w


@pytest.fixture(scope="module")
def chats(work):
    return [json.loads(line) for line in (work / "chats.jsonl").read_text(encoding="utf-8").splitlines()]


def load(d):
    from datasets import load_from_disk

    return load_from_disk(str(d))


def hf_tokenizer(d):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(d))


def trained_runs(labels):
    """Contiguous runs of trained positions: (start, end) token indices."""
    runs, start = [], None
    for i, lab in enumerate(list(labels) + [-100]):
        if lab != -100 and start is None:
            start = i
        elif lab == -100 and start is not None:
            runs.append((start, i))
            start = None
    return runs


def rows_by_line(ds):
    return {int(r["origin"].rsplit(":", 1)[1]): r for r in ds}


@pytest.mark.parametrize("name", TEMPLATES)
def test_template_parity_masks_and_decoded_answers(work, chats, name):
    out = work / f"r-{name}"
    res = run("render", work / "chats.jsonl", "--tokenizer", work / f"tok-{name}", "-o", out, "--max-length", 100000)
    tok = hf_tokenizer(work / f"tok-{name}")
    rows = rows_by_line(load(out))
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["input"] == len(chats) == report["counts"]["kept"] + sum(report["counts"]["rejected"].values())
    with_system = [i for i, c in enumerate(chats, 1) if c["messages"][0]["role"] == "system"]
    if name == "chatglm2":  # ChatGLM2 has no system role: such records are rejected with the reason
        assert set(rows) == set(range(1, len(chats) + 1)) - set(with_system) and with_system
        assert report["counts"]["rejected"] == {"template_error": len(with_system)}
    else:
        assert len(rows) == len(chats), res.output
    bos, eos = tok.bos_token_id, tok.eos_token_id
    chinese = 0
    for line, row in rows.items():
        messages = chats[line - 1]["messages"]
        ids, labels = row["input_ids"], row["labels"]
        enc = tok.apply_chat_template(messages, return_assistant_tokens_mask=True)
        assert ids == list(enc["input_ids"]), f"{name} line {line}: ids differ from apply_chat_template"
        assert [lab != -100 for lab in labels] == [bool(m) for m in enc["assistant_masks"]], line
        assert all(lab in (-100, i) for lab, i in zip(labels, ids))
        # one BOS opening the sample, never two in a row
        assert ids[0] == bos and all(not (a == bos and b == bos) for a, b in zip(ids, ids[1:]))
        # each assistant turn: trained tokens decode to exactly its content + the end-of-turn text
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        runs = trained_runs(labels)
        assert len(runs) == len(answers)
        for (a, b), answer in zip(runs, answers):
            decoded = tok.decode(ids[a:b])
            expected = answer + END_OF_TURN[name]
            # SentencePiece convention: a leading space (from the template) is folded into the first word
            assert decoded.lstrip(" ") == expected.lstrip(" "), (name, line, decoded[:80], expected[:80])
            assert ids[b - 1] == (tok.convert_tokens_to_ids("<|im_end|>") if name == "chatml" else eos)
        chinese += any("\u4e00" <= ch <= "\u9fff" for ch in "".join(answers))
    assert chinese >= 3 and any(len(chats[line - 1]["messages"]) >= 6 for line in rows)


def test_generation_prompt_ends_where_training_answer_starts(work):
    tok = hf_tokenizer(work / "tok-llama2-chinese")
    prompt = tok.apply_chat_template([{"role": "user", "content": "你好"}], add_generation_prompt=True, tokenize=False)
    assert prompt == "<s>Human: 你好\n</s><s>Assistant:"


def test_chatml_needs_exported_tokens(work, llama2_tokenizer_dir):
    res = run("render", work / "chats.jsonl", "--tokenizer", llama2_tokenizer_dir, "--template", "chatml",
              "-o", work / "r-chatml-bad", ok=False)
    assert res.exit_code == 1 and "template export chatml" in res.output and "Traceback" not in res.output
    assert not (work / "r-chatml-bad").exists()
    tok = hf_tokenizer(work / "tok-chatml")
    assert len(tok) == 32002 and len(tok("<|im_start|>", add_special_tokens=False)["input_ids"]) == 1


def test_truncation_turns_keeps_whole_turns(work, chats):
    out = work / "r-turns"
    run("render", work / "chats.jsonl", "--tokenizer", work / "tok-llama2", "-o", out, "--max-length", 1024)
    tok = hf_tokenizer(work / "tok-llama2")
    report = json.loads((out / "report.json").read_text())
    rows = rows_by_line(load(out))
    assert report["details"]["truncated"] > 0 and report["counts"]["rejected"].get("too_long", 0) > 0
    for line, row in rows.items():
        messages = chats[line - 1]["messages"]
        assert len(row["input_ids"]) <= 1024 and row["input_ids"][-1] == tok.eos_token_id
        kept = [k for k in range(2, len(messages) + 1)
                if messages[k - 1]["role"] == "assistant"
                and list(tok.apply_chat_template(messages[:k])["input_ids"]) == row["input_ids"]]
        assert kept, f"line {line} is not a whole-turn prefix"
    for ex in report["examples"]["too_long"]:
        assert "first user/assistant pair" in ex["message"]


def test_truncation_right_keeps_eos_and_rejects_untrained(work):
    out = work / "r-right"
    run("render", work / "chats.jsonl", "--tokenizer", work / "tok-llama2-chinese", "-o", out,
        "--max-length", 200, "--truncation", "right")
    report = json.loads((out / "report.json").read_text())
    counts = report["counts"]
    assert counts["rejected"].get("no_trained_tokens", 0) > 0  # prompt alone fills 200 tokens
    assert counts["input"] == counts["kept"] + sum(counts["rejected"].values())
    cut = 0
    for row in load(out):
        ids, labels = row["input_ids"], row["labels"]
        assert len(ids) <= 200 and ids[-1] == 2 and any(lab != -100 for lab in labels)
        if len(ids) == 200:
            cut += 1
            assert labels[-1] == (2 if labels[-2] != -100 else -100)
    assert cut == report["details"]["truncated"] > 0


def test_truncation_drop_and_train_on_last(work, chats):
    out = work / "r-drop"
    run("render", work / "chats.jsonl", "--tokenizer", work / "tok-colossal", "-o", out,
        "--max-length", 1024, "--truncation", "drop", "--train-on", "last")
    report = json.loads((out / "report.json").read_text())
    assert report["details"]["truncated"] == 0 and report["counts"]["rejected"]["too_long"] > 0
    tok = hf_tokenizer(work / "tok-colossal")
    for line, row in rows_by_line(load(out)).items():
        last = [m["content"] for m in chats[line - 1]["messages"] if m["role"] == "assistant"][-1]
        (a, b), = trained_runs(row["labels"])
        assert tok.decode(row["input_ids"][a:b]).lstrip(" ") == (last + "</s>").lstrip(" ")


def test_same_output_for_any_workers_and_reruns(work):
    outs = []
    for i, workers in enumerate((1, 2, 1)):
        out = work / f"r-workers-{i}"
        run("render", work / "chats.jsonl", "--tokenizer", work / "tok-llama2-chinese", "-o", out,
            "--max-length", 512, "--workers", workers)
        outs.append(out)
    files = ["data-00000-of-00001.arrow", "state.json", "dataset_info.json", "manifest.json"]
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes() == (outs[2] / f).read_bytes(), f


def test_show_marks_trained_tokens(work):
    res = run("render", work / "chats.jsonl", "--tokenizer", work / "tok-llama2-chinese", "--show", 2)
    first_answer = json.loads((work / "chats.jsonl").read_text().splitlines()[0])["messages"][1]["content"]
    assert res.output.count("== ") == 2 and "[[" in res.output
    assert "<s>Assistant:[[ " + first_answer[:40] in res.output
    assert "[[Human" not in res.output


def test_pretrain_text_trains_all_but_bos(work):
    out = work / "r-news"
    run("render", work / "news.jsonl", "--tokenizer", work / "tok-llama2", "--mode", "pretrain", "-o", out)
    news = [json.loads(line)["text"] for line in (work / "news.jsonl").read_text().splitlines()]
    tok = hf_tokenizer(work / "tok-llama2")
    rows = load(out)
    assert len(rows) == len(news) and json.loads((out / "manifest.json").read_text())["mode"] == "pretrain"
    for row, text in zip(rows, news):
        ids, labels = row["input_ids"], row["labels"]
        assert ids[0] == 1 and ids[-1] == 2 and ids.count(1) == 1
        assert labels[0] == -100 and labels[1:] == ids[1:]
        assert tok.decode(ids[1:-1]) == text


def test_pretrain_source_target_masks_source(work):
    # built here from real People's Daily lines: the first half of a line is the source, the rest the target
    lines = [json.loads(x)["text"] for x in (work / "news.jsonl").read_text().splitlines() if len(x) > 60][:40]
    src = work / "st.jsonl"
    src.write_text("".join(json.dumps({"source": t[: len(t) // 2], "target": t[len(t) // 2:]},
                                      ensure_ascii=False) + "\n" for t in lines), encoding="utf-8")
    out = work / "r-st"
    run("render", src, "--tokenizer", work / "tok-llama2", "--mode", "pretrain", "-o", out)
    tok = hf_tokenizer(work / "tok-llama2")
    for row, t in zip(load(out), lines):
        enc = tok(t and ("<s>" + t + "</s>"), add_special_tokens=False, return_offsets_mapping=True)
        assert enc["input_ids"] == row["input_ids"]
        cut = 3 + len(t) // 2
        for (s, e), lab, i in zip(enc["offset_mapping"], row["labels"], row["input_ids"]):
            assert lab == (i if e > cut else -100)  # trained iff the token reaches into the target


def test_group_texts_keeps_every_token(work):
    whole, grouped = work / "r-news-whole", work / "r-news-grouped"
    run("render", work / "news.jsonl", "--tokenizer", work / "tok-llama2", "--mode", "pretrain", "-o", whole,
        "--max-length", 100000)
    run("render", work / "news.jsonl", "--tokenizer", work / "tok-llama2", "--mode", "pretrain", "-o", grouped,
        "--group-texts", 512, "--workers", 2)
    w, g = load(whole), load(grouped)
    lens = [len(x) for x in g["input_ids"]]
    assert all(n == 512 for n in lens[:-1]) and 0 < lens[-1] <= 512
    assert sum(g["input_ids"], []) == sum(w["input_ids"], [])
    assert sum(g["labels"], []) == sum(w["labels"], [])
    assert g[0]["origin"].endswith("news.jsonl:1")


def test_user_template_file(work, tmp_path):
    spec = tmp_path / "mine.yaml"
    import yaml

    source = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n"
              "{% else %}A:{% generation %} {{ m['content'] }}{{ eos_token }}{% endgeneration %}\n{% endif %}"
              "{% endfor %}")
    spec.write_text(yaml.safe_dump({"name": "qa", "chat_template": source}, allow_unicode=True), encoding="utf-8")
    out = tmp_path / "r"
    run("render", work / "chats.jsonl", "--tokenizer", work / "tok-llama2", "--template", spec, "-o", out)
    assert json.loads((out / "manifest.json").read_text())["template"] == "qa"
    nogen = tmp_path / "nogen.jinja"
    nogen.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}", encoding="utf-8")
    res = run("render", work / "chats.jsonl", "--tokenizer", work / "tok-llama2", "--template", nogen,
              "-o", tmp_path / "r2", ok=False)
    assert res.exit_code == 1 and "generation" in res.output and "Traceback" not in res.output


def test_bad_inputs_give_clear_errors(work, tmp_path, data_dir):
    res = run("render", work / "chats.jsonl", "--tokenizer", tmp_path, "-o", tmp_path / "o", ok=False)
    assert res.exit_code == 1 and "tokenizer.json" in res.output
    res = run("render", work / "chats.jsonl", "--tokenizer", work / "tok-llama2", "--template", "nope",
              "-o", tmp_path / "o", ok=False)
    assert res.exit_code == 1 and "unknown template" in res.output
    # a real file cut off mid-record: the cut record is a counted reject, not a crash
    out = tmp_path / "tail"
    run("render", data_dir / "sharegpt_truncated_tail.json", "--tokenizer", work / "tok-llama2", "-o", out)
    counts = json.loads((out / "report.json").read_text())["counts"]
    assert counts["rejected"].get("parse_error") == 1 and counts["input"] == counts["kept"] + sum(counts["rejected"].values())


def test_render_and_pack_do_not_import_torch(work, tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom corpuskit.cli import main\n"
            f"r = CliRunner().invoke(main, ['render', {str(work / 'chats.jsonl')!r}, '--tokenizer', "
            f"{str(work / 'tok-llama2')!r}, '-o', {str(tmp_path / 'r')!r}, '--max-length', '2048'])\n"
            "assert r.exit_code == 0, r.output\n"
            f"r = CliRunner().invoke(main, ['pack', {str(tmp_path / 'r')!r}, '-o', {str(tmp_path / 'p')!r}, "
            "'--seq-len', '2048'])\nassert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- adversarial content and edge cases ---------------------------------------------------------
ADVERSARIAL = [  # (messages, rejected reason or None)
    ([("user", "what does </s> mean?"), ("assistant", "It ends a sequence.")], "control_token_in_content"),
    ([("user", "Human: hi\nAssistant: fake [INST] x [/INST] <<SYS>>"),
      ("assistant", "Human: no\n\n[Round 2]\n\n问：<|im_start|>? Assistant:")], None),
    ([("user", "  leading and trailing  \n\n"), ("assistant", "\n\n  spaced answer \n ")], None),
    ([("user", "你好，请介绍一下北京。"), ("assistant", "北京是中国的首都。"),
      ("user", "再见"), ("assistant", "再见！🎉👍🏽 👨‍👩‍👧")], None),
    ([("system", ""), ("user", "hi"), ("assistant", "hello")], "empty_system"),
    ([("user", "x"), ("assistant", "word " * 1500)], None),
]


@pytest.mark.parametrize("name", TEMPLATES)
def test_adversarial_content_keeps_parity_and_masks(work, tmp_path, name):
    src = tmp_path / "adv.jsonl"
    src.write_text("".join(json.dumps({"messages": [{"role": r, "content": c} for r, c in ms]}, ensure_ascii=False)
                           + "\n" for ms, _ in ADVERSARIAL), encoding="utf-8")
    out = tmp_path / "r"
    run("render", src, "--tokenizer", work / f"tok-{name}", "-o", out, "--max-length", 100000)
    report = json.loads((out / "report.json").read_text())
    expected_rejects = [why for _, why in ADVERSARIAL if why]
    if name == "chatml":  # its markers are control tokens there, so a message quoting one is refused
        expected_rejects.append("control_token_in_content")
    assert sorted(r for r, n in report["counts"]["rejected"].items() for _ in range(n)) == sorted(expected_rejects)
    assert json.loads((out / "manifest.json").read_text())["template"] == name  # named from the tokenizer dir
    tok = hf_tokenizer(work / f"tok-{name}")
    rows = rows_by_line(load(out))
    for line, row in rows.items():
        messages = [{"role": r, "content": c} for r, c in ADVERSARIAL[line - 1][0]]
        enc = tok.apply_chat_template(messages, return_assistant_tokens_mask=True)
        assert row["input_ids"] == list(enc["input_ids"]), line
        assert [lab != -100 for lab in row["labels"]] == [bool(m) for m in enc["assistant_masks"]], line
        answers = [m["content"] for m in messages if m["role"] == "assistant"]
        for (a, b), answer in zip(trained_runs(row["labels"]), answers, strict=True):
            assert tok.decode(row["input_ids"][a:b]).lstrip(" ") == (answer + END_OF_TURN[name]).lstrip(" ")


def test_truncation_right_never_doubles_eos(work, chats, tmp_path):
    """A cut just after an answer's EOS ends there; it does not append a second EOS."""
    line = next(i for i, c in enumerate(chats, 1) if len(c["messages"]) >= 4 and c["messages"][0]["role"] == "user")
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps(chats[line - 1], ensure_ascii=False) + "\n", encoding="utf-8")
    run("render", src, "--tokenizer", work / "tok-llama2-chinese", "-o", tmp_path / "full", "--max-length", 100000)
    full = load(tmp_path / "full")[0]
    k = [i for i, x in enumerate(full["input_ids"]) if x == 2][1]  # the first answer's closing EOS
    assert full["labels"][k] == 2
    for limit in (k + 1, k + 2, k + 3):
        out = tmp_path / f"cut{limit}"
        run("render", src, "--tokenizer", work / "tok-llama2-chinese", "-o", out, "--max-length", limit,
            "--truncation", "right")
        row = load(out)[0]
        ids, labels = row["input_ids"], row["labels"]
        assert ids[-1] == 2 and ids[-2] != 2 and len(ids) <= limit
        if limit <= k + 2:  # the cut fell on or just after that EOS: the sample ends there, EOS trained
            assert ids == full["input_ids"][:k + 1] and labels == full["labels"][:k + 1]


def test_group_texts_edges(work, tmp_path):
    # {source,target} from real People's Daily lines with long sources: blocks inside a source have
    # nothing to train and are left out (counted), every trained token is kept
    lines = [json.loads(x)["text"] for x in (work / "news.jsonl").read_text().splitlines() if len(x) > 60][:20]
    src = tmp_path / "st.jsonl"
    src.write_text("".join(json.dumps({"source": "".join(lines[:i + 3]), "target": t}, ensure_ascii=False) + "\n"
                           for i, t in enumerate(lines)), encoding="utf-8")
    common = ["--tokenizer", work / "tok-llama2", "--mode", "pretrain"]
    run("render", src, *common, "-o", tmp_path / "whole", "--max-length", 100000)
    res = run("render", src, *common, "-o", tmp_path / "g", "--group-texts", 64)
    whole, g = load(tmp_path / "whole"), load(tmp_path / "g")
    d = json.loads((tmp_path / "g" / "report.json").read_text())["details"]
    assert d["untrained_blocks_dropped"] > 0 and "left out" in res.output
    assert all(any(lab != -100 for lab in r) for r in g["labels"])
    trained = lambda ds: [x for r in ds["labels"] for x in r if x != -100]  # noqa: E731
    assert trained(g) == trained(whole)
    total = sum(len(r) for r in whole["input_ids"])
    assert d["tokens"] + d["untrained_block_tokens_dropped"] == total
    # plain text: a block larger than the corpus gives one row; an exact multiple gives no empty remainder
    news = tmp_path / "news.jsonl"
    news.write_text("".join((work / "news.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:30]),
                    encoding="utf-8")
    run("render", news, *common, "-o", tmp_path / "nw", "--max-length", 100000)
    n = sum(len(r) for r in load(tmp_path / "nw")["input_ids"])
    block = next(b for b in range(8, n // 2 + 1) if n % b == 0)
    for size, rows in ((n + 1000, 1), (n, 1), (block, n // block)):
        run("render", news, *common, "-o", tmp_path / f"b{size}", "--group-texts", size)
        lens = [len(r) for r in load(tmp_path / f"b{size}")["input_ids"]]
        assert len(lens) == rows and sum(lens) == n and (size > n or set(lens) == {size})
