"""Write rows as a `datasets.load_from_disk` directory, streamed and byte-reproducible.

Rows go through `datasets.ArrowWriter` into one Arrow file in batches (memory stays flat), then
`save_to_disk` lays out the directory. `save_to_disk` stamps a random fingerprint into
state.json; it is replaced by a hash of the data so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from datasets import Dataset, Features, Sequence, Value, disable_progress_bars
from datasets.arrow_writer import ArrowWriter

INT_LIST = Sequence(Value("int32"))
STR_LIST = Sequence(Value("string"))

RENDER_FEATURES = Features({"input_ids": INT_LIST, "labels": INT_LIST,
                            "origin": Value("string"), "category": Value("string")})
PACK_FEATURES = Features({"input_ids": INT_LIST, "labels": INT_LIST, "position_ids": INT_LIST,
                          "seq_lens": INT_LIST, "origins": STR_LIST, "categories": STR_LIST})


class BatchWriter:
    """Collects rows (dicts of column -> value) and flushes them in batches to an Arrow file."""

    def __init__(self, path: Path, features: Features, batch_rows: int = 1000):
        self.features, self.batch_rows = features, batch_rows
        self.writer = ArrowWriter(features=features, path=str(path))
        self.columns: dict[str, list] = {k: [] for k in features}
        self.first = next(iter(features))  # its length is the batch's row count
        self.rows = 0

    def add(self, row: dict) -> None:
        for k, col in self.columns.items():
            col.append(row[k])
        self.rows += 1
        if len(self.columns[self.first]) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.columns[self.first]:
            self.writer.write_batch(self.columns)
            self.columns = {k: [] for k in self.features}

    def close(self) -> None:
        self.flush()
        self.writer.finalize()
        self.writer.close()


def write_dataset(outdir: Path, features: Features, rows: Iterable[dict], batch_rows: int = 1000) -> int:
    """Stream rows into a datasets directory at `outdir` (an `atomic_dir` temp folder); returns row count.

    The scratch folder lies inside `outdir`, so a killed run leaves nothing beside the output."""
    outdir = Path(outdir)
    disable_progress_bars()  # our own bar is on the records; a second one for the copy is noise
    with tempfile.TemporaryDirectory(prefix=".build-", dir=outdir) as tmp:
        arrow = Path(tmp) / "rows.arrow"
        w = BatchWriter(arrow, features, batch_rows)
        for row in rows:
            w.add(row)
        w.close()
        ds = Dataset.from_file(str(arrow))
        staging = Path(tmp) / "ds"
        # datasets writes no shard at all for 0 rows, and then cannot load its own directory
        ds.save_to_disk(str(staging), num_shards=1 if len(ds) == 0 else None)
        del ds
        for f in staging.iterdir():
            shutil.move(str(f), outdir / f.name)
    _stable_fingerprint(outdir)
    return w.rows


def _stable_fingerprint(outdir: Path) -> None:
    h = hashlib.sha256()
    for f in sorted(outdir.glob("data-*.arrow")):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    state_path = outdir / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8"))
    state["_fingerprint"] = h.hexdigest()[:16]
    state_path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
