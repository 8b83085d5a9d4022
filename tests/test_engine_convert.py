"""`corpuskit convert` on the engine, through the CLI on the real samples: the same bytes whatever the
engine, the worker count, the split size or the sharding; sharded outputs (parts + manifest) are
published whole and read back by validate, clean and stats as one corpus.

The Ray tests start their own two-node cluster on this machine (ray.cluster_utils.Cluster) and stop
it; one kills a Ray worker in the middle of a convert task and still gets identical output.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.outputs import MARKER

pytestmark = pytest.mark.xdist_group("engine")  # with test_engine.py: one Ray cluster at a time


def run(*args, expect: int = 0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


def parts_of(folder: Path) -> list[Path]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return [folder / p["file"] for p in manifest["shards"]]


def joined(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in parts_of(folder))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    """Inputs of every kind convert reads: one big .jsonl mixing real ShareGPT records (raw and
    converted), real reviews as text records, broken and blank lines and a line over the size
    bound, in a seeded order, without a final newline (read in byte ranges); the ShareGPT .json
    array and a .gz copy of the reviews (read by the runner); People's Daily .txt. Returns the
    inputs and the line numbers of the broken lines of the .jsonl."""
    d = tmp_path_factory.mktemp("engine-convert")
    raw = json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8"))
    run("convert", data_dir / "sharegpt_sample.json", "-o", d / "chats.jsonl")
    chats = (d / "chats.jsonl").read_text(encoding="utf-8").splitlines()
    reviews = (data_dir / "reviews_neg_head.txt").read_text(encoding="utf-8").splitlines()
    rng = random.Random(11)
    lines, broken = [], []
    for no in range(1, 2401):
        r = rng.random()
        if r < 0.02:
            lines.append('{"text": "cut off')
            broken.append(no)
        elif r < 0.04:
            lines.append("   ")
        elif r < 0.3:
            lines.append(json.dumps(rng.choice(raw), ensure_ascii=False))
        elif r < 0.6:
            lines.append(json.dumps({"text": rng.choice(reviews), "id": f"r{no}"}, ensure_ascii=False))
        else:
            lines.append(rng.choice(chats))
    lines[1500] = json.dumps({"text": "长" * 40_000})  # line 1501: record_too_large with --max-record-bytes 100K
    big = d / "mixed.jsonl"
    big.write_text("\n".join(lines), encoding="utf-8")
    gz = d / "reviews.txt.gz"
    gz.write_bytes(gzip.compress((data_dir / "reviews_pos_head.txt").read_bytes(), mtime=0))
    inputs = [big, data_dir / "sharegpt_sample.json", gz, data_dir / "peoples_daily_199801_head.txt"]
    return inputs, broken


COMMON = ["--max-record-bytes", "100K", "--category", "general"]


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory):
    """One in-process run (default split size: every file is one split)."""
    inputs, _ = corpus
    d = tmp_path_factory.mktemp("baseline")
    run("convert", *inputs, "-o", d / "all.jsonl", "--report", d / "r.json", *COMMON)
    return d


def counts(report: Path) -> dict:
    data = json.loads(report.read_text(encoding="utf-8"))
    return {"counts": data["counts"], "details": data["details"], "examples": data["examples"]}


@pytest.mark.parametrize("extra", [["--split-size", "8K"], ["--split-size", "20K", "--workers", "2"],
                                   ["--workers", "2"]], ids=["8K", "20K-2workers", "2workers"])
def test_identical_across_workers_and_split_sizes(corpus, baseline, tmp_path, extra):
    inputs, broken = corpus
    run("convert", *inputs, "-o", tmp_path / "all.jsonl", "--report", tmp_path / "r.json", *COMMON, *extra)
    for name in ("all.jsonl", "all.rejected.jsonl"):
        assert (tmp_path / name).read_bytes() == (baseline / name).read_bytes(), name
    assert counts(tmp_path / "r.json") == counts(baseline / "r.json")
    rejects = [json.loads(x) for x in (tmp_path / "all.rejected.jsonl").open(encoding="utf-8")]
    in_big = [(r["reason"], r["origin"]["line"]) for r in rejects if r["origin"]["path"] == str(inputs[0])]
    assert [line for reason, line in in_big if reason == "parse_error"] == broken  # the file's own lines
    assert ("record_too_large", 1501) in in_big


def test_auto_split_size_gives_every_worker_work(corpus):
    from corpuskit.engine.splits import DEFAULT_SPLIT_BYTES, MIN_AUTO_SPLIT_BYTES, auto_split_bytes, plan_splits

    files = [str(p) for p in corpus[0]]
    big = os.path.getsize(files[0])
    assert auto_split_bytes(files, 1) == DEFAULT_SPLIT_BYTES and len(plan_splits(files, None, 1)) == len(files)
    size = auto_split_bytes(files, 2)
    assert size == max(MIN_AUTO_SPLIT_BYTES, (big + os.path.getsize(files[3])) // 8)
    assert len([s for s in plan_splits(files, None, 2) if s.path == files[0]]) >= big // size >= 4


def test_baseline_counts_add_up(corpus, baseline):
    report = json.loads((baseline / "r.json").read_text(encoding="utf-8"))
    c = report["counts"]
    assert c["input"] == c["kept"] + sum(c["rejected"].values())
    kept = (baseline / "all.jsonl").read_bytes().count(b"\n")
    rejected = (baseline / "all.rejected.jsonl").read_bytes().count(b"\n")
    assert (kept, rejected) == (c["kept"], c["input"] - c["kept"])
    _, broken = corpus
    assert c["rejected"]["parse_error"] == len(broken) and c["rejected"]["record_too_large"] == 1
    # 67 array records + 300 gz reviews + 400 People's Daily lines + the big file's non-blank lines
    assert c["input"] > 67 + 300 + 400 + 2000
    assert all(json.loads(x)["category"] for x in (baseline / "all.jsonl").open(encoding="utf-8"))


@pytest.mark.parametrize("extra", [["--shards", "3", "--split-size", "16K", "--workers", "2"],
                                   ["--shard-size", "64K", "--split-size", "8K"]], ids=["shards", "shard-size"])
def test_sharded_parts_hold_the_same_bytes_with_a_manifest(corpus, baseline, tmp_path, extra):
    inputs, _ = corpus
    out = tmp_path / "parts"
    res = run("convert", *inputs, "-o", out, *COMMON, *extra)
    assert "parts, " in res.output
    assert joined(out) == (baseline / "all.jsonl").read_bytes()
    assert (out / "rejected.jsonl").read_bytes() == (baseline / "all.rejected.jsonl").read_bytes()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    for part in manifest["shards"]:
        data = (out / part["file"]).read_bytes()
        assert part["sha256"] == hashlib.sha256(data).hexdigest() and part["bytes"] == len(data)
        assert part["records"] == data.count(b"\n") > 0
    sizes = [p["records"] for p in manifest["shards"]]
    if "--shards" in extra:
        assert len(sizes) == 3 and max(sizes) - min(sizes) <= 1
        assert [p["file"] for p in manifest["shards"]] == [f"part-0000{i}-of-00003.jsonl" for i in range(3)]
    else:
        assert len(sizes) > 5 and all(p["bytes"] >= 64 << 10 for p in manifest["shards"][:-1])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["counts"] == json.loads((baseline / "r.json").read_text(encoding="utf-8"))["counts"]
    assert report["details"]["shards"] == len(sizes) and manifest["records"] == report["counts"]["kept"]
    assert json.loads((out / MARKER).read_text(encoding="utf-8"))["command"] == "convert"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("part-")) == [
        MARKER, "manifest.json", "rejected.jsonl", "report.json", "report.md"]


def test_downstream_commands_read_a_sharded_folder_as_one_corpus(data_dir, tmp_path):
    inputs = [data_dir / "sharegpt_sample.json", data_dir / "reviews_pos_head.txt", data_dir / "reviews_neg_head.txt"]
    run("convert", *inputs, "-o", tmp_path / "all.jsonl")
    run("convert", *inputs, "-o", tmp_path / "parts", "--shards", "4", "--workers", "2")
    n = (tmp_path / "all.jsonl").read_bytes().count(b"\n")
    res = run("validate", tmp_path / "parts")
    assert f"validate: OK: 4 files, {n} records, 0 invalid" in res.output
    assert "rejected.jsonl" not in res.output and "manifest" not in res.output
    run("clean", tmp_path / "parts", "-o", tmp_path / "c1")
    run("clean", tmp_path / "all.jsonl", "-o", tmp_path / "c2")
    for name in ("clean.jsonl", "rejected.jsonl"):
        a, b = ((tmp_path / c / name).read_text(encoding="utf-8") for c in ("c1", "c2"))
        if name == "rejected.jsonl":  # the same rejects, named by part instead of by file
            a, b = ([(r["reason"], r["record"]) for r in map(json.loads, t.splitlines())] for t in (a, b))
        assert a == b and a, name
    c1 = json.loads((tmp_path / "c1" / "report.json").read_text(encoding="utf-8"))
    assert c1["counts"]["input"] == n and len(c1["inputs"]) == 4
    run("stats", tmp_path / "parts", "--json", tmp_path / "s1.json")
    run("stats", tmp_path / "all.jsonl", "--json", tmp_path / "s2.json")
    s1, s2 = (json.loads((tmp_path / f"s{i}.json").read_text(encoding="utf-8")) for i in (1, 2))
    assert s1["total"] == s2["total"] and s1["categories"] == s2["categories"]
    assert s1["report"]["counts"]["input"] == n


def test_more_shards_than_records_and_an_empty_output(data_dir, tmp_path):
    run("convert", data_dir / "sharegpt_truncated_tail.json", "-o", tmp_path / "few", "--shards", "50")
    assert [p.name for p in parts_of(tmp_path / "few")] == ["part-00000-of-00002.jsonl", "part-00001-of-00002.jsonl"]
    run("convert", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "none", "--to", "sft", "--shards", "4")
    manifest = json.loads((tmp_path / "none" / "manifest.json").read_text(encoding="utf-8"))
    assert [(p["file"], p["records"], p["bytes"]) for p in manifest["shards"]] == [("part-00000-of-00001.jsonl", 0, 0)]
    assert (tmp_path / "none" / "rejected.jsonl").read_bytes().count(b"\n") == 300


def test_sharded_folder_is_replaced_whole_and_only_if_ours(data_dir, tmp_path):
    out = tmp_path / "parts"
    run("convert", data_dir / "reviews_pos_head.txt", "-o", out, "--shards", "5")
    run("convert", data_dir / "reviews_neg_head.txt", "-o", out, "--shards", "2")
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000-of-00002.jsonl", "part-00001-of-00002.jsonl"]
    assert joined(out).count(b"\n") == 300 and "差" in joined(out).decode("utf-8")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or old folder left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    res = run("convert", data_dir / "reviews_pos_head.txt", "-o", mine, "--shards", "2", expect=1)
    assert "not written by corpuskit" in res.output and (mine / "notes.txt").exists()
    res = run("convert", out, "-o", out / "again", "--shards", "2", expect=1)  # an output inside its input
    assert "Traceback" not in res.output


def test_sharded_write_killed_before_publishing_leaves_the_old_folder(data_dir, tmp_path):
    out = tmp_path / "parts"
    run("convert", data_dir / "reviews_pos_head.txt", "-o", out, "--shards", "3")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name.startswith("part-")}
    env = {**os.environ, "CORPUSKIT_FAULT": "dir-built"}
    proc = subprocess.run([sys.executable, "-m", "corpuskit.cli", "convert", str(data_dir / "sharegpt_sample.json"),
                           "-o", str(out), "--shards", "2", "--workers", "2"], env=env, capture_output=True)
    assert proc.returncode == -9
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name.startswith("part-")} == before
    run("validate", out)  # still the old complete folder
    run("convert", data_dir / "sharegpt_sample.json", "-o", out, "--shards", "2")
    assert len(parts_of(out)) == 2 and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_incomplete_sharded_folder_is_one_line_error(data_dir, tmp_path):
    out = tmp_path / "parts"
    run("convert", data_dir / "reviews_pos_head.txt", "-o", out, "--shards", "3")
    (out / "part-00001-of-00003.jsonl").unlink()
    res = run("validate", out, expect=1)
    assert f"{out / 'part-00001-of-00003.jsonl'}: listed in manifest.json but missing" in res.output
    res = run("clean", out, "-o", tmp_path / "c", expect=1)
    assert "listed in manifest.json but missing" in res.output and "Traceback" not in res.output


def test_usage_errors(data_dir, tmp_path):
    src = data_dir / "reviews_pos_head.txt"
    cases = [
        (["-o", tmp_path / "p", "--shards", "2", "--shard-size", "1M"], "give --shards or --shard-size, not both"),
        (["-o", tmp_path / "p", "--shards", "2", "--rejects", tmp_path / "r.jsonl"], "OUTPUT/rejected.jsonl"),
        (["-o", tmp_path / "p", "--shard-size", "1M", "--report", tmp_path / "r.json"], "OUTPUT/report.json"),
        (["-o", tmp_path / "p.jsonl", "--shards", "2"], "name it without .jsonl"),
        (["-o", tmp_path / "p"], "name it *.jsonl (or give --shards N"),
        (["-o", tmp_path / "p.jsonl", "--shards", "0"], "--shards"),
        (["-o", tmp_path / "p.jsonl", "--split-size", "0"], "--split-size"),
    ]
    for args, message in cases:
        res = run("convert", src, *args, expect=2)
        assert message in res.output, res.output
    res = run("convert", src, "-o", tmp_path / "p.jsonl", "--ray-address", "auto", expect=1)
    assert "--ray-address needs --engine ray" in res.output
    assert not list(tmp_path.iterdir())


# ---- Ray ------------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_two_node_cluster_gives_identical_output(corpus, baseline, tmp_path, ray_cluster):
    inputs, _ = corpus
    ray_args = ["--engine", "ray", "--ray-address", ray_cluster.address, "--split-size", "32K"]
    run("convert", *inputs, "-o", tmp_path / "all.jsonl", "--report", tmp_path / "r.json", *COMMON, *ray_args)
    for name in ("all.jsonl", "all.rejected.jsonl"):
        assert (tmp_path / name).read_bytes() == (baseline / name).read_bytes(), name
    assert counts(tmp_path / "r.json") == counts(baseline / "r.json")
    run("convert", *inputs, "-o", tmp_path / "parts", "--shards", "3", *COMMON, *ray_args)
    assert joined(tmp_path / "parts") == (baseline / "all.jsonl").read_bytes()
    assert not ray.is_initialized()  # the command disconnected; the cluster lives on


@pytest.mark.slow
def test_ray_retries_a_convert_task_whose_worker_died(corpus, ray_map_killing_a_worker):
    from corpuskit.engine.executor import LocalExecutor
    from corpuskit.engine.tasks import record_tasks, run_record_task
    from corpuskit.ingest.cli import ConvertSteps

    inputs, _ = corpus
    tasks = list(record_tasks([str(p) for p in inputs], ConvertSteps(category="general"), split_bytes=32_000))

    def comparable(r):
        return r.data, r.kept, [x.to_json() for x in r.rejected], r.n_lines

    got = [comparable(r) for r in ray_map_killing_a_worker(run_record_task, tasks)]
    assert got == [comparable(r) for r in LocalExecutor(1).map(run_record_task, tasks)]


# ---- fsspec URLs ----------------------------------------------------------------------------
# memory:// lives in this process only, so those runs go through CliRunner in-process (local engine).


@pytest.fixture
def mem():
    """A fresh memory:// root, removed afterwards: (fsspec file system, root URL)."""
    import uuid

    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"memory://ck-{uuid.uuid4().hex[:8]}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def put(fs, url: str, data: bytes) -> str:
    with fs.open(url, "wb") as fh:
        fh.write(data)
    return url


def without_paths(rejects: bytes) -> list:
    """Rejects with the file path left out of the origin (local and URL runs name files differently)."""
    out = []
    for line in rejects.decode("utf-8").splitlines():
        r = json.loads(line)
        r["origin"] = r["origin"]["line"]
        out.append(r)
    return out


def test_memory_urls_in_and_out_give_the_same_bytes(corpus, baseline, mem, tmp_path):
    fs, root = mem
    inputs, broken = corpus
    urls = [put(fs, f"{root}/in/{p.name}", p.read_bytes()) for p in inputs]
    run("convert", f"{root}/in", "-o", f"{root}/out/all.jsonl", "--report", f"{root}/out/r.json", *COMMON,
        "--split-size", "16K")  # a folder URL: its files in name order, the big .jsonl in byte ranges
    run("convert", *sorted(inputs, key=lambda p: p.name), "-o", tmp_path / "all.jsonl", *COMMON)
    assert fs.cat(f"{root}/out/all.jsonl") == (tmp_path / "all.jsonl").read_bytes()
    rejects = fs.cat(f"{root}/out/all.rejected.jsonl")
    assert without_paths(rejects) == without_paths((tmp_path / "all.rejected.jsonl").read_bytes())
    lines = [r["origin"]["line"] for r in map(json.loads, rejects.decode("utf-8").splitlines())
             if r["origin"]["path"] == f"{root}/in/mixed.jsonl" and r["reason"] == "parse_error"]
    assert lines == broken
    report = json.loads(fs.cat(f"{root}/out/r.json"))
    assert report["inputs"][0].startswith(f"{root}/in/") and report["counts"] == counts(baseline / "r.json")["counts"]
    assert sorted(fs.ls(f"{root}/out", detail=False)) == [f"/{root[9:]}/out/{n}" for n in
                                                         ("all.jsonl", "all.rejected.jsonl", "r.json")]  # no temps


def test_memory_sharded_folder_is_read_back_by_validate_and_clean(data_dir, mem, tmp_path):
    fs, root = mem
    src = put(fs, f"{root}/reviews.txt", (data_dir / "reviews_pos_head.txt").read_bytes())
    run("convert", src, "-o", f"{root}/parts", "--shards", "3")
    names = sorted(n.rsplit("/", 1)[-1] for n in fs.ls(f"{root}/parts", detail=False))
    assert names == [MARKER, "manifest.json", "part-00000-of-00003.jsonl", "part-00001-of-00003.jsonl",
                     "part-00002-of-00003.jsonl", "rejected.jsonl", "report.json", "report.md"]
    res = run("validate", f"{root}/parts")
    assert "validate: OK: 3 files, 300 records, 0 invalid" in res.output
    run("clean", f"{root}/parts", "-o", tmp_path / "c1")
    run("convert", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "r.jsonl")
    run("clean", tmp_path / "r.jsonl", "-o", tmp_path / "c2")
    assert (tmp_path / "c1" / "clean.jsonl").read_bytes() == (tmp_path / "c2" / "clean.jsonl").read_bytes()
    # a URL folder is never replaced (no atomic swap there), and an unfinished one is not read
    res = run("convert", src, "-o", f"{root}/parts", "--shards", "2", expect=1)
    assert "already exists; an output folder at a URL must be new" in res.output
    fs.rm(f"{root}/parts/{MARKER}")
    res = run("validate", f"{root}/parts", expect=1)
    assert "sharded output without its .corpuskit-output.json marker: unfinished" in res.output
    res = run("convert", src, "-o", f"{root}/in-place/x.jsonl", "--rejects", tmp_path / "r.rejected.jsonl", expect=2)
    assert "all as URLs or all as local paths" in res.output
    res = run("convert", src, "-o", f"{root}/reviews.txt.jsonl", "--rejects", src, expect=1)
    assert "overlaps input" in res.output


def test_file_urls_are_local_paths_with_every_local_check(data_dir, tmp_path):
    src = tmp_path / "chats.json"
    src.write_bytes((data_dir / "sharegpt_sample.json").read_bytes())
    run("convert", f"file://{src}", "-o", f"file://{tmp_path}/a.jsonl", "--report", f"file://{tmp_path}/a.json")
    run("convert", src, "-o", tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["inputs"] == [str(src)]
    run("convert", f"file://{tmp_path}/b.jsonl", "-o", f"file://{tmp_path}/parts", "--shards", "2")
    assert json.loads((tmp_path / "parts" / MARKER).read_text(encoding="utf-8"))["command"] == "convert"
    assert "2 files, 45 records, 0 invalid" in run("validate", f"file://{tmp_path}/parts").output
    res = run("convert", src, "-o", f"file://{tmp_path}/x.jsonl", "--rejects", f"file://{src}", expect=1)
    assert "writing it would replace the input" in res.output
    res = run("clean", tmp_path / "b.jsonl", "-o", "memory://somewhere/clean", expect=1)
    assert "this command writes local paths only" in res.output



# ---- one library error base, caught once by the CLI ------------------------------------------


def test_library_errors_share_one_base_and_read_as_one_line(data_dir, tmp_path):
    from corpuskit.engine.executor import EngineError
    from corpuskit.errors import CorpusError
    from corpuskit.ingest import InputError
    from corpuskit.outputs import OutputError
    from corpuskit.pack.packer import PackError
    from corpuskit.render.templates import TemplateError
    from corpuskit.render.tokenizer_dir import TokenizerDirError

    for cls in (InputError, OutputError, EngineError, PackError, TemplateError, TokenizerDirError):
        assert issubclass(cls, CorpusError), cls
    (tmp_path / "not-rendered").mkdir()
    (tmp_path / "not-a-tokenizer").mkdir()
    chats = tmp_path / "chats.jsonl"
    run("convert", data_dir / "sharegpt_sample.json", "-o", chats)
    cases = [
        (["pack", tmp_path / "not-rendered", "-o", tmp_path / "p"], "no manifest.json; pack reads the output"),
        (["render", chats, "--tokenizer", tmp_path / "not-a-tokenizer", "-o", tmp_path / "r"], "no tokenizer.json"),
        (["convert", tmp_path / "missing.jsonl", "-o", tmp_path / "x.jsonl"], "missing.jsonl: no such file"),
        (["convert", chats, "-o", tmp_path / "x.jsonl", "--ray-address", "auto"], "--ray-address needs --engine ray"),
    ]
    for args, message in cases:
        res = run(*args, expect=1)
        assert res.output.startswith("Error: ") and message in res.output and "Traceback" not in res.output, res.output
