"""GPU throughput and MFU of `trainers sft` on packed real ShareGPT: ~0.4B LLaMA, bf16, ZeRO-2.

Drives the real training path (trainers.run.train: PackedTrainer + DeepSpeed ZeRO-2 + packed
collator) for --steps steps and reads the per-step tokens/s that trainers logs (real tokens, from
log to log, so data loading and the optimizer step are included).

MFU = (6 * N + 6 * n_layers * d_model * c) * tokens/s / peak, where N counts every matmul
parameter (all but the input embedding, which is a lookup), c = sum(L_i^2) / sum(L_i) over the
packed samples (causal attention within each sample: 12*l*d*L_i^2/2 flops per sample for QK^T and
AV, forward + backward), peak = 989 TFLOP/s dense bf16 (H100 SXM).

Data: --data PDIR (a `corpuskit pack` folder). Build it once on a CPU machine with
  .venv/bin/python bench/bench_train_gpu.py --prepare bench/.cache/sharegpt_packed_2048
(every 10th convertible ShareGPT V3 conversation, LLaMA-2 tokenizer, llama2 template, seq-len 2048).
Run on the GPU (the lead's command, from the repo root):
  .venv/bin/python bench/bench_train_gpu.py --data bench/.cache/sharegpt_packed_2048 --steps 40 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LLAMA2 = Path(os.environ.get("CORPUSKIT_LLAMA2_MODEL", ROOT.parent / "shared" / "tokenizers" / "llama2" / "tokenizer.model"))
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}

MODEL_05B = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 1024,
             "intermediate_size": 2816, "num_hidden_layers": 24, "num_attention_heads": 16,
             "num_key_value_heads": 16, "max_position_embeddings": 4096, "vocab_size": 32000,
             "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
             "bos_token_id": 1, "eos_token_id": 2, "attention_dropout": 0.0, "initializer_range": 0.02}


def prepare(out: Path, every: int, seq_len: int) -> None:
    """Real data for the GPU run: ShareGPT -> render (LLaMA-2, llama2 template) -> pack, plus the tokenizer."""
    from corpuskit.ingest import iter_records
    from corpuskit.outputs import dumps
    from corpuskit.records import Record
    from corpuskit.vocab.hf import write_hf_tokenizer

    binpath = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_hf_tokenizer(LLAMA2, out.parent / (out.name + "-tokenizer"))
        with open(tmp / "chats.jsonl", "w", encoding="utf-8") as fh:
            import bench_data  # fetches the data on first use; the GPU machine only trains

            recs = (r for r in iter_records([str(bench_data.SHAREGPT)], fmt="sharegpt", to="sft")
                    if isinstance(r, Record))
            for i, rec in enumerate(recs):
                if i % every == 0:
                    fh.write(dumps(rec.to_json()) + "\n")
        subprocess.run([binpath / "corpuskit", "render", tmp / "chats.jsonl", "--tokenizer",
                        out.parent / (out.name + "-tokenizer"), "--template", "llama2", "--max-length", str(seq_len),
                        "-o", tmp / "rendered", "--workers", "2"], check=True)
        subprocess.run([binpath / "corpuskit", "pack", tmp / "rendered", "-o", out, "--seq-len", str(seq_len)],
                       check=True)


def param_counts(config: dict) -> dict:
    d, f, layers, v = (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"],
                       config["vocab_size"])
    kv = d * config["num_key_value_heads"] // config["num_attention_heads"]
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * f + 2 * d
    return {"embedding": v * d, "lm_head": v * d, "per_layer": per_layer, "layers": layers * per_layer,
            "total": 2 * v * d + layers * per_layer + d, "matmul": v * d + layers * (per_layer - 2 * d)}


def attention_context(pdir: Path) -> float:
    """sum(L_i^2) / sum(L_i) over all packed samples: the mean causal context length per token."""
    from datasets import load_from_disk

    lens = [n for row in load_from_disk(str(pdir))["seq_lens"] for n in row]
    return sum(n * n for n in lens) / sum(lens)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepare", type=Path, help="build the packed ShareGPT folder here and exit")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--data", type=Path, default=ROOT / "bench" / ".cache" / "sharegpt_packed_2048")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the average")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--attention", default="auto")
    ap.add_argument("--deepspeed", default="zero2")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (HF Trainer torch_compile)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train_gpu.json")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare, args.every, args.seq_len)
        return

    import torch

    from trainers.run import RunOptions, train

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    tokenizer_dir = args.data.parent / (args.data.name + "-tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "llama_05b.json"
        config_path.write_text(json.dumps(MODEL_05B))
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        train(RunOptions(mode="sft", data=str(args.data), model=str(config_path), tokenizer=str(tokenizer_dir),
                         output=str(run_dir), deepspeed=args.deepspeed, bf16=True, attention=args.attention,
                         gradient_checkpointing=args.gradient_checkpointing, lr=3e-4, lr_scheduler="constant",
                         max_steps=args.steps, batch_size=args.batch_size, save_steps=10 ** 9,
                         extra={"save_strategy": "no", **({"torch_compile": True} if args.compile else {})}))
        wall = time.perf_counter() - t0
        state = json.loads((run_dir / "trainer_state.json").read_text())
        report = json.loads((run_dir / "report.json").read_text())
    logs = [h for h in state["log_history"] if "tokens_per_second" in h][args.warmup:]
    tokens = sum(h["tokens"] for h in logs)
    seconds = sum(h["tokens"] / h["tokens_per_second"] for h in logs)
    tps = tokens / seconds
    params = param_counts(MODEL_05B)
    ctx = attention_context(args.data)
    flops_per_token = 6 * params["matmul"] + 6 * MODEL_05B["num_hidden_layers"] * MODEL_05B["hidden_size"] * ctx
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "device": name,
           "attention": report["details"]["attention"], "deepspeed": args.deepspeed, "bf16": True,
           "batch_size": args.batch_size, "torch_compile": args.compile, "seq_len": args.seq_len, "steps_timed": len(logs), "params": params,
           "mean_causal_context": round(ctx, 1), "tokens_per_second": round(tps, 1),
           "model_tflops": round(flops_per_token * tps / 1e12, 1),
           "mfu": round(flops_per_token * tps / peak, 4) if peak else None,
           "loss_first_last": [report["details"]["first_loss"], report["details"]["last_loss"]],
           "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 1) if torch.cuda.is_available() else None,
           "wall_seconds": round(wall, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
