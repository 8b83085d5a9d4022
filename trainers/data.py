"""Packed training data: read `corpuskit pack` output, order it by group, and batch it.

Attention must never cross samples inside a packed row. Two layouts give that:
- flattened (flash-attention varlen): the whole batch becomes one row, position_ids restart at
  every sample, and transformers' flash path turns them into cu_seqlens; no padding at all;
- padded rows (sdpa/eager): rows are right-padded to the longest one; with no 2D attention mask,
  transformers reads the position_ids restarts and builds a block-diagonal causal 4D mask. The
  padding is given positions 0..k-1 of its own, so it is a separate (untrained) block.
In both, the label of each sample's first token is set to -100: in a packed row it would
otherwise be the target of the previous sample's last token, a prediction across samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from corpuskit.pack.packer import FORMAT as PACK_FORMAT
from corpuskit.render.dataset_io import PACK_FEATURES
from corpuskit.render.tokenize import IGNORE
from trainers.errors import TrainError, read_json

PACK_COLUMNS = tuple(PACK_FEATURES)


class DataError(TrainError):
    """A packed data directory that cannot be trained on; the message names the problem."""


def read_manifest(pdir: str | Path) -> dict:
    path = Path(pdir) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{pdir}: no manifest.json; expected the output folder of `corpuskit pack`")
    manifest = read_json(path, "the pack manifest", DataError)
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: expected a JSON object, the manifest of `corpuskit pack`")
    if manifest.get("format") != PACK_FORMAT:
        raise DataError(f"{path}: format is {manifest.get('format')!r}, expected {PACK_FORMAT!r} "
                        "(train on `corpuskit pack` output, not `render` output)")
    for key in ("seq_len", "tokenizer", "groups", "sequences"):
        if key not in manifest:
            raise DataError(f"{path}: missing key {key!r}")
    return manifest


class PackedRows(Dataset):
    """The packed rows of a PDIR, each tagged with its row index and group index."""

    def __init__(self, pdir: str | Path):
        from datasets import load_from_disk

        self.manifest = read_manifest(pdir)
        try:
            self.table = load_from_disk(str(pdir))
        except (FileNotFoundError, ValueError) as e:
            raise DataError(f"{pdir}: cannot load the packed dataset ({e})") from e
        missing = [c for c in PACK_COLUMNS if c not in self.table.column_names]
        if missing:
            raise DataError(f"{pdir}: dataset lacks columns {missing}")
        if len(self.table) != self.manifest["sequences"]:
            raise DataError(f"{pdir}: manifest says {self.manifest['sequences']} sequences, dataset has {len(self.table)}")
        self.groups = [(g["start"], g["end"]) for g in self.manifest["groups"]]
        self.group_names = [g["name"] for g in self.manifest["groups"]]
        covered = [r for s, e in self.groups for r in (s, e)]
        if not self.groups or covered[0] != 0 or covered[-1] != len(self.table) or any(
                covered[i] != covered[i + 1] for i in range(1, len(covered) - 1, 2)):
            raise DataError(f"{pdir}: manifest groups {self.groups} do not tile rows 0..{len(self.table)}")
        self._group_of_row = [gi for gi, (s, e) in enumerate(self.groups) for _ in range(s, e)]
        self.table = self.table.with_format(None)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.table[int(i)]
        row["row"] = int(i)
        row["group"] = self._group_of_row[int(i)]
        return row


class GroupOrderedSampler(Sampler[int]):
    """Groups (buckets) in manifest order; rows shuffled within each group from (seed, epoch).

    Keeps Colossal-LLaMA-2's bucket property: each stretch of training sees the buckets in order.
    The order is a pure function of (groups, seed, epoch), so a resumed run replays it exactly.
    """

    def __init__(self, groups: Sequence[tuple[int, int]], seed: int, shuffle: bool = True):
        self.groups = list(groups)
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> list[int]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rows: list[int] = []
        for start, end in self.groups:
            block = list(range(start, end))
            if self.shuffle:
                rng.shuffle(block)
            rows.extend(block)
        return rows

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        return sum(e - s for s, e in self.groups)


def _mask_sample_starts(labels: list[int], seq_lens: Sequence[int]) -> list[int]:
    labels = list(labels)
    at = 0
    for n in seq_lens:
        if n > 0:
            labels[at] = IGNORE
        at += n
    return labels


def _meta(features: list[dict]) -> dict[str, Any]:
    return {"tokens": sum(len(f["input_ids"]) for f in features),
            "rows": [f["row"] for f in features if "row" in f],
            "groups": [f["group"] for f in features if "group" in f],
            "categories": [c for f in features for c in f.get("categories", [])]}


@dataclass
class PackedCollator:
    """Batch packed rows so that attention stays inside each sample (see the module docstring)."""

    pad_token_id: int
    flatten: bool = False
    pad_to_multiple_of: int = 1

    def __call__(self, features: list[dict]) -> dict[str, Any]:
        ids, labels, pos = [], [], []
        for f in features:
            if sum(f["seq_lens"]) != len(f["input_ids"]):
                raise DataError(f"row {f.get('row')}: seq_lens sum {sum(f['seq_lens'])} != length {len(f['input_ids'])}")
            ids.append(list(f["input_ids"]))
            labels.append(_mask_sample_starts(f["labels"], f["seq_lens"]))
            pos.append(list(f["position_ids"]))
        if self.flatten:
            ids, labels, pos = [sum(ids, [])], [sum(labels, [])], [sum(pos, [])]
        else:
            width = max(len(r) for r in ids)
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
            for r_ids, r_lab, r_pos in zip(ids, labels, pos):
                pad = width - len(r_ids)
                r_ids.extend([self.pad_token_id] * pad)
                r_lab.extend([IGNORE] * pad)
                r_pos.extend(range(pad))
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long),
                "position_ids": torch.tensor(pos, dtype=torch.long),
                # a KV cache (on by default even in training) turns off the packed-sequence mask
                "use_cache": False,
                "meta": _meta(features)}


@dataclass
class UnpackedCollator:
    """Split packed rows back into samples, one per padded row, with a 2D attention mask.

    Used by prefix tuning (its virtual tokens are past key values, which transformers' packed
    mask does not account for) and as the padded baseline of the packing benchmark.
    """

    pad_token_id: int
    pad_to_length: int | None = None  # fixed-shape batches (ChatGLM2 P-Tuning style); None = longest

    def __call__(self, features: list[dict]) -> dict[str, Any]:
        samples = []
        for f in features:
            at = 0
            for n in f["seq_lens"]:
                samples.append((f["input_ids"][at:at + n], f["labels"][at:at + n]))
                at += n
        width = max([len(s[0]) for s in samples] + [self.pad_to_length or 0])
        ids = [list(s) + [self.pad_token_id] * (width - len(s)) for s, _ in samples]
        labels = [list(lab) + [IGNORE] * (width - len(lab)) for _, lab in samples]
        mask = [[1] * len(s) + [0] * (width - len(s)) for s, _ in samples]
        return {"input_ids": torch.tensor(ids, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long),
                "attention_mask": torch.tensor(mask, dtype=torch.long),
                "meta": _meta(features)}
