"""Train or evaluate on `corpuskit render` output as well as on `corpuskit pack` output.

`render --mode pretrain --group-texts BLOCK` already writes fixed-length rows (HF run_clm's
group_texts), so packing them again gains nothing: each row is one sequence of its own, with
positions 0..n-1. Its rows are grouped by input file, the way pack groups them (the bucket order
of Colossal-LLaMA-2 survives). `trainers eval` also reads plain render output (one sample per row),
since a held-out set is scored sample by sample anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corpuskit.pack.packer import FORMAT as PACK_FORMAT
from corpuskit.pack.packer import RENDER_FORMAT, group_of
from trainers.data import DataError, PackedRows
from trainers.errors import read_json


def read_any_manifest(ddir: str | Path) -> dict | None:
    path = Path(ddir) / "manifest.json"
    if not path.is_file():
        return None
    manifest = read_json(path, "the data manifest", DataError)
    return manifest if isinstance(manifest, dict) else None


def open_rows(ddir: str | Path, allow_unpacked: bool = False) -> PackedRows:
    """Packed rows of a pack folder, or of a render folder (training: --group-texts output only)."""
    manifest = read_any_manifest(ddir)
    if manifest is None or manifest.get("format") != RENDER_FORMAT:
        return PackedRows(ddir)  # reports what is wrong with anything that is not render output
    if not allow_unpacked and not manifest.get("group_texts"):
        raise DataError(f"{ddir}: holds `corpuskit render` output ({RENDER_FORMAT}) with one variable-length sample "
                        f"per row; pack it first (`corpuskit pack {ddir} -o packed/ --seq-len N`), or render "
                        "pretraining data with --group-texts BLOCK, whose fixed-length rows trainers reads directly")
    return RenderedRows(ddir)


class RenderedRows(PackedRows):
    """Render rows presented as packed rows of one sequence each (same manifest keys, same items)."""

    def __init__(self, rdir: str | Path):
        from datasets import load_from_disk

        render = read_json(Path(rdir) / "manifest.json", "the render manifest", DataError)
        for key in ("tokenizer", "max_length", "mode"):
            if key not in render:
                raise DataError(f"{rdir}/manifest.json: missing key {key!r}")
        try:
            table = load_from_disk(str(rdir))
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f"{rdir}: cannot load the rendered dataset ({e})") from e
        missing = [c for c in ("input_ids", "labels", "origin", "category") if c not in table.column_names]
        if missing:
            raise DataError(f"{rdir}: dataset lacks columns {missing}")
        groups: list[dict] = []
        self._group_of_row = []
        for i, origin in enumerate(table.data.column("origin").to_pylist()):
            name = group_of(origin)
            if not groups or groups[-1]["name"] != name:
                groups.append({"name": name, "start": i, "end": i})
            groups[-1]["end"] = i + 1
            self._group_of_row.append(len(groups) - 1)
        self.manifest = {"format": PACK_FORMAT, "seq_len": int(render["max_length"]), "tokenizer": render["tokenizer"],
                         "sequences": len(table), "groups": groups, "render": render, "unpacked": True}
        self.table = table.with_format(None)
        self.groups = [(g["start"], g["end"]) for g in groups]
        self.group_names = [g["name"] for g in groups]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.table[int(i)]
        n = len(row["input_ids"])
        return {"input_ids": row["input_ids"], "labels": row["labels"], "position_ids": list(range(n)),
                "seq_lens": [n], "origins": [row["origin"]], "categories": [row["category"]],
                "row": int(i), "group": self._group_of_row[int(i)]}
