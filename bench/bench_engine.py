"""Engine overhead: `convert` and `validate` of one big JSON Lines file (the full ShareGPT V3 set, converted,
repeated to ~SIZE_MB) on the local engine (1 and 2 workers) and on Ray (a local one-node Ray started by the
command, and a two-node `ray.cluster_utils.Cluster` on this machine), wall time including Ray's start.
Output bytes are compared across all runs.

    .venv/bin/python bench/bench_engine.py [SIZE_MB]   (default 600)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import bench_data  # noqa: F401  (fetches the data sets)
from bench_data import SHAREGPT

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "engine"
CK = str(ROOT / ".venv" / "bin" / "corpuskit")


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run([CK, *args], capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"corpuskit {' '.join(args)} failed:\n{p.stderr}")
    return time.perf_counter() - t


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    OUT.mkdir(parents=True, exist_ok=True)
    base = OUT / "sharegpt.jsonl"
    if not base.exists():
        subprocess.run([CK, "convert", str(SHAREGPT), "-o", str(base)], check=True, capture_output=True)
    big = OUT / f"big-{size_mb}.jsonl"
    if not big.exists():
        chunk = base.read_bytes()
        with open(big, "wb") as fh:
            while fh.tell() < size_mb << 20:
                fh.write(chunk)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    runs = {"local, 1 worker": [], "local, 2 workers": ["--workers", "2"],
            "ray, local 1-node (started by the command), 2 workers": ["--engine", "ray", "--workers", "2"],
            "ray, 2-node cluster (joined)": ["--engine", "ray", "--ray-address", cluster.address]}
    rows = []
    try:
        for name, extra in runs.items():
            out = OUT / "out.jsonl"
            t = timed(["convert", str(big), "-o", str(out), *extra])
            tv = timed(["validate", str(big), *extra])
            rows.append({"run": name, "convert_s": round(t, 2), "validate_s": round(tv, 2),
                         "output": digest(out, OUT / "out.rejected.jsonl")})
            print(rows[-1], flush=True)
    finally:
        cluster.shutdown()
    local = rows[0]
    for r in rows:
        r["convert_vs_local1"] = round(r["convert_s"] / local["convert_s"], 2)
        r["validate_vs_local1"] = round(r["validate_s"] / local["validate_s"], 2)
    assert len({r["output"] for r in rows}) == 1, "outputs differ across engines"
    result = {"input_mb": round(big.stat().st_size / 2**20), "cpus": os.cpu_count(),
              "load_before": os.getloadavg()[0], "rows": rows}
    (OUT / "engine.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
