"""`corpuskit render` (sft, pretrain, preference, prompt) and `corpuskit stats` on the engine, through
the CLI on the real samples: the same dataset (Arrow bytes, rows, origins, labels, manifest) and the same statistics whatever the
engine, the worker count or the split size (many byte ranges per file); row origins and rejects name
the file's own lines; the tokenizer is loaded once per worker process, not once per task.

The Ray tests start their own two-node cluster on this machine (ray.cluster_utils.Cluster) and stop it.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main

pytestmark = pytest.mark.xdist_group("engine")  # with test_engine*.py: one Ray cluster at a time

DATASET_FILES = ["data-00000-of-00001.arrow", "state.json", "dataset_info.json", "manifest.json"]


def run(*args, expect: int = 0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir, llama2_tokenizer_dir):
    """One .jsonl of real ShareGPT chats (converted, each twice) mixed, in a seeded order, with broken
    JSON lines, blank lines and pretrain records (refused by --mode sft); People's Daily converted;
    a llama2-chinese tokenizer. Returns (folder, mixed file, line numbers of the chats, of the render rejects, of the broken lines)."""
    d = tmp_path_factory.mktemp("engine-render")
    run("convert", data_dir / "sharegpt_sample.json", "-o", d / "chats.jsonl", "--to", "sft")
    run("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", d / "news.jsonl")
    chats = (d / "chats.jsonl").read_text(encoding="utf-8").splitlines() * 2
    texts = (data_dir / "reviews_neg_head.txt").read_text(encoding="utf-8").splitlines()[:40]
    rng = random.Random(5)
    lines, good, bad, broken = [], [], [], []
    ci = ti = 0
    while ci < len(chats):
        r = rng.random()
        no = len(lines) + 1
        if r < 0.05:
            lines.append('{"messages": [{"role": "user", "content": "cut off')
            bad.append(no)
            broken.append(no)
        elif r < 0.08:
            lines.append("")
        elif r < 0.15 and ti < len(texts):
            lines.append(json.dumps({"text": texts[ti]}, ensure_ascii=False))
            ti += 1
            bad.append(no)
        else:
            lines.append(chats[ci])
            ci += 1
            good.append(no)
    (d / "mixed.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tok = d / "tok"
    shutil.copytree(llama2_tokenizer_dir, tok)
    run("template", "export", "llama2-chinese", "--tokenizer", tok)
    return d, d / "mixed.jsonl", good, bad, broken


def render(corpus, out: Path, *extra):
    d, mixed = corpus[:2]
    run("render", mixed, "--tokenizer", d / "tok", "-o", out, "--max-length", 384, *extra)
    return out


def rows(out: Path) -> list[dict]:
    from datasets import load_from_disk

    return load_from_disk(str(out)).to_list()


def counts(out: Path) -> dict:
    r = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return r["counts"]


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory):
    return render(corpus, tmp_path_factory.mktemp("render-base") / "out")


def assert_same_dataset(a: Path, b: Path) -> None:
    for f in DATASET_FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert rows(a) == rows(b)
    assert counts(a) == counts(b)


def test_baseline_rows_name_the_file_lines(corpus, baseline):
    _, mixed, good, bad, broken = corpus
    got = rows(baseline)
    lines = [int(r["origin"].rsplit(":", 1)[1]) for r in got]
    assert lines == sorted(lines) and set(lines) <= set(good)  # the chats' own lines
    assert all(r["origin"].startswith(f"{mixed}:") for r in got)
    assert all(any(x != -100 for x in r["labels"]) for r in got)
    c = counts(baseline)
    assert c["input"] == len(good) + len(bad) and c["kept"] == len(got) > 20
    assert c["kept"] + c["rejected"]["too_long"] == len(good)  # a first answer over --max-length
    assert c["rejected"]["parse_error"] == len(broken) and c["rejected"]["wrong_kind"] == len(bad) - len(broken)
    report = json.loads((baseline / "report.json").read_text(encoding="utf-8"))
    for reason, where in (("parse_error", broken), ("wrong_kind", bad), ("too_long", good)):
        assert {int(e["origin"].rsplit(":", 1)[1]) for e in report["examples"][reason]} <= set(where)
    manifest = json.loads((baseline / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["records"] == len(got) and manifest["tokens"] == sum(len(r["input_ids"]) for r in got)


@pytest.mark.parametrize("extra", [["--split-size", "3K"], ["--split-size", "5K", "--workers", 2]])
def test_render_identical_across_workers_and_split_sizes(corpus, baseline, tmp_path, extra):
    assert_same_dataset(baseline, render(corpus, tmp_path / "out", *extra))
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    base = json.loads((baseline / "report.json").read_text(encoding="utf-8"))
    assert report["examples"] == base["examples"]  # the same rejects, with the same file lines


def test_split_size_gives_many_tasks(corpus):
    from corpuskit.engine.splits import plan_splits

    mixed = corpus[1]
    assert len(plan_splits([str(mixed)], 3 << 10)) > 20


def test_group_texts_identical_across_workers_and_split_sizes(corpus, data_dir, tmp_path):
    d = corpus[0]
    outs = []
    for i, extra in enumerate(([], ["--split-size", "8K", "--workers", 2], ["--split-size", "2K"])):
        out = tmp_path / f"g{i}"
        run("render", d / "news.jsonl", data_dir / "reviews_neg_head.txt", "--tokenizer", d / "tok", "-o", out,
            "--mode", "pretrain", "--group-texts", 256, *extra)
        outs.append(out)
    assert_same_dataset(outs[0], outs[1])
    assert_same_dataset(outs[0], outs[2])
    origins = {r["origin"].rsplit(":", 1)[0] for r in rows(outs[0])}
    assert origins == {str(d / "news.jsonl"), str(data_dir / "reviews_neg_head.txt")}


def test_tokenizer_is_loaded_once_per_worker_not_per_task(corpus, tmp_path, monkeypatch):
    from corpuskit.render import steps
    from corpuskit.render.tokenizer_dir import TokenizerDir

    loads = []
    real = TokenizerDir.load.__func__

    def counting(cls, path):
        loads.append(str(path))
        return real(cls, path)

    monkeypatch.setattr(TokenizerDir, "load", classmethod(counting))
    steps._TOKENIZERS.clear()
    steps._RENDERERS.clear()
    render(corpus, tmp_path / "out", "--split-size", "3K")  # > 20 tasks, all in this process
    assert loads == [str(corpus[0] / "tok")]  # the command's own load, reused by every task
    steps._TOKENIZERS.clear()  # a worker that starts cold loads it on its first task only
    steps._RENDERERS.clear()
    loads.clear()
    step = steps.RenderStep(str(corpus[0] / "tok"), "fp", None, steps.RenderOptions(mode="pretrain"))
    for _ in range(3):
        step.renderer()
    assert len(loads) == 1


@pytest.fixture(scope="module")
def pairs(corpus):
    """Real review-verdict and ShareGPT preference pairs (tests/preference_data.py) in one .jsonl."""
    from preference_data import review_pairs, sharegpt_pairs, write_jsonl

    path = corpus[0] / "pairs.jsonl"
    write_jsonl(path, review_pairs(60) + sharegpt_pairs(30))
    return path


def render_pairs(corpus, pairs, out: Path, mode: str, *extra) -> Path:
    run("render", pairs, "--tokenizer", corpus[0] / "tok", "-o", out, "--mode", mode, "--max-length", 512, *extra)
    return out


@pytest.mark.parametrize("mode", ["preference", "prompt"])
def test_pair_modes_identical_across_workers_and_split_sizes(corpus, pairs, tmp_path, mode):
    base = render_pairs(corpus, pairs, tmp_path / "base", mode)
    got = rows(base)
    assert len(got) > 60 and [int(r["origin"].rsplit(":", 1)[1]) for r in got] == list(range(1, len(got) + 1))
    for i, extra in enumerate((["--workers", 2, "--split-size", "4K"], ["--split-size", "3K"])):
        assert_same_dataset(base, render_pairs(corpus, pairs, tmp_path / f"o{i}", mode, *extra))


def test_engine_options_are_checked(corpus, tmp_path):
    d, mixed = corpus[:2]
    res = run("render", mixed, "--tokenizer", d / "tok", "-o", tmp_path / "p", "--ray-address", "auto", expect=1)
    assert "--ray-address needs --engine ray" in res.output
    assert not (tmp_path / "p").exists()


# ---- stats ----------------------------------------------------------------------------------

def stats(corpus, data_dir, out: Path, *extra):
    d, mixed = corpus[:2]
    res = run("stats", mixed, d / "news.jsonl", data_dir / "reviews_pos_head.txt", data_dir / "sharegpt_sample.json",
              "--category-by-file", "--tokenizer", d / "tok", "--json", out, *extra)
    s = json.loads(out.read_text(encoding="utf-8"))
    assert set(s["report"]["timings"]) == {"total"}
    del s["report"]["timings"]  # the one thing that differs run to run
    return json.dumps(s, indent=2), res.stdout, res.stderr


@pytest.fixture(scope="module")
def stats_baseline(corpus, data_dir, tmp_path_factory):
    return stats(corpus, data_dir, tmp_path_factory.mktemp("stats-base") / "s.json")


def test_stats_baseline_counts_every_record(corpus, stats_baseline):
    _, mixed, good, bad, broken = corpus
    s = json.loads(stats_baseline[0])
    assert s["report"]["counts"]["input"] == s["report"]["counts"]["kept"] + sum(s["report"]["counts"]["rejected"].values())
    assert s["categories"]["mixed"]["records"] == len(good) + len(bad) - len(broken)  # text records count too
    assert s["categories"]["mixed"]["tokens"] > 0 and s["categories"]["news"]["tokens"] > 0
    assert f"{mixed}:{broken[0]}: rejected (parse_error)" in stats_baseline[2]  # the file's own line
    assert f"parse_error={len(broken)})" in stats_baseline[1]  # the .json array has rejects of its own


@pytest.mark.parametrize("extra", [["--split-size", "3K"], ["--workers", 2]])
def test_stats_identical_across_workers_and_split_sizes(corpus, data_dir, stats_baseline, tmp_path, extra):
    assert stats(corpus, data_dir, tmp_path / "s.json", *extra) == stats_baseline


# ---- Ray ------------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_two_node_cluster_gives_identical_render_and_stats(corpus, data_dir, pairs, baseline, stats_baseline,
                                                                tmp_path, ray_cluster):
    ray_args = ["--engine", "ray", "--ray-address", ray_cluster.address, "--split-size", "8K"]
    assert_same_dataset(baseline, render(corpus, tmp_path / "out", *ray_args))
    assert_same_dataset(render_pairs(corpus, pairs, tmp_path / "p-local", "preference"),
                        render_pairs(corpus, pairs, tmp_path / "p-ray", "preference", *ray_args))
    assert stats(corpus, data_dir, tmp_path / "s.json", *ray_args) == stats_baseline
    assert not ray.is_initialized()  # the command disconnected; the cluster lives on
