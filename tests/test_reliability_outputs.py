"""Output safety for every command: only folders corpuskit marked are replaced, no output may be,
hold or lie inside an input, a set of files is published as a set, and what killed runs left is
cleaned up by the next run without ever failing it. (SIGKILL tests: test_fault_injection.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.outputs import MARKER, journal_path, marker_json, sweep
from corpuskit.overlap import _glob_reaches

ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = ROOT / "trainers" / "configs" / "tiny_llama.json"


def run(*args, ok=True, prog=main):
    res = CliRunner().invoke(prog, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    else:
        assert res.exit_code == 1, res.output + repr(res.exception)
        assert "Traceback" not in res.output and isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def trainers(*args, ok=False):
    from trainers.cli import main as trainers_main

    return run(*args, ok=ok, prog=trainers_main)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, data_dir, llama2_tokenizer_dir):
    """Real inputs: canonical chats and news, a clean output folder, a chat tokenizer, a render output."""
    w = tmp_path_factory.mktemp("reliability")
    run("convert", data_dir / "sharegpt_sample.json", "-o", w / "chats.jsonl", "--to", "sft")
    run("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", w / "news.jsonl")
    (w / "data").mkdir()
    shutil.copy(w / "news.jsonl", w / "data" / "news.jsonl")
    run("clean", w / "news.jsonl", "-o", w / "c", "--dedup", "exact")
    run("template", "export", "llama2", "--tokenizer", llama2_tokenizer_dir, "-o", w / "tok")
    few = w / "few.jsonl"
    few.write_text("".join((w / "chats.jsonl").read_text(encoding="utf-8").splitlines(True)[:5]), encoding="utf-8")
    run("render", few, "--tokenizer", w / "tok", "-o", w / "r")
    return w


# ------------------------------------------------------------------------------------ ownership

def _folder_commands(w: Path, llama2_model: Path, out: Path) -> dict[str, list]:
    return {
        "clean": ["clean", w / "news.jsonl", "-o", out],
        "bucket": ["bucket", w / "news.jsonl", "-o", out, "-n", 2],
        "train-vocab": ["train-vocab", w / "news.jsonl", "-o", out, "--vocab-size", 3000],
        "merge-vocab": ["merge-vocab", "--base", llama2_model, "--add", w / "chats.jsonl", "-o", out],
        "render": ["render", w / "few.jsonl", "--tokenizer", w / "tok", "-o", out],
        "template export": ["template", "export", "chatml", "--tokenizer", w / "tok", "-o", out],
        "pack": ["pack", w / "r", "-o", out],
    }


FOLDER_COMMANDS = ["clean", "bucket", "train-vocab", "merge-vocab", "render", "template export", "pack"]


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_a_users_folder_with_a_report_json_is_never_replaced(command, ws, llama2_model, tmp_path):
    """The issue's `echo '{}' > proj/report.json; corpuskit clean ... -o proj` deleted thesis.tex."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "thesis.tex").write_text("x\n")
    (proj / "report.json").write_text("{}\n")
    res = run(*_folder_commands(ws, llama2_model, proj)[command], ok=False)
    assert "not written by corpuskit" in res.output
    assert (proj / "thesis.tex").read_text() == "x\n" and sorted(os.listdir(tmp_path)) == ["proj"]


def test_a_folder_from_before_markers_is_refused_with_a_hint(ws, tmp_path):
    old = tmp_path / "old-clean"
    old.mkdir()
    (old / "clean.jsonl").write_text((ws / "news.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    (old / "report.json").write_text('{"command": "clean", "version": "0.0.9", "counts": {"input": 1}}')
    res = run("clean", ws / "news.jsonl", "-o", old, ok=False)
    assert "older corpuskit" in res.output and "delete it yourself" in res.output
    from corpuskit.ingest import expand_inputs

    assert expand_inputs([old]) == [str(old / "clean.jsonl")]  # still read as a stage folder


def test_trainers_merge_lora_refuses_a_users_folder(ws, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    res = trainers("merge-lora", "--adapter", ws / "tok", "--base", ws / "r", "-o", tmp_path / "mine")
    assert "not written by corpuskit" in res.output and (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_marker_names_the_command_and_a_rerun_replaces_the_folder(ws, tmp_path):
    out = tmp_path / "b"
    run("bucket", ws / "news.jsonl", "-o", out, "-n", 2)
    assert json.loads((out / MARKER).read_text()) == marker_json("bucket")
    (out / "report.json").unlink()  # the marker alone is the proof: report.json is not needed ...
    run("bucket", ws / "news.jsonl", "-o", out, "-n", 3, "--seed", 5)
    assert sorted(p.name for p in out.glob("bucket-*")) == [f"bucket-0000{i}.jsonl" for i in range(3)]
    (out / "report.json").unlink()  # ... also for reading a stage folder back as input
    from corpuskit.ingest import expand_inputs

    assert expand_inputs([out]) == [str(out / f"bucket-0000{i}.jsonl") for i in range(3)]


# -------------------------------------------------------------------------------------- overlaps

def _overlaps(w: Path, llama2_model: Path, t: Path) -> dict[str, tuple[list, str]]:
    """id -> (argv, what the one-line error says)."""
    news, chats, c, tok, r = w / "news.jsonl", w / "chats.jsonl", w / "c", w / "tok", w / "r"
    return {
        "convert --rejects is -o": (["convert", news, "-o", t / "x.jsonl", "--rejects", t / "x.jsonl"], "same path"),
        "convert --report is -o": (["convert", news, "-o", t / "q.jsonl", "--report", t / "q.jsonl"], "same path"),
        "convert -o is the input": (["convert", news, "-o", news], "itself"),
        "convert --report is the input": (["convert", chats, "-o", t / "o.jsonl", "--report", chats], "itself"),
        "convert -o inside an input folder": (["convert", w / "data", "-o", w / "data" / "all.jsonl"], "lies inside"),
        "convert -o matches an input glob": (["convert", f"{w}/data/*.jsonl", "-o", w / "data" / "all.jsonl"],
                                             "matches"),
        "convert -o is a symlink to the input": (["convert", news, "-o", t / "link.jsonl"], "itself"),
        "convert -o is a hard link of the input": (["convert", news, "-o", t / "hard.jsonl"], "itself"),
        "clean -o is its input folder": (["clean", c, "-o", c], "itself"),
        "clean -o holds an input": (["clean", c / "clean.jsonl", "-o", c], "holds"),
        "clean -o holds --filters": (["clean", news, "-o", c, "--filters", c / "f.yaml"], "holds --filters"),
        "clean -o inside an input folder": (["clean", w / "data", "-o", w / "data" / "out"], "lies inside"),
        "clean -o could hold glob matches": (["clean", f"{w}/data/**/*.jsonl", "-o", w / "data" / "sub"],
                                             "could hold files matched by"),
        "bucket -o is its stage-folder input": (["bucket", c, "-o", c, "-n", 2], "itself"),
        "bucket -o holds --weights": (["bucket", news, "-o", c, "-n", 2, "--weights", c / "w.json"],
                                      "holds --weights"),
        "stats --json is an input": (["stats", news, "--json", news], "itself"),
        "stats --json is --plot": (["stats", news, "--json", t / "s", "--plot", t / "s"], "same path"),
        "stats --plot inside --tokenizer": (["stats", news, "--tokenizer", tok, "--plot", tok / "p.png"],
                                            "lies inside --tokenizer"),
        "train-vocab -o is its input": (["train-vocab", c, "-o", c, "--vocab-size", 3000], "itself"),
        "merge-vocab -o holds --add": (["merge-vocab", "--base", llama2_model, "--add", c / "clean.jsonl", "-o", c],
                                       "holds --add"),
        "render -o is --tokenizer": (["render", chats, "--tokenizer", tok, "-o", tok], "itself"),
        "render -o inside --tokenizer": (["render", chats, "--tokenizer", tok, "-o", tok / "rendered"],
                                         "lies inside --tokenizer"),
        "render -o is its input": (["render", c, "--tokenizer", tok, "-o", c, "--mode", "pretrain"], "itself"),
        "template export -o is --tokenizer": (["template", "export", "chatml", "--tokenizer", tok, "-o", tok],
                                              "leave out -o"),
        "template export -o inside --tokenizer": (["template", "export", "chatml", "--tokenizer", tok,
                                                   "-o", tok / "copy"], "lies inside --tokenizer"),
        "pack -o is its input": (["pack", r, "-o", r], "replace the input"),
        "pack -o inside its input": (["pack", r, "-o", r / "packed"], "lies inside"),
    }


OVERLAPS = list(_overlaps(Path("w"), Path("m"), Path("t")))


@pytest.mark.parametrize("case", OVERLAPS)
def test_an_output_that_is_holds_or_lies_in_an_input_is_refused_up_front(case, ws, llama2_model, tmp_path):
    (tmp_path / "link.jsonl").symlink_to(ws / "news.jsonl")
    os.link(ws / "news.jsonl", tmp_path / "hard.jsonl")
    (tmp_path / "d.jsonl").mkdir()
    (ws / "c" / "f.yaml").write_text("filters: {}\n")
    (ws / "c" / "w.json").write_text('{"default": 2}\n')
    before = tree_digest(ws)
    argv, says = _overlaps(ws, llama2_model, tmp_path)[case]
    res = run(*argv, ok=False)
    assert says in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert tree_digest(ws) == before  # nothing read was changed
    assert sorted(os.listdir(tmp_path)) == ["d.jsonl", "hard.jsonl", "link.jsonl"]  # nothing was written
    (ws / "c" / "f.yaml").unlink()
    (ws / "c" / "w.json").unlink()


@pytest.mark.parametrize("where", ["--data", "--tokenizer", "--model"])
def test_trainers_output_may_not_overlap_its_inputs(where, ws, tmp_path):
    shutil.copytree(ws / "tok", tmp_path / "model")
    paths = {"--data": ws / "r", "--tokenizer": ws / "tok", "--model": tmp_path / "model"}
    output = {"--data": ws / "r", "--tokenizer": ws / "tok" / "run", "--model": tmp_path}[where]
    args = [a for k, v in paths.items() for a in (k, v)]
    res = trainers("sft", *args, "--output", output)
    assert where in res.output and ("itself" in res.output or "lies inside" in res.output or "holds" in res.output)
    assert not (ws / "tok" / "run").exists()


def test_dash_o_dot_fails_at_once_not_after_the_run(ws, tmp_path, monkeypatch):
    """`-o .` used to end in a ValueError traceback after the whole run (train-vocab: after training)."""
    monkeypatch.chdir(tmp_path)
    for argv in (["clean", ws / "news.jsonl"], ["train-vocab", ws / "news.jsonl", "--vocab-size", 3000],
                 ["bucket", ws / "news.jsonl", "-n", 2]):
        res = run(*argv, "-o", ".", ok=False)
        assert "current directory" in res.output and "training" not in res.output
    assert os.listdir(tmp_path) == []


def test_glob_reach():
    here = Path.cwd()
    assert _glob_reaches("data/*.jsonl", here / "data" / "all.jsonl", False)
    assert not _glob_reaches("data/*.jsonl", here / "data" / "all.txt", False)
    assert not _glob_reaches("data/*.jsonl", here / "data" / "sub", True)  # one level only
    assert _glob_reaches("data/**/*.jsonl", here / "data" / "sub", True)
    assert _glob_reaches("data/**/*.jsonl", here / "data" / "a" / "b" / "x.jsonl", False)
    assert not _glob_reaches("data/**/*.jsonl", here / "other" / "x.jsonl", False)
    assert _glob_reaches("d*/x.jsonl", here / "data" / "x.jsonl", False)


# ------------------------------------------------------------------------------------- leftovers

def test_leftovers_of_dead_runs_go_and_never_fail_a_run(ws, tmp_path):
    """What killed runs left beside an output is removed by the next run on it; anything that is
    not provably a dead run's (a live process's temp, a user's file) stays."""
    out = tmp_path / "c"
    run("clean", ws / "news.jsonl", "-o", out)
    dead = dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = [f".c.ck{dead}-0123abcd.tmp", f".c.ck{dead}-4567cdef.old", f".c.old-{os.getpid()}",
                f".c.old-{dead}", ".c.abcd_123.tmp"]
        kept = [f".c.ck{live.pid}-89abcdef.tmp", f".c.old-{live.pid}", ".c.recent_1.tmp", ".c.notes", ".cc.old-1"]
        for name in gone + kept:
            (tmp_path / name).mkdir()
            (tmp_path / name / "report.json").write_text("{}")  # non-empty, as a killed swap leaves it
        (tmp_path / ".build-ab12cd34").mkdir()  # render's scratch folder, as older versions left it
        (tmp_path / ".build-ab12cd34" / "rows.arrow").write_bytes(b"partial")
        (tmp_path / ".build-zz12cd34").mkdir()  # same name pattern, but holding something else: kept
        (tmp_path / ".build-zz12cd34" / "notes.txt").write_text("mine")
        kept.append(".build-zz12cd34")
        old = time.time() - 2 * 3600
        for p in (tmp_path / ".c.abcd_123.tmp", tmp_path / ".c.abcd_123.tmp" / "report.json",
                  tmp_path / ".build-ab12cd34", tmp_path / ".build-ab12cd34" / "rows.arrow",
                  tmp_path / ".build-zz12cd34" / "notes.txt", tmp_path / ".build-zz12cd34"):
            os.utime(p, (old, old))  # idle for two hours: pre-marker leftovers
        run("clean", ws / "news.jsonl", "-o", out)  # a stale .c.old-<our pid> used to fail this run
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["c"])
    finally:
        live.kill()
        live.wait()


def test_leftover_temp_files_beside_file_outputs_are_removed(ws, tmp_path):
    dead = dead_pid()
    for name in (f".o.jsonl.ck{dead}-00000000.tmp", f".o.rejected.jsonl.ck{dead}-11111111.tmp",
                 f".s.png.ck{dead}-22222222.tmp"):
        (tmp_path / name).write_text("partial")
    run("convert", ws / "news.jsonl", "-o", tmp_path / "o.jsonl")
    run("stats", ws / "news.jsonl", "--plot", tmp_path / "s.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl", "o.rejected.jsonl", "s.png"]


def test_a_two_rename_swap_cut_in_the_middle_is_completed_or_undone(tmp_path):
    """File systems without RENAME_EXCHANGE: killed between the two renames, no folder is at the
    path; the next run puts the new one there if it was complete (marker written), else the old."""
    dead = dead_pid()
    for complete in (True, False):
        out = tmp_path / f"out{complete}"
        old, new = tmp_path / f".{out.name}.ck{dead}-aaaaaaaa.old", tmp_path / f".{out.name}.ck{dead}-bbbbbbbb.tmp"
        for d, text in ((old, "old"), (new, "new")):
            d.mkdir()
            (d / "data.jsonl").write_text(text)
        (old / MARKER).write_text(json.dumps(marker_json("clean")))
        if complete:
            (new / MARKER).write_text(json.dumps(marker_json("clean")))
        sweep(out)
        assert (out / "data.jsonl").read_text() == ("new" if complete else "old")
        assert not old.exists() and not new.exists()


def test_a_live_commit_is_left_alone_and_a_dead_one_finished(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    ta, tb = tmp_path / ".a.jsonl.ck1-00000000.tmp", tmp_path / ".b.jsonl.ck1-11111111.tmp"
    for owner in (os.getppid(), dead_pid()):  # the test's parent is alive
        ta.write_text("new a")
        tb.write_text("new b")
        a.write_text("old a")
        b.write_text("old b")
        journal = {"format": "corpuskit.commit/1", "pid": owner, "set": "s1",
                   "files": [[str(ta), str(a)], [str(tb), str(b)]]}
        for t in (a, b):
            journal_path(t).write_text(json.dumps(journal))
        from corpuskit.ingest import expand_inputs

        expand_inputs([a])  # every corpuskit reader settles a set before reading it
        if owner == os.getppid():
            assert a.read_text() == "old a" and journal_path(a).exists()
            for t in (a, b):
                journal_path(t).unlink()
        else:
            assert (a.read_text(), b.read_text()) == ("new a", "new b")
            assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]


def test_a_reader_finishes_a_convert_killed_between_its_renames(ws, tmp_path):
    """Real kill -9 between convert's renames, then a real reader (validate): it sees the new set."""
    env = {**os.environ, "CORPUSKIT_FAULT": "set-renaming"}
    cmd = [sys.executable, "-m", "corpuskit.cli", "convert", str(ws / "chats.jsonl"), "-o", str(tmp_path / "o.jsonl")]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == -signal.SIGKILL
    assert os.path.exists(journal_path(tmp_path / "o.jsonl"))
    run("validate", tmp_path / "o.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl", "o.rejected.jsonl"]
    assert (tmp_path / "o.jsonl").read_bytes() == (ws / "chats.jsonl").read_bytes()


def test_a_destination_that_cannot_be_written_fails_before_the_work(ws, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permission bits do not stop writes (a read-only mount does)")
        res = run("clean", ws / "news.jsonl", "-o", locked / "c", ok=False)
        assert "cannot write into" in res.output
    finally:
        locked.chmod(0o755)
