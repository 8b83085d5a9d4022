"""`corpuskit bucket` on real samples (People's Daily news, product reviews, ShareGPT chats)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from corpuskit.bucket.plan import plan_buckets
from corpuskit.cli import main
from corpuskit.ingest import iter_records
from corpuskit.outputs import dumps
from corpuskit.records import Record
from corpuskit.report import StageReport

SOURCES = {  # category -> (sample file, format)
    "news": ("peoples_daily_199801_head.txt", "peoples-daily"),
    "review_pos": ("reviews_pos_head.txt", "text"),
    "review_neg": ("reviews_neg_head.txt", "text"),
    "chat": ("sharegpt_sample.json", "sharegpt"),
}


def write_category(data_dir: Path, out: Path, category: str, limit: int | None = None) -> list[dict]:
    """Convert a real sample with the library, tag it with `category`, write canonical jsonl.
    Records the converter rejects are written raw (with the category) so bucket must reject them too."""
    name, fmt = SOURCES[category]
    rows, valid = [], []
    for item in iter_records([str(data_dir / name)], fmt=fmt):
        if isinstance(item, Record):
            item.category = category
            valid.append(item.to_json())
            rows.append(valid[-1])
        else:
            rows.append({**item.raw, "category": category})
        if limit is not None and len(valid) >= limit:
            break
    out.write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    return valid


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("bucket-in")
    valid = {c: write_category(data_dir, d / f"{c}.jsonl", c) for c in SOURCES}
    return d, valid


def run(args, expect=0):
    res = CliRunner().invoke(main, ["bucket", *map(str, args)])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res


def read_buckets(outdir: Path) -> list[list[dict]]:
    files = sorted(outdir.glob("bucket-*.jsonl"))
    return [[json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()] for f in files]


def data_files(outdir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(outdir.iterdir()) if not p.name.startswith("report")}


def check_manifest(outdir: Path, num_buckets: int, field: str = "category") -> dict:
    """Exactly N files, and the manifest agrees with what the files really hold."""
    manifest = json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))
    names = [f"bucket-{i:05d}.jsonl" for i in range(num_buckets)]
    assert sorted(p.name for p in outdir.glob("bucket-*.jsonl")) == names
    assert [b["file"] for b in manifest["buckets"]] == names
    start = 0
    for b, rows in zip(manifest["buckets"], read_buckets(outdir)):
        raw = (outdir / b["file"]).read_bytes()
        assert b["sha256"] == hashlib.sha256(raw).hexdigest()
        assert b["records"] == len(rows) and b["start"] == start
        if field != "__none__":  # categories written in the records themselves
            counts = Counter(r.get(field, manifest["default_category"]) for r in rows)
            assert {k: v for k, v in b["categories"].items() if v} == dict(counts)
        start += len(rows)
    assert manifest["records"]["after"] == start
    return manifest


def test_real_mixture_every_bucket_has_every_category_in_proportion(corpus, tmp_path):
    d, valid = corpus
    out = tmp_path / "buckets"
    res = run([*sorted(d.glob("*.jsonl")), "-o", out, "-n", 7])
    m = check_manifest(out, 7)
    total = {c: len(v) for c, v in valid.items()}
    assert {c: v["before"] for c, v in m["categories"].items()} == total
    for b in m["buckets"]:
        for c, n in total.items():
            assert abs(b["categories"][c] - n / 7) < 1  # within one record of the global share
    sizes = [b["records"] for b in m["buckets"]]
    assert max(sizes) - min(sizes) <= 1
    # every valid record exactly once, no more, no less
    got = Counter(dumps(r) for rows in read_buckets(out) for r in rows)
    assert got == Counter(dumps(r) for rows in valid.values() for r in rows)
    # the ShareGPT records the converter rejects are rejected here too, with reasons, and counted
    report = json.loads((out / "report.json").read_text())
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    c = report["counts"]
    assert c["input"] == c["kept"] + sum(c["rejected"].values()) == sum(total.values()) + len(rejected)
    assert len(rejected) > 0 and Counter(r["reason"] for r in rejected) == Counter(c["rejected"])
    assert all(r["origin"]["path"].endswith("chat.jsonl") and r["origin"]["line"] > 0 for r in rejected)
    assert "bucket: input" in res.output and "wrote 7 buckets" in res.output


@pytest.mark.parametrize("sizes,n,expected", [
    ({"news": 3, "review_pos": 5}, 8, None),                # categories smaller than N: some bins empty
    ({"news": 13, "review_pos": 17, "review_neg": 31}, 7, None),  # prime sizes
    ({"news": 400}, 3, [134, 133, 133]),                     # a single category
    ({"news": 2, "review_neg": 1}, 10, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]),  # N larger than the total
])
def test_awkward_sizes_give_exact_counts(data_dir, tmp_path, sizes, n, expected):
    inputs = []
    for c, k in sizes.items():
        write_category(data_dir, tmp_path / f"{c}.jsonl", c, limit=k)
        inputs.append(tmp_path / f"{c}.jsonl")
    out = tmp_path / "out"
    run([*inputs, "-o", out, "--num-buckets", n, "--seed", 3])
    m = check_manifest(out, n)
    for c, k in sizes.items():
        per_bucket = [b["categories"][c] for b in m["buckets"]]
        assert sum(per_bucket) == k and sorted(set(per_bucket)) in ([k // n], [k // n, k // n + 1])
        assert sorted(per_bucket, reverse=True) == [k // n + 1] * (k % n) + [k // n] * (n - k % n)
    if expected is not None:
        assert [b["records"] for b in m["buckets"]] == expected
    sizes_out = [b["records"] for b in m["buckets"]]
    assert max(sizes_out) - min(sizes_out) <= 1


def test_weights_repeat_and_downsample(data_dir, tmp_path):
    for c in ("news", "review_pos", "review_neg"):
        write_category(data_dir, tmp_path / f"{c}.jsonl", c, limit=101)  # odd sizes: 1.5 and 0.5 round half up
    inputs = sorted(tmp_path.glob("*.jsonl"))
    out = tmp_path / "out"
    run([*inputs, "-o", out, "-n", 4, "--weights", "review_pos=2,news=1.5,review_neg=0.5"])
    m = check_manifest(out, 4)
    assert m["weights"] == {"news": 1.5, "review_neg": 0.5, "review_pos": 2}
    assert {c: (v["before"], v["after"]) for c, v in m["categories"].items()} == {
        "news": (101, 152), "review_pos": (101, 202), "review_neg": (101, 51)}
    seen = Counter(dumps(r) for rows in read_buckets(out) for r in rows)
    per_cat = {c: Counter(v for k, v in seen.items() if json.loads(k)["category"] == c) for c in m["categories"]}
    assert per_cat["review_pos"] == {2: 101}          # every record exactly twice
    assert per_cat["news"] == {1: 50, 2: 51}          # all once, a seeded half again
    assert per_cat["review_neg"] == {1: 51}           # a seeded half kept ...
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 50 and {r["reason"] for r in rejected} == {"downsampled"}  # ... the rest rejected
    assert {dumps(r["record"]) for r in rejected}.isdisjoint(seen)
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"input": 303, "kept": 253, "rejected": {"downsampled": 50}}
    assert report["details"]["added_by_weight"] == 101 + 51 and report["details"]["output_records"] == 405
    for b in m["buckets"]:  # proportions hold after weighting too
        for c, v in m["categories"].items():
            assert abs(b["categories"][c] - v["after"] / 4) < 1
    # the same weights from a JSON file give byte-identical output
    wfile = tmp_path / "w.json"
    wfile.write_text('{"review_pos": 2, "news": 1.5, "review_neg": 0.5}')
    run([*inputs, "-o", tmp_path / "out2", "-n", 4, "--weights", wfile])
    assert data_files(out) == data_files(tmp_path / "out2")


def test_unknown_weight_category_is_an_error_naming_it(corpus, tmp_path):
    d, _ = corpus
    out = tmp_path / "out"
    res = run([d / "news.jsonl", "-o", out, "-n", 2, "--weights", "news=2,zh=3,en=0.5"], expect=1)
    assert "en, zh" in res.output and "categories found: news" in res.output
    assert not out.exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written left behind
    res = run([d / "news.jsonl", "-o", out, "-n", 2, "--weights", "news"], expect=2)
    assert "name=weight" in res.output
    res = run([d / "news.jsonl", "-o", out, "-n", 2, "--weights", "news=-1"], expect=2)
    assert ">= 0" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"news": 2,\n "x": }')
    res = run([d / "news.jsonl", "-o", out, "-n", 2, "--weights", bad], expect=2)
    assert f"{bad}:2" in res.output


def test_same_seed_is_byte_identical_other_seed_reorders_with_same_counts(corpus, tmp_path):
    d, _ = corpus
    inputs = sorted(d.glob("*.jsonl"))
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run([*inputs, "-o", tmp_path / name, "-n", 5, "--seed", seed])
    a, b, c = (data_files(tmp_path / x) for x in "abc")
    assert a == b
    ma, mc = (json.loads(x["manifest.json"]) for x in (a, c))
    strip = lambda m: [{k: v for k, v in bk.items() if k != "sha256"} for bk in m["buckets"]]  # noqa: E731
    assert strip(ma) == strip(mc)
    assert all(x["sha256"] != y["sha256"] for x, y in zip(ma["buckets"], mc["buckets"]))
    assert sorted(a["bucket-00000.jsonl"].splitlines()) != sorted(c["bucket-00000.jsonl"].splitlines())


def test_no_shuffle_keeps_input_order_and_default_category(data_dir, tmp_path):
    out = tmp_path / "out"
    neg = data_dir / "reviews_neg_head.txt"   # plain text: no category at all
    run([neg, "-o", out, "-n", 3, "--no-shuffle", "--default-category", "misc"])
    m = check_manifest(out, 3)
    assert m["default_category"] == "misc" and m["categories"] == {"misc": {"weight": 1, "before": 300, "after": 300}}
    texts = [r["text"] for rows in read_buckets(out) for r in rows]
    assert texts == [r.text for r in iter_records([str(neg)], fmt="text")]  # contiguous bins, input order


def test_category_by_file_for_uncategorised_inputs(data_dir, tmp_path):
    out = tmp_path / "out"
    run([data_dir / "reviews_pos_head.txt", data_dir / "reviews_neg_head.txt", "-o", out, "-n", 4,
         "--category-by-file", "--weights", "reviews_neg_head=0.5"])
    m = check_manifest(out, 4, field="__none__")
    assert m["category_by_file"] is True
    assert {c: (v["before"], v["after"]) for c, v in m["categories"].items()} == {
        "reviews_pos_head": (300, 300), "reviews_neg_head": (300, 150)}
    assert [b["categories"] for b in m["buckets"]] == [{"reviews_neg_head": 38, "reviews_pos_head": 75}] * 2 + [
        {"reviews_neg_head": 37, "reviews_pos_head": 75}] * 2


def test_category_field_and_clean_output_folder_as_input(corpus, tmp_path):
    d, valid = corpus
    clean = tmp_path / "clean-out"   # the layout `corpuskit clean` writes
    clean.mkdir()
    rows = [{**r, "source": r.pop("category")} for r in map(dict, valid["review_pos"][:20] + valid["news"][:9])]
    (clean / "clean.jsonl").write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    (clean / "rejected.jsonl").write_text('{"reason": "exact_duplicate"}\n')
    report = StageReport("clean", inputs=["x"])
    report.keep(len(rows))
    report.write(clean)
    out = tmp_path / "out"
    run([clean, "-o", out, "-n", 3, "--category-field", "source"])
    m = check_manifest(out, 3, field="source")
    assert m["inputs"] == [str(clean / "clean.jsonl")]
    assert {c: v["before"] for c, v in m["categories"].items()} == {"review_pos": 20, "news": 9}
    assert [b["categories"]["news"] for b in m["buckets"]] == [3, 3, 3]


def test_refuses_to_replace_a_folder_it_did_not_write(corpus, tmp_path):
    d, _ = corpus
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    res = run([d / "news.jsonl", "-o", precious, "-n", 2], expect=1)
    assert "not written by corpuskit" in res.output and (precious / "notes.txt").read_text() == "keep me"
    res = run([tmp_path / "missing.jsonl", "-o", tmp_path / "o", "-n", 2], expect=1)
    assert "missing.jsonl: no such file" in res.output


def test_truncated_input_is_rejected_not_lost(data_dir, tmp_path):
    out = tmp_path / "out"
    run([data_dir / "sharegpt_truncated_tail.json", "-o", out, "-n", 2])
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"input": 3, "kept": 2, "rejected": {"parse_error": 1}}
    rej = json.loads((out / "rejected.jsonl").read_text())
    assert rej["origin"]["line"] == 44 and "cut off" in rej["message"]


def test_plan_invariants_over_many_sizes():
    """The planner alone, over random sizes: exact bins, one-record proportions, seed-independent counts."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        n_cat, n = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        counts = rng.integers(0, 60, size=n_cat)
        category_of = rng.permutation(np.repeat(np.arange(n_cat), counts))
        names = [f"c{i}" for i in range(n_cat)]
        weights = {names[0]: Fraction(rng.integers(0, 7), 2)}
        p1 = plan_buckets(category_of, names, n, seed=trial, weights=weights)
        p2 = plan_buckets(category_of, names, n, seed=trial + 1000, weights=weights)
        sizes = [p1.bucket_size(b) for b in range(n)]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == [p2.bucket_size(b) for b in range(n)]
        seen = np.concatenate([p1.bucket_items(b) for b in range(n)])
        for c in p1.categories:
            assert all(abs(c.sizes[b] - c.after / n) < 1 for b in range(n))
            assert c.after == int(Fraction(c.before) * c.weight + Fraction(1, 2))
        assert seen.size == sum(c.after for c in p1.categories)
        dropped = p1.downsampled()
        assert np.intersect1d(seen, dropped).size == 0
        assert np.union1d(seen, dropped).size == category_of.size


def test_help_has_examples_and_bucket_imports_no_heavy_library(corpus, tmp_path):
    assert "corpuskit bucket news.jsonl" in run(["--help"]).output
    d, _ = corpus
    code = ("import sys; from click.testing import CliRunner; from corpuskit.cli import main; "
            f"r = CliRunner().invoke(main, ['bucket', {str(d / 'news.jsonl')!r}, '-o', {str(tmp_path / 'o')!r}, '-n', '2']); "
            "assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'deepspeed', 'peft', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_workers_give_byte_identical_output_and_the_same_rejects(corpus, tmp_path, data_dir):
    """Files converted in parallel are spooled in input order: --workers changes nothing but speed."""
    d, _ = corpus
    inputs = [*sorted(d.glob("*.jsonl")), data_dir / "sharegpt_truncated_tail.json"]
    for name, workers in (("w1", 1), ("w3", 3)):
        run([*inputs, "-o", tmp_path / name, "-n", 5, "--weights", "news=0.5,review_pos=1.5", "--workers", workers])
    assert data_files(tmp_path / "w1") == data_files(tmp_path / "w3")  # buckets, manifest, rejected.jsonl
    r1, r3 = (json.loads((tmp_path / n / "report.json").read_text()) for n in ("w1", "w3"))
    assert r1["counts"] == r3["counts"] and r1["examples"] == r3["examples"]
    assert {"parse_error", "downsampled"} <= set(r3["counts"]["rejected"])
    check_manifest(tmp_path / "w3", 5)


def test_workers_report_a_bad_file_as_one_line(corpus, tmp_path):
    d, _ = corpus
    bad = tmp_path / "bad.json"
    bad.write_text('{"text": "not an array"}', encoding="utf-8")
    res = run([d / "news.jsonl", bad, "-o", tmp_path / "out", "-n", 2, "--workers", 2], expect=1)
    assert res.output.startswith(f"Error: {bad}") and "Traceback" not in res.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("spec,message", [("news=1e400", ">= 0 and <= 1000"), ("news=1001", ">= 0 and <= 1000"),
                                          ("news=inf", "is not a number")])
def test_absurd_weights_are_a_clear_error(corpus, tmp_path, spec, message):
    d, _ = corpus
    res = run([d / "news.jsonl", "-o", tmp_path / "o", "-n", 2, "--weights", spec], expect=2)
    assert f"weight for 'news' {message}" in res.output or f"weight for 'news' must be {message}" in res.output
