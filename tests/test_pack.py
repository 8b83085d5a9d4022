"""`corpuskit pack` on rendered real ShareGPT conversations, and the bin packers themselves."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.pack.bfd import best_fit_decreasing, greedy

pytestmark = pytest.mark.xdist_group("tok")


def run(*args, ok=True):
    res = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert res.exit_code == 0, res.output + repr(res.exception)
    return res


def load(d):
    from datasets import load_from_disk

    return load_from_disk(str(d))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, data_dir, llama2_tokenizer_dir):
    """Two 'bucket' files of real conversations rendered together (two pack groups)."""
    w = tmp_path_factory.mktemp("pack")
    run("convert", data_dir / "sharegpt_sample.json", "-o", w / "chats.jsonl", "--to", "sft")
    lines = (w / "chats.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (w / "bucket-00000.jsonl").write_text("".join(lines[::2]), encoding="utf-8")
    (w / "bucket-00001.jsonl").write_text("".join(lines[1::2]), encoding="utf-8")
    run("render", w / "bucket-00000.jsonl", w / "bucket-00001.jsonl", "--tokenizer", llama2_tokenizer_dir,
        "--template", "llama2-chinese", "--max-length", 1024, "-o", w / "rendered")
    return w


def test_bfd_matches_reference_best_fit():
    rng = random.Random(7)
    for _ in range(30):
        cap = rng.choice([64, 100, 4096])
        lengths = [rng.randint(1, cap) for _ in range(rng.randint(1, 300))]
        bins = best_fit_decreasing(lengths, cap)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= cap for b in bins)
        # reference: O(n * bins) best fit over the same decreasing order
        room: list[int] = []
        for n in sorted(lengths, reverse=True):
            fits = [k for k, r in enumerate(room) if r >= n]
            if fits:
                k = min(fits, key=lambda k: room[k])
                room[k] -= n
            else:
                room.append(cap - n)
        assert len(bins) == len(room)
        g = greedy(lengths, cap)
        assert [i for b in g for i in b] == list(range(len(lengths))) and len(g) >= len(bins)
    with pytest.raises(ValueError):
        best_fit_decreasing([5, 11], 10)


@pytest.mark.parametrize("strategy", ["bfd", "greedy"])
def test_pack_conserves_every_token_and_label(rendered, strategy):
    out = rendered / f"packed-{strategy}"
    run("pack", rendered / "rendered", "-o", out, "--seq-len", 2048, "--strategy", strategy)
    src = {r["origin"]: r for r in load(rendered / "rendered")}
    packed = load(out)
    manifest = json.loads((out / "manifest.json").read_text())
    seen = []
    for row in packed:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) <= 2048
        assert sum(row["seq_lens"]) == len(row["input_ids"]) and len(row["origins"]) == len(row["seq_lens"])
        pos = 0
        for n, origin in zip(row["seq_lens"], row["origins"]):
            assert row["input_ids"][pos:pos + n] == src[origin]["input_ids"]
            assert row["labels"][pos:pos + n] == src[origin]["labels"]
            assert row["position_ids"][pos:pos + n] == list(range(n))
            pos += n
            seen.append(origin)
    assert sorted(seen) == sorted(src)  # every sample exactly once
    tokens = sum(len(r["input_ids"]) for r in src.values())
    trained = sum(sum(lab != -100 for lab in r["labels"]) for r in src.values())
    assert manifest["tokens"] == tokens and manifest["trained_tokens"] == trained
    assert manifest["samples"] == len(src) and manifest["sequences"] == len(packed)
    assert manifest["render"]["format"] == "corpuskit.render/1"
    assert manifest["tokenizer"] == manifest["render"]["tokenizer"]
    assert manifest["fill_ratio"] == pytest.approx(tokens / (len(packed) * 2048), abs=1e-6)
    # groups: the bucket files, in order, each packed on its own
    groups = manifest["groups"]
    assert [g["name"].rsplit("/", 1)[1] for g in groups] == ["bucket-00000.jsonl", "bucket-00001.jsonl"]
    assert groups[0]["start"] == 0 and groups[0]["end"] == groups[1]["start"] and groups[1]["end"] == len(packed)
    for g in groups:
        for row in packed.select(range(g["start"], g["end"])):
            assert all(o.rsplit(":", 1)[0] == g["name"] for o in row["origins"])
    report = json.loads((out / "report.json").read_text())
    assert report["details"]["tokens_in"] == report["details"]["tokens_out"] == tokens


def test_bfd_fills_better_than_greedy(rendered):
    fills = {}
    for strategy in ("bfd", "greedy"):
        out = rendered / f"fill-{strategy}"
        run("pack", rendered / "rendered", "-o", out, "--seq-len", 4096, "--strategy", strategy)
        fills[strategy] = json.loads((out / "manifest.json").read_text())["fill_ratio"]
    assert fills["bfd"] >= fills["greedy"] and fills["bfd"] > 0.9


def test_pack_is_deterministic_per_seed(rendered):
    outs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        outs[name] = rendered / f"seed-{name}"
        run("pack", rendered / "rendered", "-o", outs[name], "--seq-len", 2048, "--seed", seed)
    arrow = "data-00000-of-00001.arrow"
    assert (outs["a"] / arrow).read_bytes() == (outs["b"] / arrow).read_bytes()
    a, c = load(outs["a"]), load(outs["c"])
    assert a["origins"] != c["origins"]  # another seed: another row order ...
    assert sorted(map(tuple, a["origins"])) == sorted(map(tuple, c["origins"]))  # ... same sequences


def test_pack_refuses_samples_longer_than_seq_len(rendered):
    res = run("pack", rendered / "rendered", "-o", rendered / "too-short", "--seq-len", 512, ok=False)
    assert res.exit_code == 1 and "--max-length 512" in res.output and "bucket-0000" in res.output
    assert "Traceback" not in res.output and not (rendered / "too-short").exists()


def test_pack_rejects_a_directory_that_is_not_render_output(rendered, tmp_path):
    res = run("pack", tmp_path, "-o", tmp_path / "out", ok=False)
    assert res.exit_code == 1 and "manifest.json" in res.output


def test_empty_render_loads_and_packs(rendered, tmp_path, llama2_tokenizer_dir):
    # every record refused (a real conversation whose answer quotes the EOS text): 0 rows, still a dataset
    line = (rendered / "chats.jsonl").read_text(encoding="utf-8").splitlines()[0]
    rec = json.loads(line)
    rec["messages"][1]["content"] += " </s>"
    (tmp_path / "bad.jsonl").write_text(json.dumps(rec, ensure_ascii=False) + "\n", encoding="utf-8")
    run("render", tmp_path / "bad.jsonl", "--tokenizer", llama2_tokenizer_dir, "--template", "llama2-chinese",
        "-o", tmp_path / "r")
    assert len(load(tmp_path / "r")) == 0
    run("pack", tmp_path / "r", "-o", tmp_path / "p", "--seq-len", 64)
    assert len(load(tmp_path / "p")) == 0
    assert json.loads((tmp_path / "p" / "manifest.json").read_text())["sequences"] == 0


def test_pack_refuses_to_overwrite_its_input(rendered):
    res = run("pack", rendered / "rendered", "-o", rendered / "rendered", ok=False)
    assert res.exit_code == 1 and "replace the input" in res.output and "Traceback" not in res.output
    assert len(load(rendered / "rendered")) > 0
