"""Records/s of `corpuskit validate --schema sft` vs `check-jsonschema` on the same real records.

Input: the full ShareGPT V3 file converted to canonical SFT by `corpuskit convert` (11,130
records), repeated --repeat times (default 9: ~100k records, ~600 MB). check-jsonschema validates
one JSON document per file, so it gets the records as one JSON array with the wrapper schema
{"type": "array", "items": <sft schema>} built from schemas/sft.schema.json (same rules, same
$defs). That is the fair set-up: one file per record would mostly measure its start-up, and
corpuskit is timed on the same JSON array too, besides the jsonl form it is meant for.
corpuskit does strictly more work: it also checks turn order in code, which the schema cannot.

    .venv/bin/python bench/bench_validate.py [--repeat 9] [--runs 1] [--sharegpt PATH]

Prints a table and writes bench/out/validate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_data

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SHAREGPT = bench_data.SHAREGPT


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU (user + sys of the child) is less noisy on a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare(work: Path, sharegpt: Path, repeat: int) -> tuple[Path, Path, Path, int]:
    one = work / "chats1.jsonl"
    subprocess.run([str(BIN / "corpuskit"), "convert", str(sharegpt), "-o", str(one), "--to", "sft"],
                   check=True, capture_output=True)
    lines = one.read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines(): records hold U+2028 etc.
    jsonl, array = work / "chats.jsonl", work / "chats.json"
    with open(jsonl, "w", encoding="utf-8") as fh:
        for _ in range(repeat):
            fh.write("\n".join(lines) + "\n")
    with open(array, "w", encoding="utf-8") as fh:
        fh.write("[\n" + ",\n".join(",\n".join(lines) for _ in range(repeat)) + "\n]\n")
    sft = json.loads((ROOT / "schemas" / "sft.schema.json").read_text(encoding="utf-8"))
    wrapper = {"$schema": sft["$schema"], "type": "array",
               "items": {k: v for k, v in sft.items() if k not in ("$schema", "$defs")}, "$defs": sft["$defs"]}
    schema = work / "sft-array.schema.json"
    schema.write_text(json.dumps(wrapper), encoding="utf-8")
    return jsonl, array, schema, len(lines) * repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=9, help="copies of the 11,130 converted records")
    ap.add_argument("--runs", type=int, default=1, help="runs per command; the fastest counts")
    ap.add_argument("--sharegpt", type=Path, default=SHAREGPT)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    try:
        jsonl, array, schema, n = prepare(work, args.sharegpt, args.repeat)
        corpuskit = [str(BIN / "corpuskit"), "validate", "--schema", "sft"]
        cases = {
            "corpuskit validate (jsonl)": corpuskit + [str(jsonl)],
            "corpuskit validate (JSON array)": corpuskit + [str(array)],
            "check-jsonschema (JSON array)": [str(BIN / "check-jsonschema"), "--schemafile", str(schema), str(array)],
        }
        timings = {name: min(timed(cmd) for _ in range(args.runs)) for name, cmd in cases.items()}
        size_mb = jsonl.stat().st_size / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base_wall, base_cpu = timings["check-jsonschema (JSON array)"]
    rows = [{"tool": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "records_per_cpu_s": round(n / cpu),
             "speedup_wall": round(base_wall / wall, 1), "speedup_cpu": round(base_cpu / cpu, 1)}
            for name, (wall, cpu) in timings.items()]
    result = {"records": n, "megabytes": round(size_mb, 1), "repeat": args.repeat, "runs": args.runs,
              "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
                         f"load average {os.getloadavg()[0]:.1f}",
              "command": f".venv/bin/python bench/bench_validate.py --repeat {args.repeat} --runs {args.runs}",
              "results": rows}
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "validate.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{n} valid SFT records ({size_mb:.0f} MB as jsonl); {result['machine']}")
    print("| tool | wall s | CPU s | records per CPU s | speed-up (wall) | speed-up (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['tool']} | {r['wall_s']} | {r['cpu_s']} | {r['records_per_cpu_s']:,} | "
              f"{r['speedup_wall']}x | {r['speedup_cpu']}x |")


if __name__ == "__main__":
    main()
