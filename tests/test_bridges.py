"""Format bridges, driven through the CLI on the real samples in tests/data: convert to
Colossal-LLaMA-2's {source, target}, a default system turn, the Alpaca prompt layouts, extra keys
that travel, validate on raw formats, `tokenizer export`, and merge-vocab's --eval folders and
--pad-to-multiple-of.

Where a record shape is not in tests/data (Alpaca, Colossal, an invisible-only reply, a
two-paragraph text), it is built on the fly from real lines and the test says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main

pytestmark = pytest.mark.xdist_group("bridges")


def run(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(s) for s in path.read_text(encoding="utf-8").split("\n") if s]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def lines(path: Path) -> list[str]:
    return [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


@pytest.fixture(scope="module")
def news(tmp_path_factory, data_dir) -> Path:
    out = tmp_path_factory.mktemp("news") / "news.jsonl"
    run("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", out,
        "--category", "news")
    return out


# ---- convert --to source-target ----------------------------------------------------------------

def test_source_target_with_empty_source(news, tmp_path):
    out = tmp_path / "colossal.jsonl"
    run("convert", news, "-o", out, "--to", "source-target")
    texts = [r["text"] for r in read_jsonl(news)]
    got = read_jsonl(out)
    assert [r["target"] for r in got] == texts
    assert all(r["source"] == "" and r["category"] == "news" and set(r) == {"source", "target", "category"}
               for r in got)
    assert "0 invalid" in run("validate", out, "--schema", "pretrain").output


def test_source_target_split_first_line_and_first_sentence(news, tmp_path):
    """Title + paragraph records, built on the fly by joining real People's Daily lines 1 and 4
    (the headline and the first paragraph); single lines have no first-line split."""
    real = [r["text"] for r in read_jsonl(news)]
    two = write_jsonl(tmp_path / "two.jsonl", [{"text": real[0] + "\n" + real[3]}, {"text": real[3]}])
    run("convert", two, "-o", tmp_path / "fl.jsonl", "--to", "source-target", "--split", "first-line",
        "--report", tmp_path / "fl.json")
    first, single = read_jsonl(tmp_path / "fl.jsonl")
    assert first == {"source": real[0] + "\n", "target": real[3]}
    assert single == {"source": "", "target": real[3]}
    assert json.loads((tmp_path / "fl.json").read_text())["details"]["source_target"] == {"split": "first-line",
                                                                                         "not_split": 1}
    run("convert", two, "-o", tmp_path / "fs.jsonl", "--to", "source-target", "--split", "first-sentence")
    for rec, text in zip(read_jsonl(tmp_path / "fs.jsonl"), [real[0] + "\n" + real[3], real[3]]):
        assert rec["source"] + rec["target"] == text and rec["target"].strip()
    assert read_jsonl(tmp_path / "fs.jsonl")[1]["source"].endswith("。")


def test_source_target_rejects_conversations_and_misused_split(data_dir, tmp_path):
    run("convert", data_dir / "sharegpt_sample.json", "-o", tmp_path / "st.jsonl", "--to", "source-target",
        "--report", tmp_path / "r.json")
    rejected = json.loads((tmp_path / "r.json").read_text())["counts"]["rejected"]
    assert rejected["wrong_kind"] == 45 and not read_jsonl(tmp_path / "st.jsonl")
    r = run("convert", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "x.jsonl", "--split", "first-line", ok=False)
    assert r.exit_code == 2 and "--split applies to --to source-target" in r.output


# ---- --system, Alpaca layouts, extra keys ----------------------------------------------------------

def test_default_system_turn(data_dir, tmp_path):
    system = "你是一个乐于助人的助手。"
    out = tmp_path / "chats.jsonl"
    run("convert", data_dir / "sharegpt_sample.json", "-o", out, "--to", "sft", "--system", system,
        "--report", tmp_path / "r.json")
    plain = tmp_path / "plain.jsonl"
    run("convert", data_dir / "sharegpt_sample.json", "-o", plain, "--to", "sft")
    with_sys, without = read_jsonl(out), read_jsonl(plain)
    own = [r for r in without if r["messages"][0]["role"] == "system"]
    assert own, "the sample has conversations with their own system turn"
    for a, b in zip(with_sys, without):
        if b["messages"][0]["role"] == "system":
            assert a == b  # their own system turn is kept, not replaced
        else:
            assert a["messages"] == [{"role": "system", "content": system}] + b["messages"]
    assert json.loads((tmp_path / "r.json").read_text())["details"]["system_turn_added"] == len(without) - len(own)
    assert "0 invalid" in run("validate", out).output


def _alpaca(data_dir: Path) -> list[dict]:
    """Alpaca records built on the fly from real reviews (instruction + input + output), one with
    an empty input, one with extra keys as Alpaca-style Chinese sets carry them."""
    pos = lines(data_dir / "reviews_pos_head.txt")
    return [{"instruction": "判断这条评论的情感。", "input": pos[1], "output": "正面。", "url": "https://example.cn/1",
             "lang": "zh"},
            {"instruction": "用一句话复述：" + pos[2][:30], "input": "", "output": pos[2][:30]}]


@pytest.mark.parametrize("layout,user", [
    ("newline", "{i}\n{x}"), ("blank-line", "{i}\n\n{x}"), ("input-first", "{x}\n{i}"),
    ("stanford", "### Instruction:\n{i}\n\n### Input:\n{x}"),
])
def test_alpaca_layouts(data_dir, tmp_path, layout, user):
    recs = _alpaca(data_dir)
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    run("convert", src, "-o", tmp_path / "out.jsonl", "--from", "alpaca", "--alpaca-layout", layout)
    first, second = read_jsonl(tmp_path / "out.jsonl")
    assert first["messages"][0]["content"] == user.format(i=recs[0]["instruction"], x=recs[0]["input"])
    no_input = "### Instruction:\n" + recs[1]["instruction"] if layout == "stanford" else recs[1]["instruction"]
    assert second["messages"][0]["content"] == no_input
    assert first["url"] == "https://example.cn/1" and first["lang"] == "zh"  # extra keys travel


def test_extra_keys_travel_through_convert_and_clean(data_dir, tmp_path):
    """ShareGPT records from the sample, and Colossal-LLaMA-2 SFT records built from them, with
    provenance keys added on the fly: convert keeps them, clean keeps them on its kept records."""
    sample = json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8"))[:5]
    sharegpt = [{**r, "url": f"https://sharegpt.com/c/{r['id']}", "model": "gpt-3.5"} for r in sample]
    colossal = [{"messages": [{"from": "human" if t["from"] == "human" else "assistant", "content": t["value"]}
                              for t in r["conversations"]], "category": "chat", "source_url": f"u{k}"}
                for k, r in enumerate(sample)]
    write_jsonl(tmp_path / "sg.jsonl", sharegpt)
    write_jsonl(tmp_path / "col.jsonl", colossal)
    run("convert", tmp_path / "sg.jsonl", tmp_path / "col.jsonl", "-o", tmp_path / "c.jsonl")
    got = read_jsonl(tmp_path / "c.jsonl")
    sg_out = [r for r in got if "url" in r]
    col_out = [r for r in got if "source_url" in r]
    assert sg_out and col_out and len(sg_out) + len(col_out) == len(got)
    assert all(r["model"] == "gpt-3.5" and r["url"].endswith(r["id"]) for r in sg_out)
    assert all("conversations" not in r and all(set(m) == {"role", "content"} for m in r["messages"]) for r in got)
    run("clean", tmp_path / "c.jsonl", "-o", tmp_path / "clean", "--dedup", "none")
    kept = read_jsonl(tmp_path / "clean" / "clean.jsonl")
    assert kept and all("url" in r or "source_url" in r for r in kept)


# ---- validate --from, invisible-only replies --------------------------------------------------------

def test_validate_raw_sharegpt_agrees_with_convert(data_dir, tmp_path):
    r = run("validate", data_dir / "sharegpt_sample.json", "--from", "sharegpt", "--max-errors", 100, ok=False)
    assert r.exit_code == 1 and "67 records, 45 valid, 22 invalid" in r.output  # convert keeps the same 45
    assert "[non_alternating] (read as sharegpt)" in r.output
    r = run("validate", data_dir / "sharegpt_sample.json", ok=False)  # as canonical records: none is
    assert "67 records, 0 valid" in r.output


def test_validate_raw_alpaca_and_invisible_only_reply(data_dir, tmp_path):
    """An Alpaca reply and a canonical reply made only of zero-width characters (U+200B, U+FEFF),
    built on the fly: invalid in validate, as clean's normalisation already treats them."""
    recs = _alpaca(data_dir) + [{"instruction": "你好", "input": "", "output": "\u200b\ufeff\u200b"}]
    src = tmp_path / "alpaca.json"
    src.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    r = run("validate", src, "--from", "alpaca", ok=False)
    assert "3 records, 2 valid, 1 invalid" in r.output
    assert "only invisible characters (e.g. U+200B) [empty_assistant] (read as alpaca)" in r.output
    canonical = write_jsonl(tmp_path / "c.jsonl", [
        {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "\u200b"}]},
        {"text": "\u200d\u2060"}, {"text": lines(data_dir / "reviews_pos_head.txt")[0]}])
    r = run("validate", canonical, ok=False)
    assert "3 records, 1 valid, 2 invalid" in r.output and "[empty_text]" in r.output
    run("convert", canonical, "-o", tmp_path / "conv.jsonl", "--report", tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["rejected"] == {"empty_assistant": 1,
                                                                                 "empty_text": 1}


# ---- tokenizer export, merge-vocab --eval FOLDER and --pad-to-multiple-of ----------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory, llama2_model) -> Path:
    out = tmp_path_factory.mktemp("tok") / "llama2-hf"
    run("tokenizer", "export", "--model", llama2_model, "-o", out)
    return out


def real_texts(data_dir: Path) -> list[str]:
    texts = [t["value"] for r in json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8"))
             for t in r["conversations"]][:150]
    return texts + lines(data_dir / "peoples_daily_199801_head.txt")[:50] + lines(data_dir / "reviews_neg_head.txt")[:50]


def test_tokenizer_export_has_merge_vocab_parity(exported, llama2_model, tmp_path, data_dir):
    """The exported folder equals what merge-vocab writes for nothing added, and its ids equal
    SentencePiece's on real text."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    empty = write_jsonl(tmp_path / "none.jsonl", [])
    run("merge-vocab", "--base", llama2_model, "--add", empty, "-o", tmp_path / "merged")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"):
        assert (exported / name).read_bytes() == (tmp_path / "merged" / name).read_bytes(), name
    sp = spm.SentencePieceProcessor(model_file=str(llama2_model))
    hf = AutoTokenizer.from_pretrained(exported)
    for text in real_texts(data_dir):
        assert hf(text, add_special_tokens=False)["input_ids"] == sp.encode(text)
    rep = json.loads((exported / "report.json").read_text())
    assert rep["command"] == "tokenizer-export"
    assert all(r["slow_fast_agree"] == 1.0 for r in rep["details"]["eval"].values())


def test_tokenizer_export_errors(tmp_path, data_dir):
    r = run("tokenizer", "export", "--model", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o", ok=False)
    assert r.exit_code == 1 and "not a SentencePiece model" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def zh_pieces(tmp_path_factory, data_dir) -> Path:
    """Chinese words of the People's Daily sample as pieces (2-4 characters, cut on the fly with jieba)."""
    import jieba

    jieba.setLogLevel(60)
    text = "".join(lines(data_dir / "peoples_daily_199801_head.txt"))
    words = [w for w in dict.fromkeys(jieba.lcut(text.replace(" ", "").replace("/", ""))) if 2 <= len(w) <= 4][:300]
    return write_jsonl(tmp_path_factory.mktemp("pieces") / "pieces.jsonl", [{"piece": w} for w in words])


def test_merge_vocab_pad_to_multiple_keeps_ids(llama2_model, zh_pieces, news, tmp_path, data_dir):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    run("clean", news, "-o", tmp_path / "news_clean", "--dedup", "none")
    run("merge-vocab", "--base", llama2_model, "--add", zh_pieces, "-o", tmp_path / "plain")
    run("merge-vocab", "--base", llama2_model, "--add", zh_pieces, "-o", tmp_path / "padded",
        "--pad-to-multiple-of", 64, "--eval", tmp_path / "news_clean")
    plain = spm.SentencePieceProcessor(model_file=str(tmp_path / "plain" / "tokenizer.model"))
    padded = spm.SentencePieceProcessor(model_file=str(tmp_path / "padded" / "tokenizer.model"))
    assert plain.get_piece_size() % 64 != 0 and padded.get_piece_size() % 64 == 0
    assert 0 < padded.get_piece_size() - plain.get_piece_size() < 64
    assert padded.id_to_piece(plain.get_piece_size()) == "<unused_0>"
    hf = AutoTokenizer.from_pretrained(tmp_path / "padded")
    assert len(hf) == padded.get_piece_size()
    for text in real_texts(data_dir) + ["<unused_0> literal"]:
        ids = plain.encode(text)
        assert padded.encode(text) == ids == hf(text, add_special_tokens=False)["input_ids"]
    rep = json.loads((tmp_path / "padded" / "report.json").read_text())
    assert rep["details"]["pad_to_multiple_of"] == 64 and rep["details"]["padding_pieces"] > 0
    evals = rep["details"]["eval"]
    folder_key = str(tmp_path / "news_clean" / "clean.jsonl")  # --eval of a stage folder reads its data file
    assert folder_key in evals and evals[folder_key]["slow_fast_agree"] == 1.0


# ---- the pre-commit hook's slim install ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _slim_requirements() -> list[str]:
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    deps = hooks[0]["additional_dependencies"]
    assert deps[0] == "--no-deps" and all(h["additional_dependencies"] == deps for h in hooks)
    return deps[1:]


def test_slim_hook_requirements_are_complete():
    """pip runs with --no-deps, so the list must hold the requirements of everything on it."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    listed = {canonicalize_name(Requirement(r).name): Requirement(r) for r in _slim_requirements()}
    for name, req in listed.items():
        if req.marker is not None and not req.marker.evaluate():
            continue
        for dep in metadata.requires(name) or ():
            dep = Requirement(dep)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                assert canonicalize_name(dep.name) in listed, f"{name} needs {dep.name}, missing from the hook"


def test_validate_runs_with_only_the_slim_requirements(tmp_path, data_dir):
    """`corpuskit validate` in a process that may import only the standard library, corpuskit and
    the hook's packages (anything else raises ImportError), as in pre-commit's slim environment."""
    import subprocess
    import sys
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    names = {canonicalize_name(Requirement(r).name) for r in _slim_requirements()}
    allowed = {m for m, dists in metadata.packages_distributions().items()
               if any(canonicalize_name(d) in names for d in dists)} | {"corpuskit"}
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": "not a list"}, {"text": "\u200b"}])
    script = f"""
import sys
ALLOWED = {sorted(allowed)!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names and top not in ALLOWED and not top.startswith("_"):
            raise ModuleNotFoundError(f"{{name}} is not in the slim install")
sys.meta_path.insert(0, Block())
from corpuskit.cli import main
main(["validate", *sys.argv[1:]])
"""
    for args, expect in [
        ([data_dir / "sharegpt_sample.json", "--from", "sharegpt"], ["67 records, 45 valid, 22 invalid"]),
        ([bad, data_dir / "reviews_pos_head.txt"],
         [f"{bad}:1: $.messages: must be of type array, got string",  # jsonschema explains it
          "[empty_text]", "300 records, 300 valid"]),
    ]:
        proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "not in the slim install" not in proc.stderr
        for text in expect:
            assert text in proc.stdout, proc.stdout


def test_github_actions_example_installs_the_same_slim_set_with_a_pip_cache():
    import re

    import yaml

    doc = (ROOT / "docs" / "data-prs.md").read_text(encoding="utf-8")
    workflow = yaml.safe_load(re.search(r"## GitHub Actions.*?```yaml\n(.*?)```", doc, re.S).group(1))
    steps = workflow["jobs"]["validate"]["steps"]
    setup = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip" and setup["with"]["cache-dependency-path"]
    install = next(s for s in steps if "pip install" in s.get("run", ""))["run"]
    assert install.startswith("pip install --no-deps ")
    quoted = re.findall(r'"([^"]+)"', install)
    assert quoted[0].startswith("corpuskit @ ")
    assert quoted[1:] == [r for r in _slim_requirements() if ";" not in r]  # Windows-only colorama aside


# ---- reports: Details as tables, pack timings; stats plot scale -------------------------------------------

def test_report_details_are_tables_and_pack_total_covers_pack(news, tmp_path, llama2_tokenizer_dir):
    run("render", news, "--tokenizer", llama2_tokenizer_dir, "--mode", "pretrain", "-o", tmp_path / "rendered",
        "--max-length", 256)
    run("pack", tmp_path / "rendered", "-o", tmp_path / "packed", "--seq-len", 256)
    rep = json.loads((tmp_path / "packed" / "report.json").read_text())
    assert rep["timings"]["pack"] <= rep["timings"]["total"]
    run("clean", news, "-o", tmp_path / "clean")
    for md in (tmp_path / "packed" / "report.md", tmp_path / "clean" / "report.md"):
        details = md.read_text(encoding="utf-8").split("## Details", 1)[1].split("## Timings", 1)[0]
        assert "{'" not in details and "': " not in details  # no Python dict dumps
        assert "| item | value |" in details
    clean_md = (tmp_path / "clean" / "report.md").read_text(encoding="utf-8")
    assert "### by_category" in clean_md and "| news | 400 |" in clean_md
    assert "|  | checked | rejected | by_rule |" in clean_md


def test_stats_length_plot_has_log_scale(data_dir, tmp_path):
    from corpuskit.ingest import iter_records
    from corpuskit.report import StageReport
    from corpuskit.stats.collect import collect_stats
    from corpuskit.stats.render import length_figure

    png = tmp_path / "lengths.png"
    run("stats", data_dir / "reviews_pos_head.txt", "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stats = collect_stats(iter_records([str(data_dir / "reviews_pos_head.txt")]), StageReport("stats"))
    ax = length_figure(stats).axes[0]
    assert ax.get_yscale() == "log" and "log" in ax.get_ylabel()
