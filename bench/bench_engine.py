"""Engine overhead: the same command on the local engine and on Ray, wall time of the whole command
(Ray's start and stop included), outputs compared byte for byte across every run.

Input: the full ShareGPT V3 set, converted, repeated to each size (MB), read as byte ranges at line
boundaries. Runs, alternating per command and size: local with 2 workers (the reference), Ray on one
node started by the command (2 workers), and a two-node `ray.cluster_utils.Cluster` on this machine
already running (joined with --ray-address). Ray's fixed cost (start, first tasks, stop) is measured
apart, on a 1-record input, so the table can split each Ray run into fixed cost + per-data time.

    .venv/bin/python bench/bench_engine.py --sizes 256,2048 --commands convert,validate,clean

clean runs with its defaults (exact + MinHash near-dup, all filters) only at sizes up to --clean-max-mb
(it costs ~1 ms of CPU per 6 KB ShareGPT record). Results: bench/out/engine/engine.json and a markdown
table on stdout for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bench_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "engine"
CK = str(ROOT / ".venv" / "bin" / "corpuskit")


def digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            if q.name == "report.json":  # timings differ run to run: compare the counts only
                rep = json.loads(q.read_text(encoding="utf-8"))
                h.update(json.dumps(rep.get("counts"), sort_keys=True).encode())
            elif q.name not in ("report.md", ".corpuskit-output.json"):
                h.update(q.read_bytes())
    return h.hexdigest()[:16]


def timed(args: list[str], stdout: Path | None = None) -> float:
    t = time.perf_counter()
    p = subprocess.run([CK, *args], capture_output=True, text=True)
    if p.returncode not in (0, 1):  # validate exits 1 when it finds invalid records; that is a result
        sys.exit(f"corpuskit {' '.join(args)} failed:\n{p.stderr}")
    elapsed = time.perf_counter() - t
    if stdout is not None:
        stdout.write_text(p.stdout, encoding="utf-8")
    return elapsed


def command(name: str, src: Path, work: Path) -> tuple[list[str], list[Path]]:
    """The command line and the outputs to compare."""
    if name == "convert":
        out = work / "converted.jsonl"
        return ["convert", str(src), "-o", str(out)], [out, work / "converted.rejected.jsonl"]
    if name == "validate":  # its JSON report goes to stdout, saved as work/stdout
        return ["validate", str(src), "--format", "json"], [work / "stdout"]
    if name == "clean":
        out = work / "cleaned"
        return ["clean", str(src), "-o", str(out)], [out]
    raise SystemExit(f"unknown command {name}")


def make_input(base: Path, size_mb: int) -> Path:
    big = OUT / f"big-{size_mb}.jsonl"
    if not big.exists():
        chunk = base.read_bytes()
        with open(big, "wb") as fh:
            while fh.tell() < size_mb << 20:
                fh.write(chunk)
    return big


def markdown(res: dict) -> str:
    lines = ["| input | command | local, 2 workers s | Ray 1 node (started) s | vs local | Ray per-data s (minus fixed) | "
             "per-data vs local | Ray 2 nodes (joined) s | vs local | outputs |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['input_mb']:,} MB | {r['command']} | {r['local']} | {r['ray_started']} | "
                     f"{r['ray_started_vs_local']}x | {r['ray_per_data']} | {r['ray_per_data_vs_local']}x | "
                     f"{r['ray_joined']} | {r['ray_joined_vs_local']}x | {'identical' if r['identical'] else 'DIFFER'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256,2048", help="input sizes in MB, comma separated")
    ap.add_argument("--commands", default="convert,validate,clean")
    ap.add_argument("--clean-max-mb", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant (the fastest is kept)")
    args = ap.parse_args()
    bench_data.ensure()
    OUT.mkdir(parents=True, exist_ok=True)
    base = OUT / "sharegpt.jsonl"
    if not base.exists():
        subprocess.run([CK, "convert", str(bench_data.SHAREGPT), "-o", str(base)], check=True, capture_output=True)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    variants = {"local": ["--workers", "2"], "ray_started": ["--engine", "ray", "--workers", "2"],
                "ray_joined": ["--engine", "ray", "--ray-address", cluster.address]}
    res = {"cpus": os.cpu_count(), "load_before": round(os.getloadavg()[0], 2), "rows": []}
    try:
        tiny = OUT / "tiny.jsonl"
        tiny.write_bytes(base.read_bytes().split(b"\n", 1)[0] + b"\n")
        work = OUT / "work"
        fixed = {}
        for name in ("local", "ray_started"):  # Ray's fixed cost: start, first tasks, stop
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            cmd, _ = command("validate", tiny, work)
            fixed[name] = min(timed(cmd + variants[name], work / "stdout") for _ in range(max(2, args.repeat)))
        res["ray_fixed_s"] = round(fixed["ray_started"] - fixed["local"], 2)
        res["tiny_s"] = {k: round(v, 2) for k, v in fixed.items()}
        print(f"Ray fixed cost {res['ray_fixed_s']} s ({res['tiny_s']})", flush=True)
        for size_mb in [int(s) for s in args.sizes.split(",")]:
            big = make_input(base, size_mb)
            for name in args.commands.split(","):
                if name == "clean" and size_mb > args.clean_max_mb:
                    continue
                row = {"input_mb": round(big.stat().st_size / 2**20), "command": name}
                digests = set()
                for rep in range(args.repeat):
                    for variant, extra in variants.items():
                        shutil.rmtree(work, ignore_errors=True)
                        work.mkdir()
                        cmd, outs = command(name, big, work)
                        t = timed(cmd + extra, work / "stdout")
                        row[variant] = round(min(t, row.get(variant, t)), 2)
                        digests.add(digest(outs))
                        print(f"{size_mb} MB {name} {variant}: {t:.2f} s", flush=True)
                local = row["local"]
                row["ray_started_vs_local"] = round(row["ray_started"] / local, 2)
                row["ray_joined_vs_local"] = round(row["ray_joined"] / local, 2)
                row["ray_per_data"] = round(row["ray_started"] - res["ray_fixed_s"], 2)
                row["ray_per_data_vs_local"] = round(row["ray_per_data"] / local, 2)
                row["identical"] = len(digests) == 1
                res["rows"].append(row)
                print(row, flush=True)
    finally:
        cluster.shutdown()
        shutil.rmtree(OUT / "work", ignore_errors=True)
    res["load_after"] = round(os.getloadavg()[0], 2)
    (OUT / "engine.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(markdown(res))
    assert all(r["identical"] for r in res["rows"]), "outputs differ across engines"


if __name__ == "__main__":
    main()
