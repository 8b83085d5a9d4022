"""Pack a `corpuskit render` directory into sequences for attention-isolated packed training.

Samples are read zero-copy from the memory-mapped Arrow data (only lengths, origins and categories
are held in memory), packed per group (the input file a sample came from, so bucketed data keeps
its order of buckets), and each packed row keeps `seq_lens` and restarting `position_ids` so the
trainer can stop attention at sample boundaries. Token and trained-token totals are checked equal
before the output is published.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from corpuskit.errors import CorpusError
from corpuskit.outputs import atomic_dir, write_json
from corpuskit.overlap import check_paths
from corpuskit.pack.bfd import STRATEGIES
from corpuskit.render.dataset_io import PACK_FEATURES, write_dataset
from corpuskit.render.tokenize import IGNORE
from corpuskit.report import StageReport

FORMAT = "corpuskit.pack/1"
RENDER_FORMAT = "corpuskit.render/1"


class PackError(CorpusError):
    pass


class TooLong(PackError):
    pass


@dataclass
class Column:
    """A list<int32> column as (values, offsets) per Arrow chunk, so rows are numpy slices of the mmap."""

    chunks: list[tuple[np.ndarray, np.ndarray]]
    where: np.ndarray  # row -> (chunk, local row)

    @classmethod
    def of(cls, table, name: str) -> "Column":
        chunks, where = [], []
        for c, chunk in enumerate(table.column(name).chunks):
            values = chunk.values.to_numpy(zero_copy_only=False)
            offsets = chunk.offsets.to_numpy()
            chunks.append((values, offsets))
            where.append(np.stack([np.full(len(chunk), c), np.arange(len(chunk))], axis=1))
        return cls(chunks, np.concatenate(where) if where else np.zeros((0, 2), dtype=np.int64))

    def row(self, i: int) -> np.ndarray:
        c, j = self.where[i]
        values, offsets = self.chunks[c]
        return values[offsets[j]:offsets[j + 1]]

    def lengths(self) -> np.ndarray:
        return np.concatenate([np.diff(off) for _, off in self.chunks]) if self.chunks else np.zeros(0, np.int64)


def read_render_manifest(rdir: Path) -> dict:
    path = rdir / "manifest.json"
    if not path.is_file():
        raise PackError(f"{rdir}: no manifest.json; pack reads the output directory of `corpuskit render`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PackError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from e
    if manifest.get("format") != RENDER_FORMAT:
        raise PackError(f"{path}: format is {manifest.get('format')!r}, expected {RENDER_FORMAT!r}")
    return manifest


def group_of(origin: str) -> str:
    return origin.rsplit(":", 1)[0]


def pack_dir(rdir: str | Path, outdir: str | Path, seq_len: int, strategy: str = "bfd",
             seed: int = 42) -> StageReport:
    from datasets import load_from_disk

    rdir = Path(rdir)
    manifest = read_render_manifest(rdir)
    check_paths({"INPUT_DIR": rdir}, dirs={"-o": outdir})
    report = StageReport("pack", inputs=[str(rdir)])  # its clock starts here, so `total` covers `pack`
    t0 = time.perf_counter()
    ds = load_from_disk(str(rdir))
    table = ds.data.table
    ids_col, labels_col = Column.of(table, "input_ids"), Column.of(table, "labels")
    lengths = ids_col.lengths()
    if not np.array_equal(lengths, labels_col.lengths()):
        bad = int(np.nonzero(lengths != labels_col.lengths())[0][0])
        raise PackError(f"{rdir}: row {bad} has input_ids and labels of different lengths")
    origins = table.column("origin").to_pylist()
    categories = table.column("category").to_pylist()
    too_long = np.nonzero(lengths > seq_len)[0]
    if len(too_long):
        i = int(too_long[0])
        raise TooLong(f"{rdir}: sample {origins[i]} has {int(lengths[i])} tokens > --seq-len {seq_len} "
                      f"({len(too_long)} samples too long); packing never cuts a sample: render again with "
                      f"--max-length {seq_len} or less")

    groups: dict[str, list[int]] = {}
    for i, o in enumerate(origins):
        groups.setdefault(group_of(o), []).append(i)
    rng = np.random.default_rng(seed)
    plan: list[tuple[str, list[list[int]]]] = []
    for name, members in groups.items():
        bins = STRATEGIES[strategy]([int(lengths[i]) for i in members], seq_len)
        bins = [sorted(members[k] for k in b) for b in bins]
        plan.append((name, [bins[k] for k in rng.permutation(len(bins))]))
    t_plan = time.perf_counter() - t0

    totals = {"tokens": 0, "trained": 0}

    def rows() -> Iterator[dict]:
        for _, bins in plan:
            for b in bins:
                ids = np.concatenate([ids_col.row(i) for i in b])
                labels = np.concatenate([labels_col.row(i) for i in b])
                seq_lens = [int(lengths[i]) for i in b]
                totals["tokens"] += len(ids)
                totals["trained"] += int(np.count_nonzero(labels != IGNORE))
                yield {"input_ids": ids, "labels": labels,
                       "position_ids": np.concatenate([np.arange(n, dtype=np.int32) for n in seq_lens]),
                       "seq_lens": seq_lens, "origins": [origins[i] for i in b],
                       "categories": [categories[i] for i in b]}

    tokens_in = int(lengths.sum())
    trained_in = _trained(labels_col)
    with atomic_dir(outdir, "pack") as tmp:
        n_rows = write_dataset(tmp, PACK_FEATURES, rows(), batch_rows=256)
        if totals["tokens"] != tokens_in or totals["trained"] != trained_in:
            raise AssertionError(f"pack lost tokens: in {tokens_in} ({trained_in} trained), "
                                 f"out {totals['tokens']} ({totals['trained']} trained)")
        report.keep(len(lengths))
        fill = tokens_in / (n_rows * seq_len) if n_rows else 0.0
        group_rows, start = [], 0
        for name, bins in plan:
            group_rows.append({"name": name, "start": start, "end": start + len(bins),
                               "samples": sum(len(b) for b in bins),
                               "tokens": int(sum(lengths[i] for b in bins for i in b))})
            start += len(bins)
        report.time("plan", t_plan)
        report.time("pack", time.perf_counter() - t0)
        report.details.update({
            "strategy": strategy, "seq_len": seq_len, "seed": seed, "sequences": n_rows,
            "samples": len(lengths), "tokens_in": tokens_in, "tokens_out": totals["tokens"],
            "trained_tokens_in": trained_in, "trained_tokens_out": totals["trained"],
            "fill_ratio": round(fill, 6), "padding_fraction": round(1 - fill, 6) if n_rows else 0.0,
            "unpacked_fill_ratio": round(tokens_in / (len(lengths) * seq_len), 6) if len(lengths) else 0.0,
            "groups": len(plan),
        })
        write_json(tmp / "manifest.json", {
            "format": FORMAT, "seq_len": seq_len, "strategy": strategy, "seed": seed,
            "tokenizer": manifest.get("tokenizer"), "sequences": n_rows, "samples": len(lengths),
            "tokens": tokens_in, "trained_tokens": trained_in, "fill_ratio": round(fill, 6),
            "groups": group_rows, "render": manifest,
        })
        report.write(tmp)
    return report


def _trained(col: Column) -> int:
    total = 0
    for values, offsets in col.chunks:
        total += int(np.count_nonzero(values[offsets[0]:offsets[-1]] != IGNORE))
    return total
