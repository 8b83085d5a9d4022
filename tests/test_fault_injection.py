"""kill -9 every command at named points of publishing its outputs and at timed moments mid-work.

Each case runs a real `corpuskit` subprocess on the real samples (all of tests/data, ~1,100 records)
into an output that already holds an older complete output, SIGKILLs it (at a `corpuskit.faults`
point, or after a delay), and checks that a reader then finds the old complete output or the new
complete output — never a partial or mixed one. Then it runs the same command again and checks
the output is byte for byte that of a clean run, and that nothing hidden is left beside or inside
it (nor in TMPDIR).

"A reader" of a set of files (convert's data + rejects + report, stats --json + --plot, a template
exported in place) is what corpuskit's readers do: `outputs.settle` first. The raw files are
checked too: they are already consistent at every point but the one between two renames.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.outputs import MARKER, settle

CORPUSKIT = [sys.executable, "-m", "corpuskit.cli"]
SET_POINTS = ["file-written", "set-journaling", "set-journaled", "set-renaming", "set-renamed"]
DIR_POINTS = ["dir-built", "dir-swapped"]
# fractions of the clean run's wall time; used where the work, not the imports, is most of the run
TIMED = ["timed:0.5", "timed:0.9"]


def cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output + repr(res.exception)


@pytest.fixture(scope="module")
def work(tmp_path_factory, data_dir, llama2_model, llama2_tokenizer_dir):
    """Inputs every case reads: the real samples, canonical chats and texts, a vocabulary, a chat
    tokenizer folder and a render output."""
    w = tmp_path_factory.mktemp("faults")
    corpus = w / "corpus"
    corpus.mkdir()
    for name in ("sharegpt_sample.json", "reviews_pos_head.txt", "reviews_neg_head.txt"):
        shutil.copy(data_dir / name, corpus / name)
    cli("convert", data_dir / "sharegpt_sample.json", "-o", w / "chats.jsonl", "--to", "sft")
    cli("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", w / "news.jsonl")
    cli("convert", data_dir / "reviews_pos_head.txt", "-o", w / "reviews.jsonl")
    cli("train-vocab", data_dir / "peoples_daily_199801_head.txt", data_dir / "reviews_pos_head.txt",
        "-o", w / "zh", "--vocab-size", 3500)
    shutil.copytree(llama2_tokenizer_dir, w / "hf")
    cli("template", "export", "llama2", "--tokenizer", w / "hf", "-o", w / "tok")
    cli("render", w / "chats.jsonl", "--tokenizer", w / "tok", "-o", w / "rendered")
    return w


@dataclass
class Case:
    new: list  # argv after `corpuskit`, with W = the work folder and O = the output folder
    old: list | None  # argv that writes the older output; None: the older state is `initial`
    points: list
    initial: str | None = None  # a work folder copied to O/<basename> before anything runs (in-place edits)
    readers: list = field(default_factory=list)  # set outputs a reader settles before reading (O-relative)
    env: str = ""  # extra CORPUSKIT_FAULT flags


CASES = {
    "convert": Case(["convert", "W/corpus", "-o", "O/all.jsonl", "--report", "O/all.report.json"],
                    ["convert", "W/corpus/sharegpt_sample.json", "-o", "O/all.jsonl", "--report", "O/all.report.json"],
                    SET_POINTS + ["set-renaming@2"] + TIMED, readers=["all.jsonl"]),
    "stats": Case(["stats", "W/chats.jsonl", "W/news.jsonl", "--json", "O/s.json", "--plot", "O/s.png"],
                  ["stats", "W/news.jsonl", "--json", "O/s.json", "--plot", "O/s.png"],
                  ["set-journaling", "set-renaming", "timed:0.7"], readers=["s.json"]),
    "template-export-in-place": Case(["template", "export", "chatml", "--tokenizer", "O/hf"], None,
                                     ["set-journaling", "set-renaming", "set-renamed"], initial="hf",
                                     readers=["hf/tokenizer.json"]),
    "clean": Case(["clean", "W/news.jsonl", "W/reviews.jsonl", "-o", "O/c", "--workers", "2"],
                  ["clean", "W/news.jsonl", "W/reviews.jsonl", "-o", "O/c", "--dedup", "none"], DIR_POINTS + TIMED),
    "bucket": Case(["bucket", "W/chats.jsonl", "W/news.jsonl", "W/reviews.jsonl", "-o", "O/b", "-n", "4",
                    "--workers", "2", "--category-by-file", "--weights", "news=1.5"],
                   ["bucket", "W/chats.jsonl", "W/news.jsonl", "W/reviews.jsonl", "-o", "O/b", "-n", "4",
                    "--workers", "2", "--category-by-file", "--seed", "7"], DIR_POINTS + TIMED),
    "train-vocab": Case(["train-vocab", "W/news.jsonl", "W/reviews.jsonl", "-o", "O/v", "--vocab-size", "3300"],
                        ["train-vocab", "W/news.jsonl", "W/reviews.jsonl", "-o", "O/v", "--vocab-size", "3600"],
                        DIR_POINTS),
    "train-vocab-two-renames": Case(["train-vocab", "W/news.jsonl", "-o", "O/v", "--vocab-size", "3000"],
                                    ["train-vocab", "W/news.jsonl", "-o", "O/v", "--vocab-size", "3200"],
                                    ["dir-swapping", "dir-swapped"], env="no-rename-exchange"),
    "merge-vocab": Case(["merge-vocab", "--base", "LLAMA2", "--add", "W/zh/tokenizer.model", "-o", "O/m"],
                        ["merge-vocab", "--base", "LLAMA2", "--add", "W/zh/tokenizer.model", "-o", "O/m",
                         "--only", "all"], DIR_POINTS),
    "template-export": Case(["template", "export", "chatml", "--tokenizer", "W/hf", "-o", "O/t"],
                            ["template", "export", "llama2-chinese", "--tokenizer", "W/hf", "-o", "O/t"],
                            DIR_POINTS),
    "render": Case(["render", "W/chats.jsonl", "--tokenizer", "W/tok", "-o", "O/r"],
                   ["render", "W/chats.jsonl", "--tokenizer", "W/tok", "-o", "O/r", "--max-length", "512"],
                   DIR_POINTS),
    "pack": Case(["pack", "W/rendered", "-o", "O/p", "--seq-len", "4096"],
                 ["pack", "W/rendered", "-o", "O/p", "--seq-len", "4096", "--strategy", "greedy"],
                 DIR_POINTS),
}
# one xdist group per case: its two baseline runs are made once, on one worker
PARAMS = [pytest.param(name, p, id=f"{name}-{p}", marks=pytest.mark.xdist_group(f"faults-{name}"))
          for name, case in CASES.items() for p in case.points]


def _argv(args, w: Path, o: Path, llama2: Path) -> list[str]:
    out = []
    for a in args:
        if a == "LLAMA2":
            a = str(llama2)
        elif a.startswith("W/"):
            a = str(w / a[2:])
        elif a.startswith("O/"):
            a = str(o / a[2:])
        out.append(a)
    return out


def _env(tmpdir: Path, fault: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CORPUSKIT_FAULT"}
    env["TMPDIR"] = str(tmpdir)
    if fault:
        env["CORPUSKIT_FAULT"] = fault
    return env


def _normalize(path: Path) -> bytes:
    """Bytes of an output file; timings (which differ run to run) are left out of reports."""
    data = path.read_bytes()
    if path.suffix == ".json":
        def drop(v):
            if isinstance(v, dict):
                return {k: drop(x) for k, x in v.items() if k != "timings"}
            return [drop(x) for x in v] if isinstance(v, list) else v
        return json.dumps(drop(json.loads(data)), sort_keys=True).encode()
    if path.name.endswith("report.md"):
        return data.split(b"## Timings")[0]
    return data


def snapshot(o: Path) -> dict[str, bytes]:
    """What the outputs under O hold: every file except hidden leftovers (the marker is output)."""
    return {str(p.relative_to(o)): _normalize(p) for p in sorted(o.rglob("*"))
            if p.is_file() and not any(part.startswith(".") and part != MARKER for part in p.relative_to(o).parts)}


def leftovers(o: Path, tmpdir: Path) -> list[str]:
    hidden = [str(p.relative_to(o)) for p in o.rglob(".*") if p.name != MARKER]
    return hidden + [f"TMPDIR/{p.name}" for p in tmpdir.iterdir()]


class Runner:
    def __init__(self, case: Case, w: Path, o: Path, llama2: Path, tmpdir: Path):
        self.case, self.w, self.o, self.llama2, self.tmpdir = case, w, o, llama2, tmpdir

    def run(self, args, fault: str | None = None, kill_after: float | None = None) -> tuple[int, float]:
        fault = ",".join(x for x in (self.case.env, fault) if x) or None
        t0 = time.perf_counter()
        proc = subprocess.Popen(CORPUSKIT + _argv(args, self.w, self.o, self.llama2), env=_env(self.tmpdir, fault),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
        self.stderr = err.decode(errors="replace")
        return proc.returncode, time.perf_counter() - t0

    def ok(self, args) -> float:
        rc, seconds = self.run(args)
        assert rc == 0, self.stderr
        return seconds

    def reset(self, saved: Path | None) -> None:
        shutil.rmtree(self.o, ignore_errors=True)
        if saved is not None:
            shutil.copytree(saved, self.o, symlinks=True)
        else:
            self.o.mkdir()
            if self.case.initial:
                shutil.copytree(self.w / self.case.initial, self.o / self.case.initial)


_BASELINES: dict[str, tuple[Path, dict, dict, float]] = {}


def baseline(name: str, r: Runner, store: Path) -> tuple[Path, dict, dict, float]:
    """(saved old state, old snapshot, new snapshot, clean run seconds), once per case and process."""
    if name not in _BASELINES:
        r.reset(None)
        if r.case.old is not None:
            r.ok(r.case.old)
        saved = store / f"old-{name}"
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copytree(r.o, saved, symlinks=True)
        old = snapshot(r.o)
        seconds = r.ok(r.case.new)
        new = snapshot(r.o)
        assert new != old, "the old and new runs of a case must write different outputs"
        assert not leftovers(r.o, r.tmpdir), leftovers(r.o, r.tmpdir)
        _BASELINES[name] = (saved, old, new, seconds)
    return _BASELINES[name]


@pytest.mark.parametrize("name,point", PARAMS)
def test_kill_leaves_old_or_new_and_rerun_is_clean(name, point, work, llama2_model, tmp_path_factory):
    case = CASES[name]
    store = tmp_path_factory.getbasetemp() / "fault-baselines"
    store.mkdir(exist_ok=True)
    o = tmp_path_factory.mktemp(f"o-{name}")
    tmpdir = tmp_path_factory.mktemp("tmpdir")
    r = Runner(case, work, o, llama2_model, tmpdir)
    saved, old, new, seconds = baseline(name, r, store)

    r.reset(saved)
    if point.startswith("timed:"):
        rc, _ = r.run(case.new, kill_after=seconds * float(point.split(":")[1]))
        assert rc in (0, -signal.SIGKILL)
    else:
        rc, _ = r.run(case.new, fault=point)
        assert rc == -signal.SIGKILL, f"fault point {point} was never reached"

    raw = snapshot(o)
    for target in case.readers:
        settle(o / target)  # what every corpuskit reader does before it reads
    seen = snapshot(o)
    allowed = [old, new]
    if point == "dir-swapping":  # two-rename fallback cut between its renames: no folder until the next run
        allowed.append({})
    assert seen in allowed, f"after kill at {point}: {sorted(seen)} is neither the old nor the new output"
    if point != "set-renaming" and not point.startswith("set-renaming@"):
        assert raw in allowed, f"after kill at {point} the files on disk are mixed before any reader settles them"
    if point in ("set-journaled", "set-renaming", "set-renaming@2", "set-renamed"):
        assert seen == new  # past the commit point: the commit is finished, not undone

    r.ok(case.new)  # ... and the next run puts things right
    assert snapshot(o) == new
    assert leftovers(o, tmpdir) == []
