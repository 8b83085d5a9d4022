"""Connected components of near-dup pairs: the Ray large-star / small-star run (corpuskit/clean/
components.py, what `clean --engine ray` uses when the union-find does not fit) against the one-
process `UnionFind`, on the same edge arrays: rounds, seconds, and the ratio.

    .venv/bin/python bench/bench_components.py                 # ~1 M edges, ~2 min on 2 cores
    .venv/bin/python bench/bench_components.py --edges 200000  # quick

Graphs (seeded): `random` = E uniform random pairs over 2E nodes (average degree 1, the critical
point of a random graph: a few components of thousands of nodes with long paths, most small);
`neardup` = the shape clean produces: 10% of n = 10E records are copies of an earlier record at most
3,000 records back, chained copies of copies, and every pair of a cluster's records is a pair (the
LSH finds them all), so E ~ the clusters' pair counts. Ray runs on a two-node cluster on this
machine (ray.cluster_utils.Cluster, 1 CPU per node, as the tests' fixture), edges `ray.put` in
chunks of 65,536 as DiskNearDup streams them; the time covers the puts, every wave and the final
range partitions (ray.wait on all of them), not the cluster start (a warm-up run goes first). The union-find time covers
`UnionFind(n)`, `union_many` and `flatten`. Results: bench/out/components.json, printed as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpuskit.clean.components import EdgeChunks, RayComponents  # noqa: E402
from corpuskit.clean.neardup_disk import UnionFind  # noqa: E402


def random_graph(edges: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    n = 2 * edges
    return rng.integers(0, n, (edges, 2)), n


def neardup_graph(edges: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    n = 10 * edges
    parent = np.arange(n)
    copies = np.sort(rng.choice(np.arange(1, n), n // 10, replace=False))
    parent[copies] = np.maximum(0, copies - rng.integers(1, 3000, len(copies)))
    uf = UnionFind(n)
    uf.union_many(copies, parent[copies])
    roots = uf.flatten().astype(np.int64)
    order = np.argsort(roots, kind="stable")
    r = roots[order]
    starts = np.flatnonzero(np.concatenate(([True], r[1:] != r[:-1])))
    sizes = np.diff(np.append(starts, n))
    out = []
    for s, k in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist()):
        iu, ju = np.triu_indices(k, 1)
        members = order[s:s + k]
        out.append(np.stack((members[iu], members[ju]), axis=1))
    return np.concatenate(out), n


def time_union_find(edges: np.ndarray, n: int) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    uf = UnionFind(n)
    for s in range(0, len(edges), 4096):  # as DiskNearDup joins them, one judged batch at a time
        uf.union_many(edges[s:s + 4096, 0], edges[s:s + 4096, 1])
    roots = uf.flatten()
    return time.perf_counter() - t, roots


def time_ray(edges: np.ndarray, n: int, partitions: int | None) -> tuple[float, int, int, dict]:
    import ray

    t = time.perf_counter()
    sink = EdgeChunks(1 << 16)
    for s in range(0, len(edges), 4096):
        sink.add(edges[s:s + 4096, 0], edges[s:s + 4096, 1])
    cc = RayComponents(partitions=partitions)
    comps = cc.run(sink.flush(), n, sink.total)
    ray.wait(comps.parts, num_returns=len(comps.parts))
    secs = time.perf_counter() - t
    result = {}
    got = np.concatenate([comps.part(r) for r in range(len(comps.parts))])
    result["nodes"], result["roots"] = got[:, 0], got[:, 1]
    return secs, comps.rounds, cc.last_partitions, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--partitions", default="2,8", help="P values for the Ray runs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "components.json"))
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    rng = np.random.default_rng(0)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    rows = []
    try:
        time_ray(*random_graph(20_000, rng), 2)  # warm-up: worker processes start, functions ship
        for name, make in (("random", random_graph), ("neardup", neardup_graph)):
            edges, n = make(args.edges, rng)
            uf_s, roots = time_union_find(edges, n)
            dup = np.flatnonzero(roots != np.arange(n))
            for p in [int(x) for x in args.partitions.split(",")]:
                secs, rounds, parts, res = time_ray(edges, n, p)
                assert np.array_equal(res["nodes"], dup) and np.array_equal(res["roots"], roots[dup]), name
                rows.append({"graph": name, "nodes": n, "edges": len(edges), "non_root_nodes": len(dup),
                             "partitions": parts, "rounds": rounds, "ray_s": round(secs, 2),
                             "union_find_s": round(uf_s, 3), "ratio": round(secs / uf_s, 1)})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "load_1min_at_end": load}, indent=1) + "\n")
    print("\n| graph | nodes | edges | non-root nodes | P | rounds | Ray s | UnionFind s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['graph']} | {r['nodes']:,} | {r['edges']:,} | {r['non_root_nodes']:,} | {r['partitions']} | "
              f"{r['rounds']} | {r['ray_s']} | {r['union_find_s']} | {r['ratio']}x |")
    print(f"\nload (1 min) at the end: {load}")


if __name__ == "__main__":
    main()
