"""`corpuskit clean` on the engine, through the CLI on the real samples: the per-record steps run over
input splits on local workers or on Ray, dedup decisions stay on the driver, and clean.jsonl,
rejected.jsonl and the report are the same bytes and counts whatever the engine, the worker count or
the split size (one big file read in many 8K byte ranges, with exact and near copies across ranges).

The Ray tests start their own two-node cluster on this machine (ray.cluster_utils.Cluster) and stop
it; one kills a Ray worker in the middle of a clean task and still gets identical results.
"""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main

pytestmark = pytest.mark.xdist_group("engine")  # with the other engine tests: one Ray cluster at a time


def run(*args, expect: int = 0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """One big .jsonl (no final newline, so it is read in byte ranges) of real records in a seeded
    order: ShareGPT chats, People's Daily paragraphs and reviews as text, with exact copies and near
    copies (one character changed) of earlier records far apart, broken and blank lines and a line
    over the size bound; plus the ShareGPT .json array and a .gz of reviews (read by the runner).
    Returns the inputs and the line numbers of the broken lines of the .jsonl."""
    d = tmp_path_factory.mktemp("engine-clean")
    run("convert", data_dir / "sharegpt_sample.json", "-o", d / "chats.jsonl")
    run("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", d / "pd.jsonl")
    chats = (d / "chats.jsonl").read_text(encoding="utf-8").splitlines()
    news = (d / "pd.jsonl").read_text(encoding="utf-8").splitlines()
    reviews = (data_dir / "reviews_neg_head.txt").read_text(encoding="utf-8").splitlines()
    rng = random.Random(7)
    lines, broken, texts = [], [], []
    for no in range(1, 1201):
        r = rng.random()
        if r < 0.02:
            lines.append('{"text": "cut off')
            broken.append(no)
        elif r < 0.04:
            lines.append("  ")
        elif r < 0.12 and texts:  # an exact copy of an earlier line
            lines.append(rng.choice(texts))
        elif r < 0.22 and texts:  # a near copy: one character of an earlier text changed
            rec = json.loads(rng.choice(texts))
            if "text" in rec and len(rec["text"]) > 60:
                t = rec["text"]
                k = rng.randrange(20, len(t) - 20)
                rec["text"] = t[:k] + ("的" if t[k] != "的" else "了") + t[k + 1:]
            lines.append(json.dumps(rec, ensure_ascii=False))
        else:
            pick = rng.random()
            line = (rng.choice(chats) if pick < 0.15 else rng.choice(news) if pick < 0.65 else
                    json.dumps({"text": rng.choice(reviews), "category": "reviews"}, ensure_ascii=False))
            lines.append(line)
            texts.append(line)
    lines[900] = json.dumps({"text": "长" * 40_000})  # line 901: record_too_large with --max-record-bytes 100K
    big = d / "mixed.jsonl"
    big.write_text("\n".join(lines), encoding="utf-8")
    gz = d / "reviews.txt.gz"
    gz.write_bytes(gzip.compress((data_dir / "reviews_pos_head.txt").read_bytes(), mtime=0))
    return [big, data_dir / "sharegpt_sample.json", gz], broken


COMMON = ["--max-record-bytes", "100K"]


def outputs(out: Path) -> tuple[bytes, bytes, dict]:
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    summary = {k: report[k] for k in ("inputs", "counts", "details", "examples")}
    return (out / "clean.jsonl").read_bytes(), (out / "rejected.jsonl").read_bytes(), summary


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory):
    """One in-process run; every file is one split."""
    out = tmp_path_factory.mktemp("clean-baseline") / "out"
    run("clean", *corpus[0], "-o", out, *COMMON)
    return outputs(out)


def test_baseline_has_every_kind_of_outcome(corpus, baseline):
    kept, rejected, report = baseline
    c = report["counts"]
    assert c["input"] == c["kept"] + sum(c["rejected"].values())
    assert (kept.count(b"\n"), rejected.count(b"\n")) == (c["kept"], c["input"] - c["kept"])
    for reason in ("parse_error", "record_too_large", "exact_duplicate", "near_duplicate"):
        assert c["rejected"].get(reason, 0) > 0, reason
    assert c["rejected"]["parse_error"] == len(corpus[1])
    assert any(r.split(".")[0] in report["details"]["filters"] for r in c["rejected"])  # some filter rejected too


@pytest.mark.parametrize("extra", [["--split-size", "8K"], ["--workers", "2"],
                                   ["--split-size", "8K", "--workers", "2"],
                                   ["--split-size", "8K", "--workers", "2", "--memory", "1K"]],
                         ids=["8K", "2workers", "8K-2workers", "8K-2workers-disk"])
def test_identical_across_workers_and_split_sizes(corpus, baseline, tmp_path, extra):
    inputs, broken = corpus
    run("clean", *inputs, "-o", tmp_path / "out", *COMMON, *extra)
    kept, rejected, report = outputs(tmp_path / "out")
    assert kept == baseline[0]
    assert rejected == baseline[1]
    if "--memory" in extra:  # the disk path says how it ran (runs spilled, budget); everything else is the same
        assert report["details"].pop("dedup")["path"] == "disk"
        base = json.loads(json.dumps(baseline[2]))
        assert base["details"].pop("dedup")["path"] == "memory"
        assert report == base
    else:
        assert report == baseline[2]
    rejects = [json.loads(x) for x in rejected.decode("utf-8").splitlines()]
    in_big = [(r["reason"], r["origin"]["line"]) for r in rejects if r["origin"]["path"] == str(inputs[0])]
    assert [line for reason, line in in_big if reason == "parse_error"] == broken  # the file's own lines
    assert ("record_too_large", 901) in in_big


def test_small_splits_really_split_the_big_file(corpus):
    from corpuskit.engine.splits import plan_splits

    big = str(corpus[0][0])
    splits = plan_splits([big], 8 << 10)
    assert len(splits) >= 50 and all(s.path == big for s in splits)  # lines can be longer than 8K


def test_ray_address_needs_ray_engine(data_dir, tmp_path):
    res = run("clean", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "out", "--ray-address", "auto", expect=1)
    assert "--ray-address needs --engine ray" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


# ---- Ray ------------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_two_node_cluster_gives_identical_output(corpus, baseline, tmp_path, ray_cluster):
    inputs, _ = corpus
    run("clean", *inputs, "-o", tmp_path / "out", *COMMON, "--engine", "ray", "--ray-address", ray_cluster.address,
        "--split-size", "16K")
    assert outputs(tmp_path / "out") == baseline
    assert not ray.is_initialized()  # the command disconnected; the cluster lives on


def comparable(result) -> tuple:
    return (result.split, result.n_lines,
            [([x.to_json() for x in b.items], b.outcomes, None if b.sigs is None else b.sigs.tobytes(),
              None if b.keys is None else b.keys.tobytes()) for b in result.batches])


@pytest.mark.slow
def test_ray_retries_a_clean_task_whose_worker_died(corpus, ray_map_killing_a_worker):
    from corpuskit.clean.config import default_config
    from corpuskit.clean.minhash import MinHashParams
    from corpuskit.clean.steps import CleanSteps, run_clean_task
    from corpuskit.engine.executor import LocalExecutor
    from corpuskit.engine.tasks import record_tasks

    inputs, _ = corpus
    build = CleanSteps(default_config(), minhash=MinHashParams())
    tasks = list(record_tasks([str(p) for p in inputs], build, split_bytes=32_000))
    got = [comparable(r) for r in ray_map_killing_a_worker(run_clean_task, tasks)]
    assert got == [comparable(r) for r in LocalExecutor(1).map(run_clean_task, tasks)]
