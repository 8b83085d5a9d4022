"""clean's write pass runs as engine tasks over the same splits as pass 1 (corpuskit/clean/write.py).

Its outputs are covered byte for byte across workers, split sizes and Ray by test_engine_clean.py;
here: a file that changes between the passes (grows, shrinks, a line shifted or rewritten) fails with
one clear line naming it, and leaves no output, whatever the engine's workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main


def make_input(tmp_path: Path, data_dir: Path) -> Path:
    """Real reviews with exact and near copies, so all three kinds of item (rejected in pass 1, kept,
    near-duplicate) are in every split."""
    lines = (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines()[:120]
    out = []
    for k, text in enumerate(lines):
        out.append(json.dumps({"text": text}, ensure_ascii=False))
        if k % 10 == 3:
            out.append(json.dumps({"text": text}, ensure_ascii=False))  # exact copy
        if k % 10 == 6 and len(text) > 40:
            out.append(json.dumps({"text": text[:20] + "。" + text[21:]}, ensure_ascii=False))  # near copy
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


EDITS = {
    "appended": lambda lines: lines + [json.dumps({"text": "一条新评论，在两遍读取之间加上"}, ensure_ascii=False)],
    "truncated": lambda lines: lines[:-5],
    "shifted": lambda lines: [lines[0], ""] + lines[1:],
    "rewritten": lambda lines: lines[:50] + ['{"text": "cut off'] + lines[51:],
}


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_input_changed_between_the_passes_is_one_clear_error(tmp_path, data_dir, monkeypatch, edit, workers):
    import corpuskit.clean.pipeline as pipeline

    path = make_input(tmp_path, data_dir)
    real_pass_one = pipeline._pass_one

    def pass_one_then_edit(*args, **kwargs):
        counts = real_pass_one(*args, **kwargs)
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join(EDITS[edit](lines)) + "\n", encoding="utf-8")
        return counts

    monkeypatch.setattr(pipeline, "_pass_one", pass_one_then_edit)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["clean", str(path), "-o", str(out), "--filters", "none", "--workers", workers,
                                    "--split-size", "4K"])
    assert res.exit_code == 1, res.output
    assert "input changed while clean was running" in res.output and str(path) in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def same_outputs(path: Path, tmp_path: Path, *variants: list[str]) -> list[Path]:
    """`clean --filters none` once per variant of options; checks every run wrote the same
    clean.jsonl and rejected.jsonl and returns the output folders."""
    outs = []
    for extra in variants:
        out = tmp_path / f"out{len(outs)}"
        res = CliRunner().invoke(main, ["clean", str(path), "-o", str(out), "--filters", "none", *extra])
        assert res.exit_code == 0, res.output
        outs.append(out)
    for name in ("clean.jsonl", "rejected.jsonl"):
        assert len({(o / name).read_bytes() for o in outs}) == 1, name
    return outs


def test_write_pass_output_equals_a_single_split_run(tmp_path, data_dir):
    """Many 1K splits (each with rejects, kept records and near copies interleaved) against one split:
    the same bytes, and the counts add up."""
    path = make_input(tmp_path, data_dir)
    outs = same_outputs(path, tmp_path, ["--split-size", "1G"], ["--split-size", "1K", "--workers", "2"])
    report = json.loads((outs[1] / "report.json").read_text(encoding="utf-8"))
    rejected = report["counts"]["rejected"]
    assert rejected.get("exact_duplicate", 0) >= 10 and rejected.get("near_duplicate", 0) >= 5
    n_in = len(path.read_text(encoding="utf-8").splitlines())
    assert report["counts"]["input"] == n_in == report["counts"]["kept"] + sum(rejected.values())
    kept = (outs[1] / "clean.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(kept) == report["counts"]["kept"]


def borderline_corpus(tmp_path: Path, near_threshold_copies) -> Path:
    """The real reviews, then their copies near the threshold: the verify pass runs."""
    real, copies = near_threshold_copies
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in real + copies),
                    encoding="utf-8")
    return path


def test_verify_pass_on_the_engine_gives_the_same_decisions(tmp_path, near_threshold_copies):
    path = borderline_corpus(tmp_path, near_threshold_copies)
    outs = same_outputs(path, tmp_path, ["--split-size", "1G"], ["--split-size", "2K", "--workers", "2"])
    dedup = [json.loads((o / "report.json").read_text(encoding="utf-8"))["details"]["dedup"] for o in outs]
    assert dedup[0]["verify_pass"] is True and dedup[0]["accepted_by_exact_jaccard"] > 0
    for key in ("borderline_pairs", "accepted_by_exact_jaccard", "max_records_held_for_verification"):
        assert dedup[0][key] == dedup[1][key], key


def test_input_changed_before_the_verify_pass_is_one_clear_error(tmp_path, near_threshold_copies, monkeypatch):
    import corpuskit.clean.pipeline as pipeline

    path = borderline_corpus(tmp_path, near_threshold_copies)
    real_resolve = pipeline._resolve_borderline

    def edit_then_resolve(*args, **kwargs):
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_text("\n".join(lines[:45] + ['{"text": "cut off'] + lines[46:]) + "\n", encoding="utf-8")
        return real_resolve(*args, **kwargs)

    def write_pass_reached(*args, **kwargs):
        raise AssertionError("the verify pass should have seen the change")

    monkeypatch.setattr(pipeline, "_resolve_borderline", edit_then_resolve)
    monkeypatch.setattr(pipeline.WritePass, "jobs", write_pass_reached)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["clean", str(path), "-o", str(out), "--filters", "none", "--split-size", "2K"])
    assert res.exit_code == 1, res.output
    assert f"{path}:46: input changed while clean was running" in res.output
    assert not out.exists()
