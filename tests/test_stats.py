"""`corpuskit stats` on real samples: exact counts per category, tokens, histogram, JSON, PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.ingest import iter_records
from corpuskit.outputs import dumps
from corpuskit.records import Record
from corpuskit.report import StageReport
from corpuskit.stats import bin_label, collect_stats, length_bin

SOURCES = {"news": ("peoples_daily_199801_head.txt", "peoples-daily"),
           "review_pos": ("reviews_pos_head.txt", "text"),
           "chat": ("sharegpt_sample.json", "sharegpt")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """Real samples converted by the library and tagged with a category; invalid ShareGPT records stay raw."""
    d = tmp_path_factory.mktemp("stats-in")
    texts: dict[str, list[str]] = {}
    for cat, (name, fmt) in SOURCES.items():
        rows = []
        for item in iter_records([str(data_dir / name)], fmt=fmt):
            if isinstance(item, Record):
                item.category = cat
                texts.setdefault(cat, []).append(item.content_text())
                rows.append(item.to_json())
            else:
                rows.append({**item.raw, "category": cat})
        (d / f"{cat}.jsonl").write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    return d, texts


def run(args, expect=0):
    res = CliRunner().invoke(main, ["stats", *map(str, args)])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


def test_counts_per_category_table_and_json(corpus, tmp_path):
    d, texts = corpus
    out = tmp_path / "stats.json"
    res = run([*sorted(d.glob("*.jsonl")), "--json", out])
    s = json.loads(out.read_text(encoding="utf-8"))
    for cat, tx in texts.items():
        row = s["categories"][cat]
        assert row["records"] == len(tx) and row["chars"] == sum(map(len, tx))
        assert row["max_chars"] == max(map(len, tx)) and row["min_chars"] == min(map(len, tx))
        expected_hist = Counter(_bin_by_hand(len(t)) for t in tx)
        assert s["histogram"]["counts"][cat] == [expected_hist.get(k, 0) for k in range(len(s["histogram"]["bins"]))]
        assert f"{row['chars']:,}" in res.stdout
    assert s["histogram"]["unit"] == "chars" and "tokens" not in s["total"]
    assert s["histogram"]["bins"][:5] == ["0", "1", "2-3", "4-7", "8-15"]
    c = s["report"]["counts"]
    n_valid = sum(map(len, texts.values()))
    assert c["kept"] == s["total"]["records"] == n_valid and c["input"] == n_valid + sum(c["rejected"].values())
    assert c["rejected"] and f"input {c['input']} = counted {n_valid}" in res.stdout
    assert "chat.jsonl:" in res.stderr and "rejected (" in res.stderr  # rejects named with file:line


def _bin_by_hand(n: int) -> int:
    """Bin k holds lengths in [2**(k-1), 2**k): written out independently of corpuskit's length_bin."""
    k = 0
    while n >= (1 << k):
        k += 1
    return k


def test_length_bins():
    assert [length_bin(n) for n in (0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [0, 1, 2, 2, 3, 3, 4, 10, 11]
    assert [bin_label(k) for k in (0, 1, 2, 11)] == ["0", "1", "2-3", "1024-2047"]


@pytest.mark.xdist_group("llama2_tokenizer")
def test_tokens_with_llama2_tokenizer_and_plot(corpus, tmp_path, llama2_tokenizer_dir):
    from transformers import AutoTokenizer

    d, texts = corpus
    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    out, png = tmp_path / "s.json", tmp_path / "lengths.png"
    res = run([*sorted(d.glob("*.jsonl")), "--tokenizer", llama2_tokenizer_dir, "--json", out, "--plot", png])
    s = json.loads(out.read_text(encoding="utf-8"))
    assert s["histogram"]["unit"] == "tokens"
    for cat, tx in texts.items():
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in tx]  # one by one, via __call__
        assert s["categories"][cat]["tokens"] == sum(lengths)
        expected = Counter(_bin_by_hand(n) for n in lengths)
        assert s["histogram"]["counts"][cat] == [expected.get(k, 0) for k in range(len(s["histogram"]["bins"]))]
    assert "token share" in res.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.xdist_group("llama2_tokenizer")
def test_batch_size_does_not_change_counts(corpus, llama2_tokenizer_dir):
    from corpuskit.stats.tokens import load_token_counter

    d, _ = corpus
    count = load_token_counter(str(llama2_tokenizer_dir))
    files = [str(d / "review_pos.jsonl")]
    a = collect_stats(iter_records(files), StageReport("stats"), count_tokens=count, batch_size=7)
    b = collect_stats(iter_records(files), StageReport("stats"), count_tokens=count, batch_size=5000)
    assert a.categories["review_pos"].tokens == b.categories["review_pos"].tokens > 0
    assert a.categories["review_pos"].tokens_hist == b.categories["review_pos"].tokens_hist


def test_bad_tokenizer_dir_and_bad_input(corpus, tmp_path, data_dir):
    d, _ = corpus
    res = run([d / "news.jsonl", "--tokenizer", tmp_path / "nope"], expect=1)
    assert "nope" in res.output and "tokenizer" in res.output
    empty = tmp_path / "empty-tok"
    empty.mkdir()
    res = run([d / "news.jsonl", "--tokenizer", empty], expect=1)
    assert "empty-tok: cannot load tokenizer" in res.output
    res = run([data_dir / "sharegpt_truncated_tail.json"])
    assert "sharegpt_truncated_tail.json:44: rejected (parse_error)" in res.stderr
    assert "input 3 = counted 2 + rejected 1 (parse_error=1)" in res.stdout


def test_stats_of_bucket_output_folder_matches_manifest(corpus, tmp_path):
    d, _ = corpus
    out = tmp_path / "buckets"
    res = CliRunner().invoke(main, ["bucket", str(d / "news.jsonl"), str(d / "review_pos.jsonl"), "-o", str(out),
                                    "-n", "3", "--weights", "news=2"])
    assert res.exit_code == 0, res.output
    run([out, "--json", tmp_path / "s.json"])
    s = json.loads((tmp_path / "s.json").read_text())
    m = json.loads((out / "manifest.json").read_text())
    assert s["inputs"] == [str(out / b["file"]) for b in m["buckets"]]  # not rejected.jsonl or report.json
    assert {c: v["records"] for c, v in s["categories"].items()} == {c: v["after"] for c, v in m["categories"].items()}


def test_stats_without_tokenizer_or_plot_imports_no_heavy_library(corpus):
    d, _ = corpus
    code = ("import sys; from click.testing import CliRunner; from corpuskit.cli import main; "
            f"r = CliRunner().invoke(main, ['stats', {str(d / 'news.jsonl')!r}]); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'deepspeed', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.xdist_group("llama2_tokenizer")
def test_workers_never_change_counts(corpus, tmp_path, llama2_tokenizer_dir):
    """Each worker count runs in its own process: the Rust thread pool is sized once per process."""
    d, _ = corpus
    files = [str(d / "review_pos.jsonl"), str(d / "chat.jsonl")]
    stats, env_seen = {}, {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}.json"
        code = ("import os, sys; from click.testing import CliRunner; from corpuskit.cli import main; "
                f"r = CliRunner().invoke(main, ['stats', *{files!r}, '--tokenizer', {str(llama2_tokenizer_dir)!r}, "
                f"'--workers', '{workers}', '--json', {str(out)!r}]); assert r.exit_code == 0, r.output; "
                "print(os.environ['RAYON_NUM_THREADS'], os.environ['TOKENIZERS_PARALLELISM'])")
        env = {k: v for k, v in __import__("os").environ.items() if k not in ("RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM")}
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        env_seen[workers] = res.stdout.split()
        stats[workers] = json.loads(out.read_text())
    assert env_seen == {1: ["1", "false"], 2: ["2", "true"]}
    s1, s2 = stats[1], stats[2]
    assert s1["categories"] == s2["categories"] and s1["histogram"] == s2["histogram"]
    assert s1["total"]["tokens"] > 0 and s1["total"] == s2["total"]