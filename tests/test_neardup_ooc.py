"""Near-duplicates past one machine's memory: the disk path (sorted runs, sort-merge join,
union-find over int arrays) must remove exactly what the in-memory path removes.

Real text from tests/data; near copies are built on the fly from real lines (and say so). The
disk path is forced with a tiny `--memory`, which also makes it spill many small runs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from corpuskit.cli import main
from corpuskit.clean.minhash import (FormBatch, MinHashParams, NearDupIndex, Signer, band_key_matrix, batch_token_ids,
                                     ngram_hashes, shingle_hashes)
from corpuskit.clean.neardup_disk import (BandRuns, DiskNearDup, MemoryBudget, PairRuns, UnionFind, band_pairs,
                                          parse_size)
from corpuskit.clean.normalize import dedup_form

pytestmark = pytest.mark.xdist_group("clean")


def run(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def lines(path: Path) -> list[str]:
    return [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


def real_texts(data_dir: Path) -> list[str]:
    """Reviews, People's Daily lines and ShareGPT turns, as they are in tests/data."""
    texts = lines(data_dir / "reviews_pos_head.txt") + lines(data_dir / "reviews_neg_head.txt")
    texts += lines(data_dir / "peoples_daily_199801_head.txt")
    for conv in json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8")):
        texts += [t["value"] for t in conv.get("conversations", []) if t.get("value")]
    return texts


def near_copy(text: str, edits: int, rng: random.Random) -> str:
    """A repost: half-width punctuation, then `edits` random character substitutions/deletions."""
    t = text.translate(str.maketrans({"，": ",", "。": ".", "！": "!", "？": "?", "：": ":"}))
    chars = list(t)
    for _ in range(edits):
        i = rng.randrange(len(chars))
        if rng.random() < 0.5:
            chars[i] = rng.choice(chars)
        elif len(chars) > 1:
            del chars[i]
    return "".join(chars)


# ---- batched forms and hashes = the per-text reference ----------------------------------------

def test_batched_dedup_forms_equal_dedup_form(data_dir):
    texts = real_texts(data_dir)
    rng = random.Random(0)
    # characters the lookup tables must not map on their own: combining marks, Hangul jamo,
    # characters outside the BMP, expansions (ß, ﬁ, …, ㍇), odd spaces; built on the fly
    alphabet = ["a", "É", "e\u0301", "\u1100\u1161\u11a8", "한", "😀", "𠀀", "ß", "ﬁ", "…", "\u3347", "，", "Ａ",
                " ", "\t", "\n", "\u00a0", "\u3000", "\u2003", "\u0345", "\u0bbe", "ﾟ"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))) for _ in range(400)]
    texts += ["", " ", "  x  ", "\u00a0", "ab"]
    forms = FormBatch(texts)
    assert forms.strings() == [dedup_form(t) for t in texts]


@pytest.mark.parametrize("shingle,ngram", [("char", 5), ("char", 1), ("word", 3)])
def test_batched_ngram_hashes_equal_shingle_hashes(data_dir, shingle, ngram):
    texts = real_texts(data_dir)[:400] + ["", "短", "abcd"]
    hashes, off = ngram_hashes(*batch_token_ids(FormBatch(texts), shingle), ngram)
    for k, text in enumerate(texts):
        top = np.unique((hashes[off[k]:off[k + 1]] >> np.uint64(32)).astype(np.uint32))
        assert np.array_equal(top, shingle_hashes(text, ngram, shingle)), text


def test_rensa_signatures_batch_equals_single_and_track_jaccard(data_dir):
    texts = lines(data_dir / "reviews_pos_head.txt")[1:40]
    copies = [near_copy(t, 2, random.Random(k)) for k, t in enumerate(texts)]
    signer = Signer(MinHashParams(num_perm=256))
    batch = signer.signatures(FormBatch(texts + copies))
    assert batch.shape == (2 * len(texts), 256)
    assert np.array_equal(batch[3], signer.signature(texts[3]))
    errors = []
    for k, (a, b) in enumerate(zip(texts, copies)):
        sa, sb = set(shingle_hashes(a, 5).tolist()), set(shingle_hashes(b, 5).tolist())
        errors.append(float(np.mean(batch[k] == batch[len(texts) + k])) - len(sa & sb) / len(sa | sb))
    assert max(map(abs, errors)) < 0.12 and abs(np.mean(errors)) < 0.03


# ---- the pieces of the disk path ------------------------------------------------------------

def test_union_find_matches_a_reference_and_roots_are_smallest_ids():
    rng = np.random.default_rng(5)
    n = 3000
    a, b = rng.integers(0, n, 2500), rng.integers(0, n, 2500)
    uf = UnionFind(n)
    for s in range(0, len(a), 700):  # several batches, as pairs arrive
        uf.union_many(a[s:s + 700], b[s:s + 700])
    roots = uf.flatten()
    ref = list(range(n))

    def find(x):
        while ref[x] != x:
            x = ref[x]
        return x

    for x, y in zip(a.tolist(), b.tolist()):
        rx, ry = find(x), find(y)
        ref[max(rx, ry)] = min(rx, ry)
    assert roots.tolist() == [find(x) for x in range(n)]
    assert uf.parent.dtype == np.int32


def test_band_pairs_equal_all_pairs_of_equal_keys():
    rng = np.random.default_rng(1)
    keys = np.concatenate([rng.integers(0, 40, 300), np.full(700, 99)]).astype(np.uint64)  # one bucket > 512
    ids = np.arange(len(keys), dtype=np.uint32)
    order = np.argsort(keys, kind="stable")
    got = np.sort(np.concatenate(list(band_pairs(keys[order], ids[order], block=5000))))
    ref = sorted((i << 32) | j for i in range(len(keys)) for j in range(i + 1, len(keys)) if keys[i] == keys[j])
    assert got.tolist() == ref


def test_runs_spill_and_merge_back_in_key_ranges(tmp_path):
    rng = np.random.default_rng(2)
    n, bands = 5000, 3
    keys = rng.integers(0, 2**64 - 1, (n, bands), dtype=np.uint64)
    keys[100:110] = keys[4000]  # a few shared keys across runs
    runs = BandRuns(tmp_path, bands, buffer_records=700)
    for s in range(0, n, 333):
        runs.add(s, keys[s:s + 333])
    runs.flush()
    assert len(runs.runs) > 5 and runs.records == n
    for band in range(bands):
        got_k, got_i = [], []
        for lo in range(0, 4096, 1000):
            k, i = runs.band_range(band, lo, min(4096, lo + 1000))
            got_k.append(k)
            got_i.append(i)
        order = np.lexsort((np.arange(n), keys[:, band]))
        assert np.array_equal(np.concatenate(got_k), keys[order, band])
        assert np.array_equal(np.concatenate(got_i), order.astype(np.uint32))
    pairs = PairRuns(tmp_path, n, buffer_pairs=1024)
    packed = (rng.integers(0, n, 9000).astype(np.uint64) << np.uint64(32)) | rng.integers(0, n, 9000).astype(np.uint64)
    for s in range(0, len(packed), 500):
        pairs.add(packed[s:s + 500])
    merged = np.concatenate(list(pairs.merged(cells_per_read=300)))
    assert len(pairs.runs) > 3 and np.array_equal(merged, np.unique(packed))


def test_disk_index_decides_like_the_in_memory_index(tmp_path, data_dir):
    """Signatures of real text plus near copies (edits on both sides of the threshold) go
    through both indexes: same candidate pairs, same estimate decisions, same clusters after
    the exact check of borderline pairs."""
    rng = random.Random(7)
    base = [t for t in real_texts(data_dir) if 60 <= len(t) <= 2000][:500]
    docs = list(base) + [near_copy(t, rng.randrange(1, 6), rng) for t in base[:250]]
    rng.shuffle(docs)
    params = MinHashParams(threshold=0.8)
    sigs = Signer(params).signatures(FormBatch(docs))
    mem = NearDupIndex(params)
    for s in sigs:
        mem.add(s)
    disk = DiskNearDup(params, tmp_path / "nd", buffer_bytes=1 << 16)
    for s in range(0, len(docs), 97):
        disk.add_batch(sigs[s:s + 97])
    disk.finish()
    assert disk.disk["band_runs"] > 3 and disk.disk["pair_runs"] >= 1
    for key in ("lsh_candidate_pairs", "accepted_by_estimate", "borderline_pairs"):
        assert disk.stats[key] == mem.stats[key] > 0, key
    for index in (mem, disk):
        resolver = index.resolver()
        for i, d in enumerate(docs):
            if resolver.wants(i):
                resolver.feed(i, shingle_hashes(d, params.ngram))
    roots_mem = [mem.find(i) for i in range(len(docs))]
    roots_disk = [disk.find(i) for i in range(len(docs))]
    assert roots_disk == roots_mem and sum(r != i for i, r in enumerate(roots_mem)) > 40
    for i, r in enumerate(roots_mem):
        if r != i:
            assert disk.similarity(i, r) == mem.similarity(i, r)
    disk.close()
    assert not list((tmp_path / "nd").glob("*.bin"))  # runs and signatures are deleted once used


def test_memory_sizes_parse():
    assert parse_size("512M") == 512 << 20 and parse_size("2G") == 2 << 30 and parse_size("1.5GiB") == 3 << 29
    assert MemoryBudget.parse("auto").allows(1000) == (400 << 20) + 300_000
    for bad in ("", "abc", "-1G", "0", "3Q"):
        with pytest.raises(ValueError):
            parse_size(bad)


# ---- through the CLI: both paths forced, identical removals -------------------------------------

@pytest.fixture(scope="module")
def near_copies_corpus(tmp_path_factory, data_dir) -> Path:
    """The real reviews, People's Daily lines and ShareGPT turns, plus near copies (1-12 edits,
    built on the fly) of a third of them placed after their originals, and a few exact reposts."""
    rng = random.Random(11)
    texts = [t for t in real_texts(data_dir) if len(t) >= 20]
    docs = list(texts)
    for t in rng.sample(texts, len(texts) // 3):
        docs.insert(rng.randrange(docs.index(t) + 1, len(docs) + 1), near_copy(t, rng.randrange(1, 12), rng))
    docs += rng.sample(texts, 20)
    src = tmp_path_factory.mktemp("ooc") / "corpus.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return src


def test_disk_and_memory_paths_remove_the_same_records(near_copies_corpus, tmp_path):
    outs = {}
    for name, extra in {"memory": ["--memory", "64G"], "disk": ["--memory", "1K", "--tmp-dir", tmp_path / "scratch"],
                        "disk_w2": ["--memory", "1K", "--workers", "2"]}.items():
        outs[name] = tmp_path / name
        run("clean", near_copies_corpus, "-o", outs[name], "--filters", "none", *extra)
    reports = {k: json.loads((o / "report.json").read_text(encoding="utf-8")) for k, o in outs.items()}
    assert reports["memory"]["details"]["dedup"]["path"] == "memory"
    disk = reports["disk"]["details"]["dedup"]
    assert disk["path"] == "disk" and disk["band_runs"] > 3  # it spilled
    assert disk["borderline_pairs"] > 0 and disk["accepted_by_exact_jaccard"] > 0
    rejected = reports["memory"]["counts"]["rejected"]
    assert rejected["near_duplicate"] > 100 and rejected["exact_duplicate"] >= 20
    for name in ("clean.jsonl", "rejected.jsonl"):
        ref = (outs["memory"] / name).read_bytes()
        assert (outs["disk"] / name).read_bytes() == ref
        assert (outs["disk_w2"] / name).read_bytes() == ref
    assert list((tmp_path / "scratch").iterdir()) == []  # the scratch folder is cleaned up
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_auto_switches_to_disk_when_the_budget_is_exceeded(near_copies_corpus, tmp_path, monkeypatch):
    """A budget that holds the process but not the whole in-memory index: the run starts in
    memory and moves to disk part way, with the same output as a run that never left memory.
    (The process size is pinned to 100 MB so the switch point does not depend on the test run.)"""
    from corpuskit.clean import neardup_disk

    monkeypatch.setattr(neardup_disk, "tree_rss", lambda: 100 << 20)
    out, ref = tmp_path / "auto", tmp_path / "ref"
    run("clean", near_copies_corpus, "-o", out, "--filters", "none", "--dedup", "minhash", "--memory", str(102 << 20))
    run("clean", near_copies_corpus, "-o", ref, "--filters", "none", "--dedup", "minhash", "--memory", "64G")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    dedup = report["details"]["dedup"]
    assert dedup["path"] == "disk" and 256 <= dedup["switched_at_record"] < report["counts"]["input"] - 256
    for name in ("clean.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()


def test_bad_memory_option_is_a_usage_error(near_copies_corpus, tmp_path):
    r = run("clean", near_copies_corpus, "-o", tmp_path / "o", "--memory", "lots", ok=False)
    assert r.exit_code == 2 and "--memory" in r.output and "not a size" in r.output


def test_inputs_past_the_small_size_move_to_disk_by_default(near_copies_corpus, tmp_path, monkeypatch):
    """Past SMALL records the disk path is cheaper too, so a default run moves there (SMALL is
    lowered here so a test-sized input crosses it); output as with the in-memory path."""
    from corpuskit.clean import neardup_disk

    ref = tmp_path / "ref"
    run("clean", near_copies_corpus, "-o", ref, "--filters", "none")
    assert json.loads((ref / "report.json").read_text(encoding="utf-8"))["details"]["dedup"]["path"] == "memory"
    monkeypatch.setattr(neardup_disk, "SMALL", 600)
    out = tmp_path / "out"
    run("clean", near_copies_corpus, "-o", out, "--filters", "none")
    dedup = json.loads((out / "report.json").read_text(encoding="utf-8"))["details"]["dedup"]
    assert dedup["path"] == "disk" and 256 <= dedup["switched_at_record"] <= 600
    for name in ("clean.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()


def test_a_large_calling_process_keeps_small_inputs_in_memory(near_copies_corpus, tmp_path, monkeypatch):
    """clean run in-process by a caller already past the default budget (a notebook, a test
    runner): small inputs keep the in-memory path; an explicit --memory is still obeyed."""
    from corpuskit.clean import neardup_disk

    monkeypatch.setattr(neardup_disk, "tree_rss", lambda: 2 << 30)
    for extra, path in (([], "memory"), (["--memory", "1G"], "disk")):
        out = tmp_path / path
        run("clean", near_copies_corpus, "-o", out, "--filters", "none", *extra)
        assert json.loads((out / "report.json").read_text(encoding="utf-8"))["details"]["dedup"]["path"] == path
