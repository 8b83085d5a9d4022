"""Engines and input splits: the same results whatever the engine, worker count or split size.

The Ray tests start their own two-node cluster on this machine (ray.cluster_utils.Cluster) and stop it;
one kills a worker in the middle of a task and still gets identical results (Ray retries the task).
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
from corpuskit.engine.splits import Split, count_lines, plan_splits
from corpuskit.validate.files import SplitCheck, validate_split

pytestmark = pytest.mark.xdist_group("engine")


def run(*args, expect: int = 0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory, data_dir) -> tuple[Path, list[int]]:
    """Real ShareGPT conversations (converted) repeated in a seeded order, with broken lines, blank
    lines and a last line without its newline; returns the file and the broken lines' numbers."""
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


def test_validate_is_identical_across_workers_and_split_sizes(big_jsonl):
    path, bad = big_jsonl
    outs = [run("validate", path, "--format", "json", "--max-errors", 1000, *extra, expect=1).output
            for extra in ([], ["--split-size", "8K"], ["--split-size", "16K", "--workers", 2])]
    assert outs[0] == outs[1] == outs[2]
    result = json.loads(outs[0])
    assert [e["line"] for e in result["errors"]] == bad and result["invalid"] == len(bad)  # exact file lines
    capped = json.loads(run("validate", path, "--format", "json", "--max-errors", 3, "--split-size", "8K",
                            expect=1).output)
    assert [e["line"] for e in capped["errors"]] == bad[:3] and capped["invalid"] == len(bad)


def test_engine_options_are_usage_errors(big_jsonl):
    path, _ = big_jsonl
    res = run("validate", path, "--ray-address", "auto", expect=1)
    assert "--ray-address needs --engine ray" in res.output
    res = run("validate", path, "--split-size", "-3", expect=2)
    assert "--split-size" in res.output


def test_split_size_help_gives_each_commands_own_default():
    """clean caps its splits at 256K (bounded memory while dedup indexes); the help says so, the
    other commands keep the shared default."""
    def default_of(command):
        text = " ".join(run(command, "--help").output.split())
        return text.split("stay exact) [default: ", 1)[1].split("]", 1)[0]

    assert default_of("clean").startswith("256K")
    for command in ("convert", "validate", "render", "bucket", "stats", "train-vocab"):
        assert default_of(command).startswith("64M, or less"), command


# ---- Ray ------------------------------------------------------------------------------------

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_two_node_cluster_gives_identical_results(big_jsonl, ray_cluster):
    path, _ = big_jsonl
    local = run("validate", path, "--split-size", "32K", "--format", "json", expect=1).output
    on_ray = run("validate", path, "--split-size", "32K", "--format", "json", "--engine", "ray",
                 "--ray-address", ray_cluster.address, expect=1).output
    assert on_ray == local
    assert not ray.is_initialized()  # the command disconnected; the cluster lives on


@pytest.mark.slow
def test_ray_retries_a_task_whose_worker_died(big_jsonl, ray_map_killing_a_worker):
    path, _ = big_jsonl
    tasks = [SplitCheck(s, "auto", "utf-8", 50, None, 16 << 20) for s in plan_splits([str(path)], 32_000)]
    got = [(r.to_json(), n) for r, n in ray_map_killing_a_worker(validate_split, tasks)]
    assert got == [(r.to_json(), n) for r, n in LocalExecutor(1).map(validate_split, tasks)]


@pytest.mark.slow
def test_ray_started_by_the_command_is_quiet_and_gives_local_results(big_jsonl, tmp_path):
    """Without --ray-address the command starts its own Ray (never a cluster found running, such as
    this session's two-node fixture) and stops it; stderr carries corpuskit's lines only."""
    import subprocess

    path, _ = big_jsonl
    env = {**os.environ, "RAY_ADDRESS": ""}
    base = [sys.executable, "-m", "corpuskit.cli", "validate", str(path), "--split-size", "32K", "--format", "json"]
    local = subprocess.run(base, capture_output=True, text=True, env=env)
    on_ray = subprocess.run(base + ["--engine", "ray", "--workers", "2"], capture_output=True, text=True, env=env)
    assert local.returncode == on_ray.returncode == 1, on_ray.stderr
    assert on_ray.stdout == local.stdout
    assert on_ray.stderr == local.stderr, on_ray.stderr  # no Ray start-up or token-authentication notices
