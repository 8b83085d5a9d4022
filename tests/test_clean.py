"""`corpuskit clean` driven through the CLI on the real samples in tests/data.

Where a test needs a variant that the real data does not contain (an invisible character, a
near-duplicate copy), it builds it on the fly from a real line and says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from corpuskit.cli import main

pytestmark = pytest.mark.xdist_group("clean")


def run(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def outputs(outdir: Path) -> tuple[list[dict], list[dict], dict]:
    return (read_jsonl(outdir / "clean.jsonl"), read_jsonl(outdir / "rejected.jsonl"),
            json.loads((outdir / "report.json").read_text(encoding="utf-8")))


def lines(path: Path) -> list[str]:
    return [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


@pytest.fixture(scope="module")
def canonical(tmp_path_factory, data_dir) -> dict[str, Path]:
    """The ShareGPT sample and People's Daily head converted to canonical jsonl by `corpuskit convert`."""
    d = tmp_path_factory.mktemp("canonical")
    run("convert", data_dir / "sharegpt_sample.json", "-o", d / "chats.jsonl", "--to", "sft")
    run("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", d / "news.jsonl")
    return {"chats": d / "chats.jsonl", "news": d / "news.jsonl"}


@pytest.fixture(scope="module")
def all_inputs(canonical, data_dir) -> list[Path]:
    return [canonical["chats"], canonical["news"], data_dir / "reviews_pos_head.txt",
            data_dir / "reviews_neg_head.txt", data_dir / "sharegpt_truncated_tail.json"]


@pytest.fixture(scope="module")
def default_run(all_inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "default"
    run("clean", *all_inputs, "-o", out)
    return out


def test_counts_reconcile_and_every_record_is_accounted_for(default_run):
    kept, rejected, report = outputs(default_run)
    counts = report["counts"]
    assert counts["input"] == counts["kept"] + sum(counts["rejected"].values())
    assert counts["kept"] == len(kept) and sum(counts["rejected"].values()) == len(rejected)
    # 45 conversations + 400 news paragraphs + 300 + 300 reviews + 2 whole tail records + 1 cut-off record
    # (convert already dropped 22 malformed ShareGPT conversations: clean sees the other 45)
    assert counts["input"] == 45 + 400 + 300 + 300 + 3
    for rej in rejected:
        assert set(rej) >= {"reason", "message", "origin", "record"}
        assert set(rej["origin"]) == {"path", "line"}
    per_filter = report["details"]["filters"]
    for name, c in per_filter.items():
        assert c["rejected"] == sum(n for r, n in counts["rejected"].items() if r.startswith(name + "."))
    assert set(report["timings"]) >= {"pass1", "pass2", "signature", "filter.gopher_quality", "total"}
    md = (default_run / "report.md").read_text(encoding="utf-8")
    assert "exact_duplicate" in md and "parse_error" in md


def test_clean_output_passes_validate(default_run):
    result = run("validate", default_run / "clean.jsonl")
    assert "0 invalid" in result.output


def test_parse_error_is_rejected_with_its_origin(default_run):
    _, rejected, _ = outputs(default_run)
    parse = [r for r in rejected if r["reason"] == "parse_error"]
    assert len(parse) == 1
    assert parse[0]["origin"]["path"].endswith("sharegpt_truncated_tail.json")
    assert "cut off" in parse[0]["message"]


def _content_key(rec: dict) -> str:
    return json.dumps(rec["messages"], ensure_ascii=False) if "messages" in rec else rec.get("text", "")


def test_output_is_canonical_and_in_input_order(default_run, all_inputs):
    kept, _, _ = outputs(default_run)
    # clean.jsonl carries no origin: place each kept record by its content in the inputs (file, line)
    position: dict[str, tuple[int, int]] = {}
    for fi, path in enumerate(all_inputs[:4]):
        for li, line in enumerate(lines(path)):
            rec = json.loads(line) if path.suffix == ".jsonl" else {"text": line.strip()}
            position.setdefault(_content_key(rec), (fi, li))
    placed = [position[_content_key(r)] for r in kept if _content_key(r) in position]
    assert len(placed) >= 0.9 * len(kept)  # most kept records are unchanged by normalisation
    assert len({fi for fi, _ in placed}) >= 3  # and they come from several input files
    assert placed == sorted(placed) and len(set(placed)) == len(placed)  # input order, no repeats
    assert all(set(r) <= {"messages", "text", "source", "target", "category", "id"} for r in kept)


def test_exact_duplicate_in_real_sharegpt(default_run, canonical):
    _, rejected, _ = outputs(default_run)
    exact = [r for r in rejected if r["reason"] == "exact_duplicate" and r["origin"]["path"] == str(canonical["chats"])]
    # conversations 44 and 45 of the converted ShareGPT sample have the same text
    assert [(r["origin"]["line"], r["duplicate_of"]["line"]) for r in exact] == [(45, 44)]
    assert exact[0]["similarity"] == 1.0
    assert exact[0]["record"] == json.loads(lines(canonical["chats"])[44])


def _near_copy(text: str) -> str:
    """Half-width punctuation plus two changed characters: how reposted Chinese reviews differ."""
    table = str.maketrans({"，": ",", "！": "!", "？": "?", "：": ":", "；": ";", "（": "(", "）": ")"})
    t = text.translate(table)
    mid = len(t) // 2
    return t[:mid] + "很" + t[mid + 1:-3] + "了" + t[-2:]


def test_chinese_near_duplicates_by_punctuation_width_and_a_few_characters(tmp_path, data_dir):
    """Builds copies of real reviews on the fly: full-width -> half-width punctuation, 2 characters changed."""
    real = lines(data_dir / "reviews_pos_head.txt")[1:9]
    copies = [_near_copy(t) for t in real]
    assert all(c != t for c, t in zip(copies, real))
    src = tmp_path / "reviews.jsonl"
    src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in real + copies), encoding="utf-8")
    out = tmp_path / "out"
    run("clean", src, "-o", out, "--filters", "none")
    kept, rejected, report = outputs(out)
    assert [r["text"] for r in kept] == real
    assert [r["reason"] for r in rejected] == ["near_duplicate"] * len(copies)
    for i, r in enumerate(rejected):
        assert r["origin"]["line"] == len(real) + i + 1
        assert r["duplicate_of"] == {"path": str(src), "line": i + 1}
        assert 0.8 <= r["similarity"] < 1.0
        assert r["record"] == {"text": copies[i]}
    assert report["details"]["near_duplicate_clusters"] == len(real)
    # without MinHash they are all kept: exact dedup alone does not see them
    run("clean", src, "-o", out, "--filters", "none", "--dedup", "exact")
    assert len(outputs(out)[0]) == 2 * len(real)


def test_width_only_difference_is_an_exact_duplicate(tmp_path, data_dir):
    """Builds a copy of a real review that differs only in punctuation width and spacing."""
    real = lines(data_dir / "reviews_neg_head.txt")[5]
    copy = "  " + real.replace("，", ",").replace("！", "!") + "  "
    src = tmp_path / "two.jsonl"
    src.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in (real, copy)) + "\n", encoding="utf-8")
    run("clean", src, "-o", tmp_path / "out", "--filters", "none")
    kept, rejected, _ = outputs(tmp_path / "out")
    assert len(kept) == 1 and rejected[0]["reason"] == "exact_duplicate"


def test_two_runs_byte_identical_and_workers_do_not_matter(all_inputs, default_run, tmp_path):
    again, two = tmp_path / "again", tmp_path / "two"
    run("clean", *all_inputs, "-o", again)
    run("clean", *all_inputs, "-o", two, "--workers", "2")
    for name in ("clean.jsonl", "rejected.jsonl"):
        ref = (default_run / name).read_bytes()
        assert (again / name).read_bytes() == ref
        assert (two / name).read_bytes() == ref


def test_compact_lsh_index_gives_the_same_output_as_datasketch(tmp_path, data_dir):
    """Near copies of real reviews built on the fly, mixed with the real files."""
    pos = data_dir / "reviews_pos_head.txt"
    copies = tmp_path / "copies.jsonl"
    copies.write_text("".join(json.dumps({"text": _near_copy(t)}, ensure_ascii=False) + "\n"
                              for t in lines(pos)[:60]), encoding="utf-8")
    outs = {}
    for index in ("compact", "datasketch"):
        outs[index] = tmp_path / index
        run("clean", pos, copies, "-o", outs[index], "--filters", "none", "--lsh-index", index, "--threshold", "0.7")
    for name in ("clean.jsonl", "rejected.jsonl"):
        assert (outs["compact"] / name).read_bytes() == (outs["datasketch"] / name).read_bytes()
    reports = [outputs(o)[2]["details"]["dedup"] for o in outs.values()]
    assert reports[0]["lsh_candidate_pairs"] == reports[1]["lsh_candidate_pairs"] > 0


def test_workers_identical_with_near_duplicates_and_jieba(tmp_path, data_dir):
    """Real reviews (which hold many exact reposts) plus near copies of 20 of them built on the fly."""
    pos, neg = data_dir / "reviews_pos_head.txt", data_dir / "reviews_neg_head.txt"
    copies = tmp_path / "copies.jsonl"
    copies.write_text("".join(json.dumps({"text": _near_copy(t)}, ensure_ascii=False) + "\n"
                              for t in lines(pos)[40:60]), encoding="utf-8")
    outs = []
    for w in (1, 2):
        out = tmp_path / f"w{w}"
        run("clean", pos, neg, copies, "-o", out, "--filters", "none", "--workers", w, "--shingle", "jieba", "--ngram", "3")
        outs.append(out)
    assert (outs[0] / "rejected.jsonl").read_bytes() == (outs[1] / "rejected.jsonl").read_bytes()
    assert (outs[0] / "clean.jsonl").read_bytes() == (outs[1] / "clean.jsonl").read_bytes()
    _, rejected, report = outputs(outs[0])
    near = [r for r in rejected if r["reason"] == "near_duplicate"]
    # word 3-grams are stricter than character 5-grams: two edits cost up to 6 shingles
    assert len(near) >= 15 and all(r["duplicate_of"]["path"] == str(pos) for r in near)
    assert report["counts"]["rejected"]["exact_duplicate"] > 0


def test_interrupted_run_leaves_no_complete_looking_output(tmp_path, data_dir, monkeypatch):
    from corpuskit.clean.minhash import NearDupIndex

    real_find = NearDupIndex.find
    seen = {"calls": 0, "partial_bytes": 0}

    def crash_mid_write(self, i):
        seen["calls"] += 1
        if seen["calls"] > 150:  # the write pass has written some records by now (8K splits: ~14 records each)
            partial = [p for p in tmp_path.glob(".out.*.tmp/clean.jsonl")]
            seen["partial_bytes"] = sum(p.stat().st_size for p in partial)
            raise OSError("disk full (simulated)")
        return real_find(self, i)

    monkeypatch.setattr(NearDupIndex, "find", crash_mid_write)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["clean", str(data_dir / "reviews_pos_head.txt"), "-o", str(out),
                                       "--split-size", "8K"])
    assert result.exit_code != 0
    assert seen["partial_bytes"] > 0, "the crash must happen while clean.jsonl is being written"
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temp folder is gone too
    # a crash while replacing an earlier good output leaves that output untouched
    monkeypatch.setattr(NearDupIndex, "find", real_find)
    run("clean", data_dir / "reviews_neg_head.txt", "-o", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    seen["calls"] = 0
    monkeypatch.setattr(NearDupIndex, "find", crash_mid_write)
    assert CliRunner().invoke(main, ["clean", str(data_dir / "reviews_pos_head.txt"), "-o", str(out),
                                     "--split-size", "8K"]).exit_code != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_filters_none_keeps_text_unchanged(tmp_path, canonical):
    out = tmp_path / "out"
    run("clean", canonical["chats"], "-o", out, "--filters", "none", "--dedup", "none")
    kept, rejected, _ = outputs(out)
    assert kept == read_jsonl(canonical["chats"]) and rejected == []


def test_normalisation_strips_invisible_and_control_characters(tmp_path, data_dir):
    """The real samples hold no such characters, so zero-width spaces, a BEL, CRLF and trailing spaces
    are inserted on the fly into a real People's Daily line."""
    real = lines(data_dir / "reviews_pos_head.txt")[1]
    dirty = real[:10] + "\u200b" + real[10:20] + "\x07" + real[20:30] + "\ufeff" + real[30:] + "   \r\n\n\n\nend"
    src = tmp_path / "dirty.jsonl"
    src.write_text(json.dumps({"text": dirty}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    run("clean", src, "-o", out, "--filters", _yaml(tmp_path, {"filters": {"gopher_quality": {"enabled": False},
                                                                           "gopher_repetition": {"enabled": False},
                                                                           "fineweb": {"enabled": False}}}))
    kept, _, report = outputs(out)
    assert kept == [{"text": real + "\n\nend"}]
    assert report["details"]["normalized"] == {"newlines": 1, "strip_control": 1, "strip_invisible": 1, "whitespace": 1}


def test_record_emptied_by_normalisation_is_rejected_not_written(tmp_path, canonical):
    """A real ShareGPT conversation whose second turn is replaced, on the fly, by zero-width spaces
    and control characters: stripping them leaves an empty turn, which no later stage accepts."""
    conv = json.loads(lines(canonical["chats"])[0])
    conv["messages"][1]["content"] = "\u200b\x07\u200b"
    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps(conv, ensure_ascii=False) + "\n" + lines(canonical["chats"])[1] + "\n", encoding="utf-8")
    run("clean", src, "-o", tmp_path / "out", "--filters", _yaml(tmp_path, {"filters": {"length": {"enabled": False}}}))
    kept, rejected, report = outputs(tmp_path / "out")
    assert len(kept) == 1 and [r["reason"] for r in rejected] == ["normalize.emptied"]
    assert rejected[0]["record"] == conv and "turn 1 (assistant)" in rejected[0]["message"]
    normalize = report["details"]["filters"]["normalize"]
    assert {k: normalize[k] for k in ("checked", "rejected", "by_rule")} == {"checked": 2, "rejected": 1, "by_rule": {"emptied": 1}}
    assert normalize["examples"]["emptied"][0]["origin"].endswith("one.jsonl:1")


def _yaml(tmp_path: Path, data: dict, name: str = "filters.yaml") -> Path:
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _only(name: str, top: dict | None = None, **opts) -> dict:
    """A YAML config with one filter enabled (plus normalisation), and top-level keys `top`."""
    from corpuskit.clean.filters import ORDER

    return {**(top or {}),
            "filters": {n: ({"enabled": True, **opts} if n == name else {"enabled": False}) for n in ORDER}}


# Each record judged as a web page (records: pages), as datatrove does: every page rule can fire
# on the one-line news paragraphs and reviews. (The default, paragraphs, is tested in test_clean_zh.py.)
PAGES, PAGES_EN = {"records": "pages"}, {"records": "pages", "script": "en"}


@pytest.mark.parametrize("name,top,opts,inputs,expect", [
    ("length", None, {"min_chars": 20}, ["reviews_neg_head.txt"], {"too_short"}),
    ("gopher_repetition", PAGES_EN, {}, ["news"], {"top_2_gram", "top_3_gram", "duplicated_5_n_grams"}),
    ("gopher_quality", PAGES, {"zh": {"stop_words": ["的", "了", "是", "在", "和", "有", "我", "不", "这"]}},
     ["news", "reviews_pos_head.txt"], {"short_doc", "too_many_end_ellipsis", "not_enough_stop_words"}),
    ("c4", PAGES, {"apply_to": ["pretrain", "sft"]}, ["chats", "news"], {"too_few_sentences", "curly_bracket"}),
    ("fineweb", PAGES_EN, {}, ["news"], {"line_punct_ratio", "short_line_ratio"}),
])
def test_each_filter_on_real_examples(tmp_path, data_dir, canonical, name, top, opts, inputs, expect):
    paths = [canonical[i] if i in canonical else data_dir / i for i in inputs]
    out = tmp_path / "out"
    run("clean", *paths, "-o", out, "--filters", _yaml(tmp_path, _only(name, top, **opts)), "--dedup", "none")
    kept, rejected, report = outputs(out)
    rules = {r["reason"].split(".", 1)[1] for r in rejected}
    assert expect <= rules, rules
    assert all(r["reason"].startswith(name + ".") and r["filter"] == name for r in rejected)
    assert report["details"]["filters"][name]["rejected"] == len(rejected)
    assert kept, f"{name} must not drop everything"


def test_filter_examples_match_their_rules(data_dir):
    """Spot checks on known real lines (People's Daily line 5, real reviews, a dateline)."""
    from corpuskit.clean.doc import Doc
    from corpuskit.clean.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    greeting = "同胞们、朋友们、女士们、先生们："  # People's Daily 1998-01, line 5 without tags
    assert GopherRepetitionFilter().filter(Doc(greeting))[1] == "top_2_gram"
    review = lines(data_dir / "reviews_pos_head.txt")[1]
    assert GopherQualityFilter().filter(Doc(review)) is True
    assert GopherQualityFilter().filter(Doc(lines(data_dir / "reviews_pos_head.txt")[0]))[1] == "short_doc"
    assert FineWebQualityFilter().filter(Doc("新华社北京1月1日电")) [1] == "line_punct_ratio"
    assert GopherQualityFilter().filter(Doc("这是一本好书……"))[1] == "short_doc"


def test_bad_yaml_and_unknown_filter_name_file_and_line(tmp_path, data_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("filters:\n  length: {min_chars: 1\n", encoding="utf-8")
    r = run("clean", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o", "--filters", bad, ok=False)
    assert r.exit_code == 1 and f"{bad}:" in r.output and "invalid YAML" in r.output
    unknown = _yaml(tmp_path, {"filters": {"gopher": {}}}, "unknown.yaml")
    r = run("clean", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o", "--filters", unknown, ok=False)
    assert r.exit_code == 1 and "unknown filter" in r.output and "gopher_quality" in r.output
    typo = _yaml(tmp_path, {"filters": {"length": {"min_char": 3}}}, "typo.yaml")
    r = run("clean", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o", "--filters", typo, ok=False)
    assert "unknown option" in r.output and "min_chars" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("data,expect", [
    ({"filters": {"length": {"min_chars": "abc"}}}, "filters.length.min_chars must be a number or null, got 'abc'"),
    ({"filters": {"gopher_repetition": {"top_n_grams": 5}}}, "filters.gopher_repetition.top_n_grams must be a list of [n, fraction] pairs"),
    ({"filters": {"gopher_quality": {"stop_words": 3}}}, "filters.gopher_quality.stop_words must be a list of strings"),
    ({"filters": {"length": 5}}, "filters.length must be a mapping of options"),
    ({"filters": {"c4": {"enabled": "yes"}}}, "filters.c4.enabled must be true or false"),
    ({"normalize": 3}, "normalize must be a mapping"),
    ({"normalize": {"nfkc": "on"}}, "normalize.nfkc must be true or false"),
])
def test_yaml_option_of_the_wrong_type_names_file_and_key(tmp_path, data_dir, data, expect):
    """Caught at start-up, not as a traceback from inside a filter on the first record."""
    path = _yaml(tmp_path, data)
    r = run("clean", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o", "--filters", path, ok=False)
    assert r.exit_code == 1 and f"Error: {path}: {expect}" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o").exists()


def test_yaml_filter_left_out_keeps_its_default_state(tmp_path, canonical):
    """Setting one option of one filter must not switch on C4 (off by default): same rejects as
    the default preset but for the changed length rule."""
    path = _yaml(tmp_path, {"filters": {"length": {"min_chars": 5}}})
    run("clean", canonical["news"], "-o", tmp_path / "yaml", "--filters", path, "--dedup", "none")
    run("clean", canonical["news"], "-o", tmp_path / "default", "--dedup", "none")
    yaml_rej = outputs(tmp_path / "yaml")[2]["counts"]["rejected"]
    default_rej = outputs(tmp_path / "default")[2]["counts"]["rejected"]
    assert not any(r.startswith("c4.") for r in yaml_rej)
    assert yaml_rej.get("length.too_short", 0) > 0
    # the same rejects as the default, plus the records under 5 characters (none of them rejected by default)
    assert sum(yaml_rej.values()) == sum(default_rej.values()) + yaml_rej["length.too_short"]


def test_bad_input_and_output_are_clear_errors(tmp_path, data_dir):
    r = run("clean", tmp_path / "missing.jsonl", "-o", tmp_path / "o", ok=False)
    assert r.exit_code == 1 and "missing.jsonl: no such file" in r.output
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "notes.txt").write_text("keep me", encoding="utf-8")
    r = run("clean", data_dir / "reviews_pos_head.txt", "-o", user_dir, ok=False)
    assert r.exit_code == 1 and "not written by corpuskit" in r.output
    assert (user_dir / "notes.txt").read_text(encoding="utf-8") == "keep me"
    r = run("clean", data_dir / "reviews_pos_head.txt", "-o", tmp_path / "o", "--dedup", "fuzzy", ok=False)
    assert r.exit_code == 2 and "exact,minhash" in r.output


def test_help_has_an_example():
    r = run("clean", "--help")
    assert "Examples:" in r.output and "corpuskit clean" in r.output and "--threshold" in r.output


def test_signatures_use_datasketch_permutations(data_dir):
    """Our vectorised signature equals datasketch's MinHash (same seed, same scheme) on the same hashes."""
    from datasketch import MinHash
    from datasketch.minhash import _fmix

    from corpuskit.clean.minhash import MinHashParams, Signer, shingle_hashes

    text = lines(data_dir / "reviews_pos_head.txt")[2]
    hashes = shingle_hashes(text, 5)
    ref = MinHash(num_perm=64, seed=7, hashfunc=int)
    ref.update_batch([int(h) for h in hashes])
    ours = Signer(MinHashParams(num_perm=64, seed=7)).signature_from_hashes(_fmix(hashes, 32))
    assert np.array_equal(ours, ref.hashvalues)


def test_estimated_similarity_tracks_true_jaccard(data_dir):
    from corpuskit.clean.minhash import MinHashParams, Signer, shingle_hashes

    signer = Signer(MinHashParams(num_perm=256))
    texts = lines(data_dir / "reviews_pos_head.txt")[1:30]
    for a, b in zip(texts, [_near_copy(t) for t in texts]):
        sa, sb = set(shingle_hashes(a, 5).tolist()), set(shingle_hashes(b, 5).tolist())
        true = len(sa & sb) / len(sa | sb)
        est = float(np.mean(signer.signature(a) == signer.signature(b)))
        assert abs(est - true) < 0.12


def test_pairs_near_the_threshold_are_decided_on_exact_jaccard(tmp_path, near_threshold_copies):
    """Copies of 40 real reviews with 1-8 characters changed (conftest's near_threshold_copies) land
    on both sides of the threshold; each copy must be dropped exactly when its true 5-gram Jaccard is
    >= 0.8."""
    from corpuskit.clean.minhash import shingle_hashes

    real, copies = near_threshold_copies
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in real + copies), encoding="utf-8")
    run("clean", src, "-o", tmp_path / "out", "--filters", "none")
    _, rejected, report = outputs(tmp_path / "out")
    dropped = {r["origin"]["line"] - len(real) - 1 for r in rejected if r["reason"] == "near_duplicate"}

    def jaccard(a, b):
        sa, sb = set(shingle_hashes(a, 5).tolist()), set(shingle_hashes(b, 5).tolist())
        return len(sa & sb) / len(sa | sb)

    truth = {k for k, (a, b) in enumerate(zip(real, copies)) if jaccard(a, b) >= 0.8}
    assert 5 < len(truth) < len(real) - 5  # both sides of the threshold are represented
    assert dropped == truth
    dedup = report["details"]["dedup"]
    assert dedup["borderline_pairs"] > 0 and dedup["verify_pass"] is True


def test_presets_web_adds_c4_and_default_keeps_chats(tmp_path, canonical):
    run("clean", canonical["news"], canonical["chats"], "-o", tmp_path / "web", "--filters", "web")
    run("clean", canonical["news"], canonical["chats"], "-o", tmp_path / "default")
    web, default = outputs(tmp_path / "web")[2], outputs(tmp_path / "default")[2]
    assert web["counts"]["rejected"].get("c4.too_few_sentences", 0) > 0
    assert not any(r.startswith("c4.") for r in default["counts"]["rejected"])
    assert web["counts"]["kept"] < default["counts"]["kept"]
    # web-page rules do not apply to chats by default: only the exact duplicate pair loses a record
    chats_rejected = [r for r in outputs(tmp_path / "default")[1] if r["origin"]["path"] == str(canonical["chats"])]
    assert [r["reason"] for r in chats_rejected] == ["exact_duplicate"]


def test_filters_never_change_text_only_normalisation_does(tmp_path, canonical):
    """All filters on (web preset's rules) but normalisation off: every kept record is its input
    record unchanged, and the report lists no normalisation step."""
    from corpuskit.clean.filters import ORDER

    cfg = _yaml(tmp_path, {"normalize": {"strip_control": False, "strip_invisible": False, "whitespace": False},
                           "filters": {name: {"enabled": True, "apply_to": ["pretrain", "sft"]} for name in ORDER}})
    out = tmp_path / "out"
    run("clean", canonical["news"], canonical["chats"], "-o", out, "--filters", cfg, "--dedup", "none")
    kept, rejected, report = outputs(out)
    inputs = [json.loads(s) for p in (canonical["news"], canonical["chats"]) for s in lines(p)]
    assert kept and rejected
    assert [r for r in inputs if r in kept] == kept  # each kept record is an input record, byte for byte
    assert report["details"]["normalized"] == {} and "normalize" not in report["details"]["filters"]


def test_pass_one_streams_with_bounded_read_ahead(canonical):
    """Pass 1's tasks over a stream the runner reads itself (JSON arrays, .gz) are pulled lazily: the
    engine never reads more than a few tasks ahead of what it has handed on, with or without workers,
    so memory does not grow with the input (real news records, cycled)."""
    import itertools

    from corpuskit.clean.config import default_config
    from corpuskit.clean.steps import CleanSteps, run_clean_task
    from corpuskit.engine import make_executor
    from corpuskit.engine.splits import Split
    from corpuskit.engine.tasks import BATCH, RecordTask
    from corpuskit.ingest import read_file

    news = list(read_file(str(canonical["news"])))
    build = CleanSteps(default_config())
    for workers in (1, 2):
        consumed = 0

        def tasks():
            nonlocal consumed
            items = itertools.cycle(news)
            while True:
                consumed += BATCH
                yield RecordTask(build, Split("<stream>"), tuple(itertools.islice(items, BATCH)))

        with make_executor("local", workers) as ex:
            stream = ex.map(run_clean_task, tasks())
            for k, res in enumerate(stream):
                assert sum(len(b.items) for b in res.batches) == BATCH
                assert consumed <= (k + 1 + 2 * workers) * BATCH
                if k == 6:
                    break
            stream.close()
