"""Packed vs padded training throughput on the real ShareGPT length distribution (CPU, tiny LLaMA).

Every 10th convertible conversation of the full ShareGPT V3 file goes through the real pipeline
(`corpuskit render --template llama2` with the LLaMA-2 tokenizer, `corpuskit pack`). Both layouts
then train the same tiny LLaMA (trainers/configs/tiny_llama.json) with AdamW on the *same samples*,
steps interleaved between layouts so machine noise hits all alike:
- packed: PackedCollator rows of <= SEQ_LEN tokens (block-diagonal attention via position_ids);
- padded to longest: UnpackedCollator, one sample per row, batches of --padded-batch samples
  padded to the longest one (the HF DataCollatorForSeq2Seq way);
- padded to max_length: one sample per row padded to SEQ_LEN (fixed shapes, the ChatGLM2
  P-Tuning v2 script way).
Throughput = real (non-pad) tokens per second of forward+backward+optimizer step, both wall time
and CPU time of the process (with 1 torch thread, CPU time is unaffected by other jobs sharing
the machine, which wall time is not).

Run:  .venv/bin/python bench/bench_train_packing.py  [--rows 8] [--seq-len 2048] [--padded-batch 8]
Writes bench/out/train_packing_<seq-len>.json and prints a markdown table.
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

import bench_data

ROOT = Path(__file__).resolve().parent.parent
SHAREGPT = bench_data.SHAREGPT
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


def make_model():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(**json.loads(TINY.read_text()))
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model.config.use_cache = False
    return model.train(), torch.optim.AdamW(model.parameters(), lr=1e-3)


def step(model, opt, batch) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one forward+backward+AdamW step."""
    batch = {k: v for k, v in batch.items() if k != "meta"}
    t0, c0 = time.perf_counter(), time.process_time()
    model(**batch).loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - t0, time.process_time() - c0


def run_interleaved(layouts: dict[str, list], warmup: int = 2) -> dict[str, dict]:
    """Each layout trains its own model; steps alternate between layouts so that machine noise
    (other processes, allocator warm-up) hits all of them alike."""
    state = {name: make_model() for name in layouts}
    for name, batches in layouts.items():
        for batch in batches[:warmup]:
            step(*state[name], batch)
    wall = {name: 0.0 for name in layouts}
    cpu = {name: 0.0 for name in layouts}
    for i in range(max(len(b) for b in layouts.values())):
        for name, batches in layouts.items():
            if i < len(batches):
                w, c = step(*state[name], batches[i])
                wall[name] += w
                cpu[name] += c
    out = {}
    for name, batches in layouts.items():
        real = sum(b["meta"]["tokens"] for b in batches)
        computed = sum(b["input_ids"].numel() for b in batches)
        out[name] = {"batches": len(batches), "wall_seconds": round(wall[name], 3),
                     "cpu_seconds": round(cpu[name], 3), "real_tokens": real, "computed_tokens": computed,
                     "fill": round(real / computed, 4), "tokens_per_second": round(real / wall[name], 1),
                     "tokens_per_cpu_second": round(real / cpu[name], 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8, help="packed rows to train on (same samples for both layouts)")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--every", type=int, default=10, help="take every N-th ShareGPT conversation")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 makes CPU seconds a clean work measure on a shared machine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--padded-batch", type=int, default=8, help="samples per padded batch")
    args = ap.parse_args()

    import torch

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
    # the same samples, one per row, in a seeded random order
    singles = []
    for r in chosen:
        at = 0
        for n in r["seq_lens"]:
            singles.append({"input_ids": r["input_ids"][at:at + n], "labels": r["labels"][at:at + n],
                            "seq_lens": [n], "categories": [""]})
            at += n
    random.Random(args.seed).shuffle(singles)
    b = args.padded_batch
    padded = UnpackedCollator(pad_token_id=2)
    fixed = UnpackedCollator(pad_token_id=2, pad_to_length=args.seq_len)
    layouts = {
        "packed (trainers)": [PackedCollator(pad_token_id=2)([r]) for r in chosen],
        f"padded to longest, batch {b}": [padded(singles[i:i + b]) for i in range(0, len(singles), b)],
        f"padded to max_length {args.seq_len}": [fixed([s]) for s in singles],
    }
    results = run_interleaved(layouts)
    packed = results["packed (trainers)"]
    speedups = {name: {"wall": round(packed["tokens_per_second"] / r["tokens_per_second"], 2),
                       "cpu": round(packed["tokens_per_cpu_second"] / r["tokens_per_cpu_second"], 2)}
                for name, r in results.items() if name != "packed (trainers)"}
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "threads": args.threads,
           "seq_len": args.seq_len, "conversations_rendered": manifest["samples"], "rows": len(chosen),
           "samples": samples, "pack_fill_ratio": manifest["fill_ratio"], "prep_seconds": round(prep, 1),
           "results": results, "speedup_packed_over": speedups}
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / f"train_packing_{args.seq_len}.json").write_text(json.dumps(out, indent=2) + "\n")
    print("| layout | batches | real tokens | computed tokens | fill | tokens/s (wall) | tokens/CPU-s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['batches']} | {r['real_tokens']} | {r['computed_tokens']} | {r['fill']} | "
              f"{r['tokens_per_second']} | {r['tokens_per_cpu_second']} |")
    for name, x in speedups.items():
        print(f"packed vs {name}: {x['wall']:.2f}x tokens/s (wall), {x['cpu']:.2f}x tokens per CPU-second")
    print(f"({samples} samples in {len(chosen)} packed rows, seq_len {args.seq_len}, {args.threads} threads)")


if __name__ == "__main__":
    main()
