"""Engines and input splits: the same output bytes whatever the engine, worker count or split size.

The Ray tests start their own two-node cluster on this machine (ray.cluster_utils.Cluster) and stop it;
one kills a worker in the middle of a task and still gets identical output (Ray retries the task).
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.engine.executor import LocalExecutor
from corpuskit.engine.runner import run_splits
from corpuskit.engine.splits import Split, count_lines, plan_splits
from corpuskit.engine.tasks import RecordTask, run_record_task
from corpuskit.ingest.cli import ConvertSteps
from corpuskit.step import Step, StepOutput

pytestmark = pytest.mark.xdist_group("engine")


def run(*args, expect: int = 0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory, data_dir) -> tuple[Path, list[int]]:
    """Real ShareGPT conversations (converted) repeated in a seeded order, with broken lines, blank
    lines and a line without its newline at the end; returns the file and the broken lines' numbers."""
    d = tmp_path_factory.mktemp("engine-in")
    run("convert", data_dir / "sharegpt_sample.json", "-o", d / "chats.jsonl")
    good = (d / "chats.jsonl").read_text(encoding="utf-8").splitlines()
    rng = random.Random(7)
    lines, bad = [], []
    for no in range(1, 1501):
        r = rng.random()
        if r < 0.03:
            lines.append('{"messages": [truncated')
            bad.append(no)
        elif r < 0.05:
            lines.append("")
        else:
            lines.append(rng.choice(good))
    path = d / "big.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")  # no final newline
    return path, bad


def test_splits_start_at_line_starts_and_cover_the_file(big_jsonl):
    path, _ = big_jsonl
    data = path.read_bytes()
    splits = plan_splits([str(path)], 50_000)
    assert len(splits) > 10 and [s.index for s in splits] == list(range(len(splits)))
    assert splits[0].start == 0 and splits[-1].end is None
    for a, b in zip(splits, splits[1:]):
        assert a.end == b.start and data[b.start - 1:b.start] == b"\n"
    assert sum(count_lines(s) for s in splits) == data.count(b"\n") + 1
    assert plan_splits([str(path)], len(data)) == [Split(str(path))]


def test_convert_is_byte_identical_across_workers_and_split_sizes(big_jsonl, tmp_path):
    path, bad = big_jsonl
    outs = {}
    for name, extra in {"one": [], "w2": ["--workers", 2, "--split-size", "64K"],
                        "tiny": ["--split-size", "4K"]}.items():
        out = tmp_path / f"{name}.jsonl"
        run("convert", path, "-o", out, *extra)
        outs[name] = (out.read_bytes(), (tmp_path / f"{name}.rejected.jsonl").read_bytes())
    assert outs["one"] == outs["w2"] == outs["tiny"]
    rejects = [json.loads(x) for x in outs["tiny"][1].decode().splitlines()]
    assert [r["origin"]["line"] for r in rejects] == bad  # exact file line numbers from every split
    assert len(outs["one"][0].splitlines()) == 1500 - len(bad) - _blank_count(path)


def _blank_count(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").split("\n") if not line.strip())


def test_unknown_engine_options_are_usage_errors(big_jsonl, tmp_path):
    path, _ = big_jsonl
    res = run("convert", path, "-o", tmp_path / "x.jsonl", "--ray-address", "auto", expect=1)
    assert "--ray-address needs --engine ray" in res.output
    res = run("convert", path, "-o", tmp_path / "x.jsonl", "--split-size", "-3", expect=2)
    assert "--split-size" in res.output


# ---- Ray ------------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_ray_two_node_cluster_gives_identical_output(big_jsonl, tmp_path, ray_cluster):
    path, _ = big_jsonl
    run("convert", path, "-o", tmp_path / "local.jsonl", "--split-size", "32K")
    run("convert", path, "-o", tmp_path / "ray.jsonl", "--split-size", "32K", "--engine", "ray",
        "--ray-address", ray_cluster.address)
    for name in ("{}.jsonl", "{}.rejected.jsonl"):
        assert (tmp_path / name.format("ray")).read_bytes() == (tmp_path / name.format("local")).read_bytes()
    assert not ray.is_initialized()  # the command disconnected; the cluster lives on


class DieOnceStep(Step):
    """Kills its worker process the first time it runs (a marker file remembers it across retries)."""

    def __init__(self, marker: str):
        self.marker = marker

    def process(self, batch):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)
        return StepOutput(kept=batch)


@pytest.mark.slow
def test_ray_retries_a_task_whose_worker_died(big_jsonl, tmp_path, ray_cluster):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path, _ = big_jsonl
    marker = tmp_path / "killed"
    splits = plan_splits([str(path)], 32_000)
    victim = splits[len(splits) // 2]
    tasks = [RecordTask(s, KillOnSplit(str(marker), victim.start, s.start)) for s in splits]
    ray.init(address=ray_cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        from corpuskit.engine.executor import RayExecutor

        with RayExecutor() as ex:
            got = [(r.lines, [x.to_json() for x in r.rejected]) for r in run_splits(ex, run_record_task, tasks)]
    finally:
        ray.shutdown()
    assert marker.exists()  # a worker really died mid-task
    want = [(r.lines, [x.to_json() for x in r.rejected])
            for r in run_splits(LocalExecutor(1), run_record_task, [RecordTask(s, ConvertSteps()) for s in splits])]
    assert got == want


class KillOnSplit:
    """A steps factory (picklable, hashable): convert's steps, plus DieOnceStep on the victim split."""

    def __init__(self, marker: str, victim_start: int, split_start: int):
        self.key = (marker, victim_start, split_start)

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, KillOnSplit) and self.key == other.key

    def __call__(self):
        marker, victim_start, split_start = self.key
        return ConvertSteps()() + ([DieOnceStep(marker)] if split_start == victim_start else [])


# ---- sharded outputs ---------------------------------------------------------------------------

def test_shards_hold_the_unsharded_bytes_with_a_manifest_and_read_back(big_jsonl, tmp_path):
    import hashlib

    path, _ = big_jsonl
    run("convert", path, "-o", tmp_path / "flat.jsonl")
    flat = (tmp_path / "flat.jsonl").read_bytes()
    run("convert", path, "-o", tmp_path / "n4", "--shards", 4, "--workers", 2, "--split-size", "64K")
    run("convert", path, "-o", tmp_path / "sz", "--shard-size", "1M")
    for d in ("n4", "sz"):
        m = json.loads((tmp_path / d / "manifest.json").read_text())
        parts = [tmp_path / d / p["file"] for p in m["shards"]]
        assert b"".join(p.read_bytes() for p in parts) == flat
        assert m["records"] == len(flat.splitlines()) == sum(p["records"] for p in m["shards"])
        for p, entry in zip(parts, m["shards"]):
            assert hashlib.sha256(p.read_bytes()).hexdigest() == entry["sha256"]
        assert (tmp_path / d / "rejected.jsonl").read_bytes() == (tmp_path / "flat.rejected.jsonl").read_bytes()
    counts = [p["records"] for p in json.loads((tmp_path / "n4" / "manifest.json").read_text())["shards"]]
    assert len(counts) == 4 and max(counts) - min(counts) <= 1
    assert len(json.loads((tmp_path / "sz" / "manifest.json").read_text())["shards"]) >= 3
    # a downstream command reads the folder as one input, in shard order
    res = run("validate", tmp_path / "n4")
    assert f"{len(flat.splitlines())} records, 0 invalid" in res.output
    run("convert", tmp_path / "n4", "-o", tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == flat
    # a missing shard is an error naming it, never a silently smaller corpus
    (tmp_path / "n4" / "part-00002-of-00004.jsonl").unlink()
    res = run("validate", tmp_path / "n4", expect=1)
    assert "part-00002-of-00004.jsonl listed in manifest.json is missing" in res.output
    res = run("convert", path, "-o", tmp_path / "both", "--shards", 2, "--shard-size", "1M", expect=2)
    assert "not both" in res.output


def test_validate_is_identical_across_workers_and_split_sizes(big_jsonl):
    path, bad = big_jsonl
    outs = [run("validate", path, "--format", "json", "--max-errors", 1000, *extra, expect=1).output
            for extra in ([], ["--split-size", "8K"], ["--split-size", "16K", "--workers", 2])]
    assert outs[0] == outs[1] == outs[2]
    result = json.loads(outs[0])
    assert [e["line"] for e in result["errors"]] == bad and result["invalid"] == len(bad)
    capped = json.loads(run("validate", path, "--format", "json", "--max-errors", 3, "--split-size", "8K",
                            expect=1).output)
    assert [e["line"] for e in capped["errors"]] == bad[:3] and capped["invalid"] == len(bad)
