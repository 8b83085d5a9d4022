"""`corpuskit bucket` and `corpuskit train-vocab` on the engine, through the CLI on the real samples:
every output file (buckets, manifest, rejected.jsonl; tokenizer.model and .vocab) and the report's
counts are the same bytes whatever the worker count, the split size (one big .jsonl read in many byte
ranges) or the engine (a two-node Ray cluster), and every reject names its file's own line.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.engine.splits import plan_splits

pytestmark = pytest.mark.xdist_group("engine")  # with test_engine*.py: one Ray cluster at a time


def run(*args, expect: int = 0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """One big .jsonl (no final newline) mixing real converted ShareGPT chats, People's Daily lines
    as news and reviews with categories, broken, blank and wrong-typed-category lines and one line
    over the size bound, in a seeded order; the ShareGPT .json array and a .gz of reviews (read by
    the runner); People's Daily .txt (byte ranges too). Returns the inputs and, per reject reason,
    the big file's lines expected to carry it."""
    d = tmp_path_factory.mktemp("engine-bucket")
    run("convert", data_dir / "sharegpt_sample.json", "-o", d / "chats.jsonl")
    chats = (d / "chats.jsonl").read_text(encoding="utf-8").splitlines()
    news = (data_dir / "peoples_daily_199801_head.txt").read_text(encoding="utf-8").splitlines()
    reviews = (data_dir / "reviews_neg_head.txt").read_text(encoding="utf-8").splitlines()
    rng = random.Random(5)
    lines, expect = [], {"parse_error": [], "wrong_type": []}
    for no in range(1, 2401):
        r = rng.random()
        if r < 0.02:
            lines.append('{"text": "cut off')
            expect["parse_error"].append(no)
        elif r < 0.04:
            lines.append("   ")
        elif r < 0.05:
            lines.append(json.dumps({"text": rng.choice(news), "category": 7}, ensure_ascii=False))
            expect["wrong_type"].append(no)
        elif r < 0.35:
            lines.append(json.dumps({"text": rng.choice(news), "category": "news"}, ensure_ascii=False))
        elif r < 0.65:
            lines.append(json.dumps({"text": rng.choice(reviews), "category": "reviews"}, ensure_ascii=False))
        else:
            lines.append(rng.choice(chats))
    lines[1500] = json.dumps({"text": "长" * 40_000})  # line 1501: record_too_large with --max-record-bytes 100K
    expect["record_too_large"] = [1501]
    big = d / "mixed.jsonl"
    big.write_text("\n".join(lines), encoding="utf-8")
    gz = d / "reviews.txt.gz"
    gz.write_bytes(gzip.compress((data_dir / "reviews_pos_head.txt").read_bytes(), mtime=0))
    return [big, data_dir / "sharegpt_sample.json", gz, data_dir / "peoples_daily_199801_head.txt"], expect


COMMON = ["-n", "4", "--weights", "news=0.5,reviews=1.5", "--seed", "3", "--max-record-bytes", "100K"]
BY_FILE = ["-n", "3", "--category-by-file", "--no-shuffle", "--max-record-bytes", "100K"]


def outputs(folder: Path) -> dict[str, bytes]:
    """Every output file's bytes; the report as its counts (its timings differ run to run)."""
    out = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith("report.")}
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    out["report.json"] = json.dumps({k: report[k] for k in ("inputs", "counts", "details", "examples")}).encode()
    return out


@pytest.fixture(scope="module")
def baselines(corpus, tmp_path_factory):
    """In-process runs at the default split size (every file one split), with and without weights."""
    inputs, _ = corpus
    d = tmp_path_factory.mktemp("bucket-baseline")
    run("bucket", *inputs, "-o", d / "weighted", *COMMON)
    run("bucket", *inputs, "-o", d / "by-file", *BY_FILE)
    return {"weighted": outputs(d / "weighted"), "by-file": outputs(d / "by-file")}


@pytest.mark.parametrize("extra", [["--split-size", "8K"], ["--split-size", "20K", "--workers", "2"],
                                   ["--workers", "2"]], ids=["8K", "20K-2workers", "2workers"])
def test_identical_across_workers_and_split_sizes(corpus, baselines, tmp_path, extra):
    inputs, expect = corpus
    run("bucket", *inputs, "-o", tmp_path / "weighted", *COMMON, *extra)
    got = outputs(tmp_path / "weighted")
    assert list(got) == list(baselines["weighted"])
    for name, data in got.items():
        assert data == baselines["weighted"][name], name
    rejects = [json.loads(x) for x in (tmp_path / "weighted" / "rejected.jsonl").open(encoding="utf-8")]
    for reason, lines in expect.items():  # the big file's own line numbers, whichever split read them
        assert [r["origin"]["line"] for r in rejects
                if r["reason"] == reason and r["origin"]["path"] == str(inputs[0])] == lines, reason
    run("bucket", *inputs, "-o", tmp_path / "by-file", *BY_FILE, *extra)
    assert outputs(tmp_path / "by-file") == baselines["by-file"]


def test_small_splits_really_split_the_big_files(corpus):
    files = [str(p) for p in corpus[0]]
    splits = plan_splits(files, 8 << 10)
    assert len([s for s in splits if s.path == files[0]]) > 50
    assert len([s for s in splits if s.path == files[3]]) > 5
    assert len([s for s in splits if s.path in (files[1], files[2])]) == 2  # a .json array and a .gz: whole


def test_counts_add_up_and_every_category_is_in_every_bucket(corpus, baselines):
    report = json.loads(baselines["weighted"]["report.json"])
    c, details = report["counts"], report["details"]
    assert c["input"] == c["kept"] + sum(c["rejected"].values())
    _, expect = corpus
    for reason, lines in expect.items():
        assert c["rejected"][reason] == len(lines), reason
    assert c["rejected"]["downsampled"] == details["downsampled"] > 0
    assert details["added_by_weight"] > 0
    buckets = [baselines["weighted"][f"bucket-{i:05d}.jsonl"] for i in range(4)]
    assert sum(b.count(b"\n") for b in buckets) == details["output_records"] == c["kept"] + details["added_by_weight"]
    manifest = json.loads(baselines["weighted"]["manifest.json"])
    assert set(manifest["categories"]) == {"news", "reviews", "default"}
    for b in manifest["buckets"]:
        assert set(b["categories"]) == {"news", "reviews", "default"}
    by_file = json.loads(baselines["by-file"]["manifest.json"])
    assert {"mixed", "sharegpt_sample", "peoples_daily_199801_head", "reviews"} <= set(by_file["categories"])


def test_ray_address_needs_ray_engine(corpus, tmp_path):
    inputs, _ = corpus
    res = run("bucket", inputs[3], "-o", tmp_path / "b", "-n", "2", "--ray-address", "auto", expect=1)
    assert "--ray-address needs --engine ray" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "b").exists()


def vocab_outputs(folder: Path) -> dict[str, bytes]:
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    return {"tokenizer.model": (folder / "tokenizer.model").read_bytes(),
            "tokenizer.vocab": (folder / "tokenizer.vocab").read_bytes(),
            "report": json.dumps({k: report[k] for k in ("counts", "details", "examples")}).encode()}


VOCAB = ["--vocab-size", "2000", "--character-coverage", "0.98", "--max-sentences", "3000", "--pre-tokenize", "jieba",
         "--max-record-bytes", "100K", "--seed", "9"]


@pytest.fixture(scope="module")
def vocab_baseline(corpus, tmp_path_factory):
    inputs, _ = corpus
    d = tmp_path_factory.mktemp("vocab-baseline") / "v"
    run("train-vocab", *inputs, "-o", d, *VOCAB)
    return vocab_outputs(d)


@pytest.mark.parametrize("extra", [["--split-size", "8K"], ["--split-size", "20K", "--workers", "2"]],
                         ids=["8K", "20K-2workers"])
def test_train_vocab_identical_across_workers_and_split_sizes(corpus, vocab_baseline, tmp_path, extra):
    inputs, _ = corpus
    run("train-vocab", *inputs, "-o", tmp_path / "v", *VOCAB, *extra)
    assert vocab_outputs(tmp_path / "v") == vocab_baseline


def test_train_vocab_counts_every_record_and_names_reject_lines(corpus, vocab_baseline):
    inputs, expect = corpus
    report = json.loads(vocab_baseline["report"])
    c = report["counts"]
    assert c["input"] == c["kept"] + sum(c["rejected"].values())
    for reason, lines in expect.items():
        assert c["rejected"][reason] == len(lines), reason
    shown = [e["origin"] for e in report["examples"]["parse_error"]]
    assert shown == [f"{inputs[0]}:{no}" for no in expect["parse_error"][:len(shown)]] and shown
    assert report["details"]["lines_trained"] == 3000 < report["details"]["lines_seen"]


# ---- Ray ------------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_two_node_cluster_gives_identical_output(corpus, baselines, tmp_path, ray_cluster):
    inputs, _ = corpus
    ray_args = ["--engine", "ray", "--ray-address", ray_cluster.address, "--split-size", "32K"]
    run("bucket", *inputs, "-o", tmp_path / "weighted", *COMMON, *ray_args)
    assert outputs(tmp_path / "weighted") == baselines["weighted"]
    run("bucket", *inputs, "-o", tmp_path / "by-file", *BY_FILE, *ray_args)
    assert outputs(tmp_path / "by-file") == baselines["by-file"]
    assert not ray.is_initialized()  # the command disconnected; the cluster lives on


@pytest.mark.slow
def test_ray_two_node_cluster_trains_the_same_vocabulary(corpus, vocab_baseline, tmp_path, ray_cluster):
    inputs, _ = corpus
    run("train-vocab", *inputs, "-o", tmp_path / "v", *VOCAB, "--engine", "ray", "--ray-address",
        ray_cluster.address, "--split-size", "32K")
    assert vocab_outputs(tmp_path / "v") == vocab_baseline
    assert not ray.is_initialized()
