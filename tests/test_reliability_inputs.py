"""Hostile and broken inputs through the CLI (issue 11, "Inputs that crash, hang or lose data").

One test (or parametrised family) per class, each on real sample data with exact counts:
deep JSON nesting, a truncated .json.gz, symlink loops and broken links, non-regular files,
oversized records, numeric options, chat templates that hang / allocate / crash, and Ctrl-C on
pooled commands. Every bad input must end as a counted reject or a one-line error: no
traceback, no hang, no native abort.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main

BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"^[\w-]+: input (\d+) = kept (\d+) \+ rejected (\d+)(?: \((.*)\))?$", re.M)
DEEP_PARSES = '{"text": "deep but parseable", "meta": ' + "[" * 150 + "]" * 150 + "}"  # json.loads copes
DEEP_CRASHES = '{"text": "deep", "meta": ' + "[" * 5000 + "]" * 5000 + "}"  # RecursionError in json.loads


def cli(*args, code: int | None = 0):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    if code is not None:
        assert res.exit_code == code, res.output
    return res


def counts(output: str) -> tuple[int, int, dict[str, int]]:
    """(input, kept, rejected by reason) from a command's summary line."""
    m = SUMMARY.search(output)
    assert m, output
    reasons = dict((k, int(v)) for k, v in (p.split("=") for p in m.group(4).split(", "))) if m.group(4) else {}
    assert int(m.group(1)) == int(m.group(2)) + sum(reasons.values())
    return int(m.group(1)), int(m.group(2)), reasons


def report_counts(path: Path) -> tuple[int, int, dict[str, int]]:
    c = json.loads(path.read_text(encoding="utf-8"))["counts"]
    return c["input"], c["kept"], c["rejected"]


@pytest.fixture(scope="module")
def reviews(data_dir) -> list[str]:
    """The 300 real review lines, as canonical {"text"} JSON lines."""
    lines = [l for l in (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").split("\n") if l.strip()]
    assert len(lines) == 300
    return [json.dumps({"text": l}, ensure_ascii=False) for l in lines]


@pytest.fixture(scope="module")
def sharegpt(data_dir) -> list:
    return json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8"))


def json_array(elements: list[str]) -> str:
    """One element per line, so element i starts at line i + 2."""
    return "[\n" + ",\n".join(elements) + "\n]\n"


# ---- 1. JSON nested >= 1,000 levels ---------------------------------------------------------

@pytest.fixture(scope="module")
def deep_jsonl(tmp_path_factory, reviews) -> Path:
    lines = list(reviews)
    lines.insert(10, DEEP_PARSES)   # line 11
    lines.insert(20, DEEP_CRASHES)  # line 21
    path = tmp_path_factory.mktemp("deep") / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_deep_jsonl_is_two_parse_errors_in_convert_validate_clean_bucket_stats(tmp_path, deep_jsonl):
    res = cli("convert", deep_jsonl, "-o", tmp_path / "c.jsonl")
    assert counts(res.output) == (302, 300, {"parse_error": 2})
    rejects = [json.loads(l) for l in (tmp_path / "c.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["origin"]["line"], r["message"]) for r in rejects] == [
        (11, "JSON nested deeper than 100 levels"), (21, "JSON nested deeper than 100 levels")]
    assert f"{deep_jsonl}:11: JSON nested deeper than 100 levels" in res.output

    res = cli("validate", deep_jsonl, code=1)
    assert f"{deep_jsonl}:11: JSON nested deeper than 100 levels\n" in res.output
    assert f"{deep_jsonl}:21: JSON nested deeper than 100 levels\n" in res.output
    assert res.output.endswith(f"{deep_jsonl}: FAILED: 302 records, 300 valid, 2 invalid\n")

    res = cli("clean", deep_jsonl, "-o", tmp_path / "clean", "--filters", "none", "--dedup", "none")
    assert report_counts(tmp_path / "clean" / "report.json") == (302, 300, {"parse_error": 2})

    cli("bucket", deep_jsonl, "-o", tmp_path / "b", "-n", "2")
    assert report_counts(tmp_path / "b" / "report.json") == (302, 300, {"parse_error": 2})

    cli("stats", deep_jsonl, "--json", tmp_path / "s.json")
    c = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["report"]["counts"]
    assert (c["input"], c["kept"], c["rejected"]) == (302, 300, {"parse_error": 2})


@pytest.mark.xdist_group("tok")
def test_deep_jsonl_render_rejects_two(tmp_path, deep_jsonl, llama2_tokenizer_dir):
    res = cli("render", deep_jsonl, "--tokenizer", llama2_tokenizer_dir, "--mode", "pretrain", "-o", tmp_path / "r")
    assert counts(res.output) == (302, 300, {"parse_error": 2})


@pytest.mark.parametrize("gz", [False, True], ids=["json", "json.gz"])
def test_deep_element_in_json_array_is_one_parse_error(tmp_path, sharegpt, gz):
    plain = [json.dumps(e, ensure_ascii=False) for e in sharegpt]
    base = tmp_path / "base.json"
    base.write_text(json_array(plain), encoding="utf-8")
    _, kept, rejected = counts(cli("convert", base, "-o", tmp_path / "base.jsonl").output)

    hostile = plain[:5] + [DEEP_CRASHES, DEEP_PARSES] + plain[5:]  # elements 6 and 7: lines 7 and 8
    text = json_array(hostile)
    path = tmp_path / ("deep.json.gz" if gz else "deep.json")
    path.write_bytes(gzip.compress(text.encode("utf-8")) if gz else text.encode("utf-8"))
    res = cli("convert", path, "-o", tmp_path / "deep.jsonl")
    assert counts(res.output) == (len(sharegpt) + 2, kept, {**rejected, "parse_error": rejected.get("parse_error", 0) + 2})
    assert (tmp_path / "deep.jsonl").read_bytes() == (tmp_path / "base.jsonl").read_bytes()
    assert f"{path}:7: JSON nested deeper than 100 levels" in res.output
    assert f"{path}:8: JSON nested deeper than 100 levels" in res.output
    res = cli("validate", path, "--schema", "sft", code=1)
    assert f"{path}:7: JSON nested deeper than 100 levels\n" in res.output


# ---- 2. a truncated .json.gz -----------------------------------------------------------------

def test_truncated_json_gz_recovers_what_a_truncated_json_does(tmp_path, data_dir):
    raw = (data_dir / "sharegpt_sample.json").read_bytes()
    packed = gzip.compress(raw)
    cut = packed[: len(packed) * 3 // 5]
    (tmp_path / "cut.json.gz").write_bytes(cut)
    readable = zlib.decompressobj(wbits=31).decompress(cut)  # every byte the cut stream still holds
    assert 0 < len(readable) < len(raw)
    (tmp_path / "cut.json").write_bytes(readable)

    gz = cli("convert", tmp_path / "cut.json.gz", "-o", tmp_path / "gz.jsonl", "--report", tmp_path / "gz.report.json")
    plain = cli("convert", tmp_path / "cut.json", "-o", tmp_path / "plain.jsonl")
    n_in, kept, rejected = counts(gz.output)
    assert (n_in, kept, rejected) == counts(plain.output)
    assert n_in > 30 and kept > 10 and rejected["parse_error"] == 1  # was: input 1 = kept 0 + rejected 1
    assert (tmp_path / "gz.jsonl").read_bytes() == (tmp_path / "plain.jsonl").read_bytes()
    (cut_reject,) = [json.loads(l) for l in (tmp_path / "gz.rejected.jsonl").read_text(encoding="utf-8").splitlines()
                     if json.loads(l)["reason"] == "parse_error"]
    assert cut_reject["message"].startswith("JSON array cut off mid-record")
    assert "Compressed file ended before the end-of-stream marker was reached" in cut_reject["message"]
    v_gz, v_plain = (cli("validate", tmp_path / f, code=1).output.splitlines()[-1] for f in ("cut.json.gz", "cut.json"))
    assert v_gz.split(": ", 1)[1] == v_plain.split(": ", 1)[1]


# ---- 3. symlink loops and broken links -------------------------------------------------------

@pytest.fixture()
def linked_tree(tmp_path, reviews) -> tuple[Path, int]:
    """loopdir/ with a.jsonl, sub/b.jsonl, ext -> ../other (c.jsonl) and every kind of bad link."""
    root, other = tmp_path / "loopdir", tmp_path / "other"
    (root / "sub").mkdir(parents=True)
    other.mkdir()
    (root / "a.jsonl").write_text("\n".join(reviews[:10]) + "\n", encoding="utf-8")
    (root / "sub" / "b.jsonl").write_text("\n".join(reviews[10:30]) + "\n", encoding="utf-8")
    (other / "c.jsonl").write_text("\n".join(reviews[30:60]) + "\n", encoding="utf-8")
    os.symlink("..", root / "sub" / "up")             # loop back to loopdir
    os.symlink(".", root / "self")                     # loop to itself
    os.symlink("l2", root / "l1")                      # a link chain that never ends
    os.symlink("l1", root / "l2")
    os.symlink("nowhere.jsonl", root / "broken.jsonl")  # broken
    os.symlink("a.jsonl", root / "alias.jsonl")         # the same file under a second name
    os.symlink("../other", root / "ext")                # a real linked folder: followed once
    return root, 10 + 20 + 30


def expected_warnings(root: Path) -> list[str]:
    return [f"warning: {root}/broken.jsonl: broken symbolic link (to 'nowhere.jsonl': No such file or directory); skipped",
            f"warning: {root}/l1: symbolic link loop (the link chain never ends); skipped",
            f"warning: {root}/l2: symbolic link loop (the link chain never ends); skipped",
            f"warning: {root}/self: symbolic link loop (leads back to {root}); not followed",
            f"warning: {root}/sub/up: symbolic link loop (leads back to {root}); not followed",
            f"warning: {root}/alias.jsonl: same file as {root}/a.jsonl; read once"]


@pytest.mark.parametrize("form", ["folder", "glob"])
def test_symlink_loops_each_real_file_once_and_every_bad_link_reported(tmp_path, linked_tree, form):
    root, n = linked_tree
    target = str(root) if form == "folder" else f"{root}/**/*.jsonl"
    # a subprocess with a timeout: `loopdir/**/*.jsonl` used to hang
    p = subprocess.run([BIN / "corpuskit", "convert", target, "-o", tmp_path / "out.jsonl"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert counts(p.stderr) == (n, n, {})
    warnings = [l for l in p.stderr.splitlines() if l.startswith("warning:")]
    assert sorted(warnings) == sorted(expected_warnings(root))
    res = cli("validate", target)
    assert res.output.endswith(f"validate: OK: 3 files, {n} records, 0 invalid\n")  # a, ext/c, sub/b


def test_broken_link_given_by_name_is_a_one_line_error(tmp_path):
    os.symlink("missing.jsonl", tmp_path / "gone.jsonl")
    res = cli("convert", tmp_path / "gone.jsonl", "-o", tmp_path / "o.jsonl", code=1)
    assert res.output == (f"Error: {tmp_path}/gone.jsonl: broken symbolic link (to 'missing.jsonl': "
                          "No such file or directory)\n")


# ---- 4. non-regular files --------------------------------------------------------------------

def _command_args(cmd: str, src: Path, out: Path, tok: Path) -> list:
    return {"convert": ["convert", src, "-o", out / "o.jsonl"], "validate": ["validate", src],
            "clean": ["clean", src, "-o", out / "c"], "bucket": ["bucket", src, "-o", out / "b", "-n", "2"],
            "stats": ["stats", src], "train-vocab": ["train-vocab", src, "-o", out / "v"],
            "render": ["render", src, "--tokenizer", tok, "--mode", "pretrain", "-o", out / "r"],
            "merge-vocab": ["merge-vocab", "--base", tok / "tokenizer.model", "--add", src, "-o", out / "m"]}[cmd]


COMMANDS = ["convert", "validate", "clean", "bucket", "stats", "train-vocab", "render", "merge-vocab"]


@pytest.mark.xdist_group("tok")
@pytest.mark.parametrize("where", ["named", "in-folder"])
def test_fifo_is_refused_by_every_command_before_it_is_opened(tmp_path, where, llama2_tokenizer_dir):
    folder = tmp_path / "data"
    folder.mkdir()
    fifo = folder / "pipe.jsonl"
    os.mkfifo(fifo)
    done = threading.Event()

    def unblock():  # if a command did open the FIFO for reading, give it a writer so the test fails, not hangs
        if not done.wait(60):
            with open(fifo, "w"):
                pass

    threading.Thread(target=unblock, daemon=True).start()
    try:
        for cmd in COMMANDS:
            src = fifo if where == "named" else folder
            t0 = time.monotonic()
            res = CliRunner().invoke(main, [str(a) for a in _command_args(cmd, src, tmp_path, llama2_tokenizer_dir)])
            assert time.monotonic() - t0 < 30, cmd
            assert res.exit_code == 1, (cmd, res.output)
            assert "Traceback" not in res.output
            message = f"{fifo}: is a FIFO, not a regular file; corpuskit reads regular files only"
            assert message in res.output, (cmd, res.output)
            assert len(res.output.strip().splitlines()) <= 2, (cmd, res.output)  # validate adds its summary line
    finally:
        done.set()


def test_fifo_as_a_model_or_weights_file_is_refused(tmp_path, reviews, llama2_model):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    (tmp_path / "r.jsonl").write_text("\n".join(reviews[:20]) + "\n", encoding="utf-8")
    done = threading.Event()
    threading.Thread(target=lambda: done.wait(60) or open(fifo, "w").close(), daemon=True).start()
    try:
        res = cli("merge-vocab", "--base", fifo, "--add", llama2_model, "-o", tmp_path / "m", code=1)
        assert res.output == f"Error: {fifo}: is a FIFO, not a regular file; corpuskit reads regular files only " \
                             "(a FIFO would block, a device never end)\n"
        res = cli("bucket", tmp_path / "r.jsonl", "-o", tmp_path / "b", "-n", "2", "--weights", fifo, code=2)
        assert f"{fifo}: the weights file is not a regular file" in res.output
    finally:
        done.set()


@pytest.mark.parametrize("cmd", ["convert", "validate", "stats"])
def test_dev_zero_is_refused_not_read_forever(tmp_path, cmd):
    os.symlink("/dev/zero", tmp_path / "zero.jsonl")

    def cap_memory():  # a regression fails with MemoryError here instead of eating the machine
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    args = {"convert": ["convert", tmp_path / "zero.jsonl", "-o", tmp_path / "o.jsonl"],
            "validate": ["validate", tmp_path / "zero.jsonl"], "stats": ["stats", tmp_path / "zero.jsonl"]}[cmd]
    p = subprocess.run([BIN / "corpuskit", *args], capture_output=True, text=True, timeout=120, preexec_fn=cap_memory)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr + p.stdout
    assert f"{tmp_path}/zero.jsonl: is a character device, not a regular file" in p.stderr + p.stdout


# ---- 5. record size bound --------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_record_jsonl(tmp_path_factory, reviews) -> Path:
    """The reviews with one 3 MB record (real review text repeated) at line 6."""
    text = "".join(json.loads(r)["text"] for r in reviews) * 40
    assert len(text.encode("utf-8")) > 3 << 20
    lines = list(reviews)
    lines.insert(5, json.dumps({"text": text}, ensure_ascii=False))
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_oversized_record_is_rejected_by_every_stage(tmp_path, big_record_jsonl):
    cap = ["--max-record-bytes", "1M"]
    res = cli("convert", big_record_jsonl, "-o", tmp_path / "c.jsonl", *cap)
    assert counts(res.output) == (301, 300, {"record_too_large": 1})
    (rej,) = [json.loads(l) for l in (tmp_path / "c.rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    size = len(big_record_jsonl.read_bytes().split(b"\n")[5])
    assert rej["origin"]["line"] == 6 and rej["record"] is None
    assert rej["message"] == f"record is {size} bytes, over the --max-record-bytes limit of 1048576; it was skipped"

    res = cli("validate", big_record_jsonl, *cap, code=1)
    assert f"{big_record_jsonl}:6: record is {size} bytes" in res.output
    assert res.output.endswith("301 records, 300 valid, 1 invalid\n")
    assert cli("validate", big_record_jsonl).output.endswith("301 records, 301 valid, 0 invalid\n")  # 16M default

    cli("clean", big_record_jsonl, "-o", tmp_path / "clean", "--filters", "none", "--dedup", "none", *cap)
    assert report_counts(tmp_path / "clean" / "report.json") == (301, 300, {"record_too_large": 1})
    cli("bucket", big_record_jsonl, "-o", tmp_path / "b", "-n", "3", *cap)
    assert report_counts(tmp_path / "b" / "report.json") == (301, 300, {"record_too_large": 1})
    cli("stats", big_record_jsonl, "--json", tmp_path / "s.json", *cap)
    c = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["report"]["counts"]
    assert (c["input"], c["kept"], c["rejected"]) == (301, 300, {"record_too_large": 1})
    res = cli("train-vocab", big_record_jsonl, "-o", tmp_path / "v", "--vocab-size", "3000", *cap)
    assert counts(res.output) == (301, 300, {"record_too_large": 1})


@pytest.mark.xdist_group("tok")
def test_oversized_record_render_pretrain_is_a_reject_not_a_native_abort(tmp_path, big_record_jsonl,
                                                                         llama2_tokenizer_dir):
    res = cli("render", big_record_jsonl, "--tokenizer", llama2_tokenizer_dir, "--mode", "pretrain",
              "-o", tmp_path / "r", "--max-record-bytes", "1M")
    assert counts(res.output) == (301, 300, {"record_too_large": 1})


@pytest.mark.xdist_group("tok")
def test_tokenizer_batches_are_bounded_by_characters_with_the_same_output(tmp_path, monkeypatch, data_dir,
                                                                          llama2_tokenizer_dir):
    """render and stats --tokenizer hand the Rust encoder at most ENCODE_CHARS / BATCH_CHARS
    characters per call (256 records of 16 MB in one call could abort it); splitting changes nothing."""
    import corpuskit.render.tokenize as tokenize
    import corpuskit.stats.collect as collect

    src, tok = tmp_path / "reviews.txt", llama2_tokenizer_dir
    src.write_text("".join((data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines(True)[:80]),
                   encoding="utf-8")

    def run(tag):
        cli("render", src, "--tokenizer", tok, "--mode", "pretrain", "-o", tmp_path / tag)
        cli("stats", src, "--tokenizer", tok, "--json", tmp_path / f"{tag}.json")
        stats = json.loads((tmp_path / f"{tag}.json").read_text(encoding="utf-8"))
        return ((tmp_path / tag / "data-00000-of-00001.arrow").read_bytes(), stats["categories"], stats["histogram"])

    whole = run("whole")
    monkeypatch.setattr(tokenize, "ENCODE_CHARS", 500)
    monkeypatch.setattr(collect, "BATCH_CHARS", 500)
    assert run("split") == whole
    assert whole[1]["default"]["tokens"] > 0


def test_oversized_piece_in_merge_vocab(tmp_path, llama2_model):
    pieces = tmp_path / "pieces.jsonl"
    pieces.write_text("\n".join(json.dumps({"piece": p}, ensure_ascii=False) for p in ["数据集", "x" * 5000, "语料库"])
                      + "\n", encoding="utf-8")
    cli("merge-vocab", "--base", llama2_model, "--add", pieces, "-o", tmp_path / "m", "--max-record-bytes", "1K")
    skipped = json.loads((tmp_path / "m" / "merge-report.json").read_text(encoding="utf-8"))["details"]["skipped_by_reason"]
    assert skipped["record_too_large"] == 1


def test_oversized_element_in_json_array_and_row_in_csv(tmp_path, sharegpt, reviews):
    plain = [json.dumps(e, ensure_ascii=False) for e in sharegpt]
    (tmp_path / "base.json").write_text(json_array(plain), encoding="utf-8")
    _, kept, rejected = counts(cli("convert", tmp_path / "base.json", "-o", tmp_path / "base.jsonl").output)
    huge = json.loads(plain[0])
    huge["conversations"][1]["value"] = huge["conversations"][1]["value"] * 4000  # one long string, > 1M
    with_big = plain[:3] + [json.dumps(huge, ensure_ascii=False)] + plain[3:]  # element 4: line 5
    (tmp_path / "big.json").write_text(json_array(with_big), encoding="utf-8")
    res = cli("convert", tmp_path / "big.json", "-o", tmp_path / "big.jsonl", "--max-record-bytes", "1M")
    assert counts(res.output) == (len(sharegpt) + 1, kept, {**rejected, "record_too_large": 1})
    assert (tmp_path / "big.jsonl").read_bytes() == (tmp_path / "base.jsonl").read_bytes()
    assert f"{tmp_path}/big.json:5: record is " in res.output

    texts = [json.loads(r)["text"] for r in reviews[:50]]
    quote = lambda t: '"' + t.replace('"', '""') + '"'  # noqa: E731
    one_line = quote("".join(texts) * 200)            # one physical line > 1M
    many_lines = quote("\n".join(texts * 200))        # a quoted field over many short lines, > 1M in all
    rows = [quote(t) for t in texts]
    csv_text = "text\n" + "\n".join(rows[:10] + [one_line] + rows[10:20] + [many_lines] + rows[20:]) + "\n"
    (tmp_path / "big.csv").write_text(csv_text, encoding="utf-8")
    res = cli("convert", tmp_path / "big.csv", "-o", tmp_path / "csv.jsonl", "--max-record-bytes", "1M")
    assert counts(res.output) == (52, 50, {"record_too_large": 2})
    assert [json.loads(l)["text"] for l in (tmp_path / "csv.jsonl").read_text(encoding="utf-8").splitlines()] == texts
    lines = [json.loads(l)["origin"]["line"] for l in (tmp_path / "csv.rejected.jsonl").read_text().splitlines()]
    assert lines == [12, 23]


PEAK_RSS = """import sys
try:
    from corpuskit.cli import main
    main(sys.argv[1:])
finally:  # the peak resident memory of this process since exec (ru_maxrss would include the parent's)
    print(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")), flush=True)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_giant_line_is_never_held_in_memory(tmp_path, reviews):
    """A 97 MiB line with the default 16M bound: the process stays far below the line's size
    (before the bound, convert peaked at about 5x the line)."""
    big = tmp_path / "giant.jsonl"
    chunk = "".join(json.loads(r)["text"].replace('"', "").replace("\\", "") for r in reviews).encode("utf-8")
    with open(big, "wb") as fh:
        fh.write(reviews[0].encode("utf-8") + b'\n{"text": "')
        while fh.tell() < 97 << 20:
            fh.write(chunk)
        fh.write(b'"}\n' + reviews[2].encode("utf-8") + b"\n")
    p = subprocess.run([sys.executable, "-c", PEAK_RSS, "convert", big, "-o", tmp_path / "o.jsonl"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert counts(p.stderr) == (3, 2, {"record_too_large": 1})
    peak_kb = int(p.stdout.split()[-2])
    assert peak_kb * 1024 < 96 << 20, f"peak RSS {peak_kb} kB"


# ---- 6. numeric options ----------------------------------------------------------------------

NUMERIC = [
    ("clean {src} -o {out} --seed -1", "--seed"), ("clean {src} -o {out} --seed 1e23", "--seed"),
    ("clean {src} -o {out} --seed 4294967296", "--seed"), ("bucket {src} -o {out} -n 2 --seed -1", "--seed"),
    ("pack {dir} -o {out} --seed -1", "--seed"), ("train-vocab {src} -o {out} --seed -1", "--seed"),
    ("pack {dir} -o {out} --seq-len 1e13", "--seq-len"), ("pack {dir} -o {out} --seq-len 10000000000000", "--seq-len"),
    ("pack {dir} -o {out} --seq-len 0", "--seq-len"),
    ("render {src} --tokenizer {dir} -o {out} --max-length 99999999999", "--max-length"),
    ("render {src} --tokenizer {dir} -o {out} --group-texts -5", "--group-texts"),
    ("clean {src} -o {out} --workers 0", "--workers"), ("clean {src} -o {out} --workers 100000", "--workers"),
    ("stats {src} --workers 0", "--workers"), ("validate {src} --workers -2", "--workers"),
    ("clean {src} -o {out} --threshold nan", "--threshold"), ("clean {src} -o {out} --threshold 1.5", "--threshold"),
    ("clean {src} -o {out} --num-perm 0", "--num-perm"), ("bucket {src} -o {out} -n 0", "--num-buckets"),
    ("train-vocab {src} -o {out} --vocab-size 99999999999", "--vocab-size"),
    ("train-vocab {src} -o {out} --character-coverage nan", "--character-coverage"),
    ("train-vocab {src} -o {out} --character-coverage 0.9", "--character-coverage"),  # SentencePiece needs >= 0.98
    ("train-vocab {src} -o {out} --max-sentences 0", "--max-sentences"),
    ("validate {src} --max-errors -1", "--max-errors"),
    ("convert {src} -o {out}.jsonl --max-record-bytes 0", "--max-record-bytes"),
    ("convert {src} -o {out}.jsonl --max-record-bytes 5G", "--max-record-bytes"),
    ("convert {src} -o {out}.jsonl --max-record-bytes lots", "--max-record-bytes"),
]


@pytest.mark.parametrize("line,option", NUMERIC)
def test_numeric_option_out_of_range_is_a_usage_error(tmp_path, data_dir, line, option):
    args = line.format(src=data_dir / "reviews_pos_head.txt", out=tmp_path / "out", dir=tmp_path).split()
    res = cli(*args, code=2)
    assert f"Invalid value for '{option}'" in res.output or f"Invalid value for '-n' / '{option}'" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--seed", "-1"], ["--lr", "nan"], ["--epochs", "inf"], ["--lora-dropout", "nan"]])
def test_trainers_numeric_options(tmp_path, args):
    from trainers.cli import main as trainers_main

    res = CliRunner().invoke(trainers_main, ["sft", "--data", str(tmp_path), "--model", str(tmp_path),
                                             "--tokenizer", str(tmp_path), "-o", str(tmp_path / "run"), *args])
    assert res.exit_code == 2 and f"Invalid value for '{args[0]}'" in res.output, res.output


@pytest.mark.parametrize("yaml_text,message", [
    ("filters:\n  gopher_repetition:\n    dup_line_frac: 1.5\n", "dup_line_frac must be a fraction between 0 and 1"),
    ("filters:\n  gopher_quality:\n    max_bullet_lines_ratio: .nan\n", "must be a finite number >= 0"),
    ("filters:\n  length:\n    max_chars: -5\n", "filters.length.max_chars must be a finite number >= 0"),
    ("filters:\n  gopher_repetition:\n    top_n_grams: [[2, 7]]\n", "the fraction for 2-grams must be between 0 and 1"),
])
def test_clean_yaml_numbers_are_checked(tmp_path, data_dir, yaml_text, message):
    (tmp_path / "f.yaml").write_text(yaml_text, encoding="utf-8")
    res = cli("clean", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o", "--filters", tmp_path / "f.yaml",
              code=1)
    assert message in res.output and len(res.output.strip().splitlines()) == 1


# ---- 7. chat templates that hang, allocate or crash ------------------------------------------

ANSWERS = ('{% for m in messages %}{% if m.role == "assistant" %}{% generation %}{{ m.content }}</s>'
           '{% endgeneration %}{% else %}<s>{{ m.content }}{% endif %}{% endfor %}')
HOSTILE = {
    "nested_ranges": ("{% for i in range(2000) %}{% for j in range(2000) %}{% endfor %}{% endfor %}", "template_limit"),
    "string_times": ("{{ 'A' * 400000000 }}", "template_limit"),
    "ljust": ("{{ 'A'.ljust(400000000) }}", "template_limit"),
    "center_filter": ("{{ 'A'|center(400000000) }}", "template_limit"),
    "format_width": ("{{ '{:>400000000}'.format(1) }}", "template_limit"),
    "percent_width": ("{{ '%400000000s' % 'a' }}", "template_limit"),
    "doubling": ("{% set ns = namespace(s='AAAA') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                 "{% endfor %}", "template_limit"),
    "replace": ("{{ ('A' * 10000000).replace('A', 'BBBBBBBBBB') }}", "template_limit"),
    "join": ("{{ range(100000)|join('x' * 1000) }}", "template_limit"),
    "big_power": ("{{ 10 ** 10000000 }}", "template_limit"),
    "recursive_fanout": ("{% for x in [1] recursive %}{% if loop.depth < 4 %}{{ loop(range(1000)) }}{% endif %}"
                         "{% endfor %}", "template_limit"),
    "repeated_output": ("{% for i in range(90000) %}{{ messages[0].content * 50 }}{% endfor %}", "template_limit"),
    "include": ("{% include 'other.jinja' %}", "template_error"),
    "zero_division": ("{{ 1 // 0 }}", "template_error"),
    "type_error": ("{{ messages + 1 }}", "template_error"),
}


@pytest.fixture(scope="module")
def three_chats(tmp_path_factory, data_dir) -> Path:
    d = tmp_path_factory.mktemp("chats")
    cli("convert", data_dir / "sharegpt_sample.json", "-o", d / "all.jsonl", "--to", "sft")
    (d / "three.jsonl").write_text("".join((d / "all.jsonl").read_text(encoding="utf-8").splitlines(True)[:3]),
                                   encoding="utf-8")
    return d / "three.jsonl"


@pytest.mark.xdist_group("tok")
@pytest.mark.parametrize("name", ["control", *HOSTILE])
def test_hostile_chat_template_is_a_counted_reject(tmp_path, three_chats, llama2_tokenizer_dir, name):
    prefix, reason = HOSTILE.get(name, ("", None))
    (tmp_path / f"{name}.jinja").write_text(prefix + ANSWERS, encoding="utf-8")
    t0 = time.monotonic()
    res = cli("render", three_chats, "--tokenizer", llama2_tokenizer_dir, "--template", tmp_path / f"{name}.jinja",
              "-o", tmp_path / "r", "--max-length", "100000")
    assert time.monotonic() - t0 < 60
    assert counts(res.output) == ((3, 3, {}) if reason is None else (3, 0, {reason: 3}))
    if reason:
        examples = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))["examples"][reason]
        assert all(e["message"].startswith(f"{name}: ") for e in examples)


def test_template_time_budget_stops_what_the_counters_allow():
    from corpuskit.render.sandbox import TemplateLimits
    from corpuskit.render.templates import ChatTemplate, TemplateLimitError

    tpl = ChatTemplate("slow", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
                       + ANSWERS)
    t0 = time.monotonic()
    with pytest.raises(TemplateLimitError, match=r"rendering one record took more than 0.5 s"):
        tpl.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], {},
                   limits=TemplateLimits(max_iterations=10**12, max_seconds=0.5))
    assert time.monotonic() - t0 < 5
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None, signal.default_int_handler)


# ---- 8. Ctrl-C on pooled commands ------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat_line.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


@pytest.fixture(scope="module")
def busy_inputs(tmp_path_factory, reviews) -> Path:
    """Two files of real review text, large enough to keep two workers busy for a while."""
    d = tmp_path_factory.mktemp("busy")
    texts = [json.loads(r)["text"] for r in reviews]
    for part in range(2):
        with open(d / f"part{part}.jsonl", "w", encoding="utf-8") as fh:
            for k in range(200):
                for i, t in enumerate(texts):
                    fh.write(json.dumps({"text": f"{t} {part}-{k}-{i}"}, ensure_ascii=False) + "\n")
    return d


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds worker processes through /proc")
@pytest.mark.xdist_group("tok")
@pytest.mark.parametrize("cmd", ["clean", "bucket", "validate", "render", "train-vocab"])
def test_ctrl_c_on_pooled_command_exits_130_with_one_line(tmp_path, busy_inputs, llama2_tokenizer_dir, cmd):
    files = [busy_inputs / "part0.jsonl", busy_inputs / "part1.jsonl"]
    args = {"clean": ["clean", *files, "-o", tmp_path / "o"],
            "bucket": ["bucket", *files, "-o", tmp_path / "o", "-n", "4"],
            "validate": ["validate", *files],
            "render": ["render", *files, "--tokenizer", llama2_tokenizer_dir, "--mode", "pretrain", "-o", tmp_path / "o"],
            "train-vocab": ["train-vocab", *files, "-o", tmp_path / "o", "--pre-tokenize", "jieba",
                            "--vocab-size", "3000"]}[cmd]
    p = subprocess.Popen([BIN / "corpuskit", *args, "--workers", "2"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(_children(p.pid)) < 2 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(p.pid)
    assert len(workers) >= 2 and p.poll() is None, "the pool never started"
    time.sleep(0.3)
    os.killpg(p.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole process group
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err == "interrupted; no output was written\n", err
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{w}").exists() for w in workers), "workers left running"
