"""The disk near-dup path together with what `clean` does besides near-dups: default (Chinese-aware)
filters, preference records (deduplicated on their prompt, filtered on each reply), per-category
counts, unreadable and over-size records. Memory and disk paths must agree byte for byte.

Real text from tests/data (reviews, People's Daily, ShareGPT answers); the near copies, the
preference pairing and the two broken lines are built here, as the comments say.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from corpuskit.clean.config import load_config
from corpuskit.clean.minhash import shingle_hashes
from corpuskit.clean.normalize import normalize
from preference_data import QUESTION, VERDICT, reviews, sharegpt_qa
from test_neardup_ooc import lines, near_copy, run

pytestmark = pytest.mark.xdist_group("clean")


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory, data_dir) -> tuple[Path, list[tuple[str, str]]]:
    """The corpus file, and (original question, near copy) of every preference near copy."""
    rng = random.Random(5)
    out = []
    news = [t for t in lines(data_dir / "peoples_daily_199801_head.txt") if 30 <= len(t) <= 2000]
    for t in news:
        out.append({"text": t, "category": "news"})
    for t in rng.sample(news, len(news) // 4):  # reposts with a few edits, after the original
        out.insert(rng.randrange(out.index({"text": t, "category": "news"}) + 1, len(out) + 1),
                   {"text": near_copy(t, rng.randrange(1, 8), rng), "category": "news"})
    # preference pairs: a real review as the question; each near copy of a question gets other
    # replies (real ShareGPT answers), so only a comparison of prompts finds it
    answers = [a for _, a in sharegpt_qa(60)]
    seen = set()
    pairs, copies = [], []
    for text, positive in reviews(200):
        if len(text) >= 40 and text not in seen:
            seen.add(text)
            pairs.append({"messages": [{"role": "user", "content": QUESTION + text}], "chosen": VERDICT[positive],
                          "rejected": VERDICT[not positive], "category": "prefs"})
    for k, p in enumerate(rng.sample(pairs, len(pairs) // 3)):
        prompt = QUESTION + near_copy(p["messages"][0]["content"][len(QUESTION):], rng.randrange(1, 5), rng)
        pairs.append({"messages": [{"role": "user", "content": prompt}], "chosen": answers[k % len(answers)],
                      "rejected": answers[(k + 1) % len(answers)], "category": "prefs"})
        copies.append((p["messages"][0]["content"], prompt))
    out += pairs
    src = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out)
    big = json.dumps({"text": "　".join(news) * 3, "category": "news"}, ensure_ascii=False)  # > the 64K limit below
    src.write_text(body + "{not json\n" + big + "\n", encoding="utf-8")
    return src, copies


def prompt_jaccard(a: str, b: str) -> float:
    """Exact Jaccard of the character 5-gram sets of two questions, normalised as `clean` does."""
    norm = load_config("default").normalize
    sa, sb = (set(shingle_hashes(normalize(t, norm), 5).tolist()) for t in (a, b))
    return len(sa & sb) / len(sa | sb)


def test_disk_path_keeps_every_clean_feature(mixed_corpus, tmp_path):
    mixed_corpus, copies = mixed_corpus
    outs = {}
    for name, extra in {"memory": ["--memory", "64G"], "disk": ["--memory", "1K"],
                        "disk_w2": ["--memory", "1K", "--workers", "2"]}.items():
        outs[name] = tmp_path / name
        run("clean", mixed_corpus, "-o", outs[name], "--max-record-bytes", "64K", *extra)
    reports = {k: json.loads((o / "report.json").read_text(encoding="utf-8")) for k, o in outs.items()}
    for other in ("disk", "disk_w2"):
        for name in ("clean.jsonl", "rejected.jsonl"):
            assert (outs[other] / name).read_bytes() == (outs["memory"] / name).read_bytes(), (other, name)
        # counts, per-filter rule counts and examples, scripts, per-category rows: all the same
        # (the dedup section says which path ran, so it differs)
        assert reports[other]["counts"] == reports["memory"]["counts"]
        assert ({k: v for k, v in reports[other]["details"].items() if k != "dedup"} ==
                {k: v for k, v in reports["memory"]["details"].items() if k != "dedup"})
    assert reports["memory"]["details"]["dedup"]["path"] == "memory"

    counts, details = reports["disk"]["counts"], reports["disk"]["details"]
    assert counts["input"] == sum(1 for _ in mixed_corpus.open(encoding="utf-8"))
    assert counts["input"] == counts["kept"] + sum(counts["rejected"].values())
    dedup = details["dedup"]
    assert dedup["path"] == "disk" and dedup["verify_pass"] and dedup["accepted_by_exact_jaccard"] > 0
    by_cat = details["by_category"]
    assert sum(c["input"] for c in by_cat.values()) == counts["input"]
    assert sum(c["kept"] for c in by_cat.values()) == counts["kept"]
    assert by_cat["(unreadable)"]["rejected"] == {"parse_error": 1, "record_too_large": 1}
    for cat in ("news", "prefs"):
        assert by_cat[cat]["rejected"].get("near_duplicate", 0) > 10, (cat, by_cat[cat])

    # the near copies of questions have replies unlike their originals': dropping them was the prompt's doing
    rejected = [json.loads(s) for s in (outs["disk"] / "rejected.jsonl").read_text(encoding="utf-8").splitlines()]
    pref_dups = [r for r in rejected if r["reason"] == "near_duplicate" and r["record"].get("category") == "prefs"]
    assert sum(r["record"]["chosen"] not in VERDICT.values() for r in pref_dups) > 10
    kept = [json.loads(s) for s in (outs["disk"] / "clean.jsonl").read_text(encoding="utf-8").splitlines()]
    assert counts["kept"] == len(kept) and {"news", "prefs"} <= {r.get("category") for r in kept}

    # truth for the questions: a near copy at or above the threshold (exact Jaccard of the prompts,
    # whatever its replies) goes whenever its original stayed; some of them are borderline, so this
    # also checks the verify pass compares prompts, not prompts and replies
    kept_prompts = {r["messages"][0]["content"] for r in kept if r.get("category") == "prefs"}
    over = [(o, c) for o, c in copies if o in kept_prompts and prompt_jaccard(o, c) >= 0.8]
    assert len(over) > 10 and not [c for _, c in over if c in kept_prompts]
