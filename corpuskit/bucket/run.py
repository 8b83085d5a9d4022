"""`bucket()`: inputs -> OUTDIR with exactly N bucket files, manifest.json, rejected.jsonl, report.

Counting, for `input == kept + rejected`: `kept` is the number of input records written to at
least one bucket; `rejected` holds parse/validation rejects and `downsampled` (records a weight
below 1 did not draw). Repeats added by weights above 1 are reported as `added_by_weight`, so
`output records == kept + added_by_weight`.
"""

from __future__ import annotations

import hashlib
import json
import time
from fractions import Fraction
from pathlib import Path

from corpuskit.bucket.plan import BucketPlan, plan_buckets
from corpuskit.bucket.spool import Spool, SpoolReader, write_spool
from corpuskit.bucket.weights import weight_json
from corpuskit.cli_util import progress
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, expand_inputs
from corpuskit.outputs import atomic_dir, atomic_file, dumps, write_json
from corpuskit.records import Rejected
from corpuskit.report import StageReport

MANIFEST_FORMAT = "corpuskit.bucket/1"


class UnknownCategories(ValueError):
    """A weight names a category no input record has (a typo would otherwise be ignored)."""


def bucket_name(i: int) -> str:
    return f"bucket-{i:05d}.jsonl"


def bucket(inputs, outdir, num_buckets: int, seed: int = 42, weights: dict[str, Fraction] | None = None,
           shuffle: bool = True, category_field: str = "category", default_category: str = "default",
           fmt: str = "auto", encoding: str = "utf-8", category_by_file: bool = False,
           workers: int = 1, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, engine: str = "local",
           ray_address: str | None = None, split_bytes: int | None = None) -> tuple[StageReport, dict]:
    """Write the buckets; return the report and the manifest (both also written to `outdir`). Pass 1
    runs on `engine` (spool.write_spool); the plan and the writing stay here, over the whole corpus."""
    weights = weights or {}
    files = expand_inputs(inputs)
    report = StageReport("bucket", inputs=files)
    with atomic_dir(outdir, "bucket") as tmp:
        with atomic_file(tmp / "rejected.jsonl") as rejected:
            def on_reject(rej: Rejected) -> None:
                report.reject(rej)
                rejected.write(dumps(rej.to_json()) + "\n")

            t0 = time.perf_counter()
            spool = write_spool(files, tmp / ".spool.jsonl", category_field, default_category, on_reject,
                                category_by_file, fmt, encoding, workers, max_record_bytes, engine, ray_address,
                                split_bytes)
            report.time("read", time.perf_counter() - t0)
            unknown = sorted(set(weights) - set(spool.names))
            if unknown:
                raise UnknownCategories(f"--weights names categories not in the input: {', '.join(unknown)} "
                                        f"(categories found: {', '.join(sorted(spool.names)) or 'none'})")

            t0 = time.perf_counter()
            plan = plan_buckets(spool.category_of, spool.names, num_buckets, seed, weights, shuffle)
            report.time("plan", time.perf_counter() - t0)

            t0 = time.perf_counter()
            with SpoolReader(spool) as reader:
                buckets = _write_buckets(plan, reader, tmp)
                downsampled = plan.downsampled()
                weight_of = {c.name: c.weight for c in plan.categories}
                for ordinal in downsampled.tolist():
                    on_reject(_downsampled(spool, reader, weight_of, seed, ordinal))
            report.time("write", time.perf_counter() - t0)
        spool.path.unlink()

        output_records = sum(b["records"] for b in buckets)
        report.keep(len(spool) - int(downsampled.size))
        manifest = _manifest(plan, spool, buckets, files, weights, category_field, default_category,
                             category_by_file)
        report.details.update({
            "num_buckets": num_buckets,
            "output_records": output_records,
            "added_by_weight": output_records - report.kept,
            "downsampled": int(downsampled.size),
            "categories": {n: {"before": c["before"], "after": c["after"]} for n, c in manifest["categories"].items()},
        })
        write_json(tmp / "manifest.json", manifest)
        report.write(tmp)
    return report, manifest


def _write_buckets(plan: BucketPlan, reader: SpoolReader, tmp: Path) -> list[dict]:
    """Pass 2: one bucket at a time, lines copied from the spool in the bucket's shuffled order."""
    out, start = [], 0
    total = sum(c.after for c in plan.categories)
    bar = progress(None, "bucket: write", total=total)
    for i in range(plan.num_buckets):
        items = plan.bucket_items(i)
        digest = hashlib.sha256()
        with open(tmp / bucket_name(i), "wb") as fh:
            for line in reader.lines(items):
                fh.write(line)
                digest.update(line)
        bar.update(items.size)
        out.append({"file": bucket_name(i), "start": start, "records": int(items.size),
                    "categories": plan.bucket_counts(i), "sha256": digest.hexdigest()})
        start += int(items.size)
    bar.close()
    return out


def _downsampled(spool: Spool, reader: SpoolReader, weight_of: dict[str, Fraction], seed: int,
                 ordinal: int) -> Rejected:
    name = spool.names[int(spool.category_of[ordinal])]
    return Rejected("downsampled", spool.origin(ordinal),
                    f"category {name!r} has weight {weight_json(weight_of[name])}; "
                    f"this record was not drawn (seed {seed})",
                    raw=json.loads(reader.line(ordinal)))


def _manifest(plan: BucketPlan, spool: Spool, buckets: list[dict], files: list[str],
              weights: dict[str, Fraction], category_field: str, default_category: str,
              category_by_file: bool) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "num_buckets": plan.num_buckets,
        "seed": plan.seed,
        "shuffle": plan.shuffle,
        "category_field": category_field,
        "default_category": default_category,
        "category_by_file": category_by_file,
        "weights": {k: weight_json(w) for k, w in sorted(weights.items())},
        "inputs": files,
        "categories": {c.name: {"weight": weight_json(c.weight), "before": c.before, "after": c.after}
                       for c in plan.categories},
        "records": {"before": len(spool), "after": sum(c.after for c in plan.categories)},
        "buckets": buckets,
    }
