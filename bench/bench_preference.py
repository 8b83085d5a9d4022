"""Preference data: `corpuskit render --mode preference` vs TRL's own preprocessing, and the DPO
forward+backward of a padded batch vs the same pairs packed (padding-free), CPU, one process.

1. Render speed: the same pairs (built from the real text in tests/data, see
   tests/preference_data.py: review verdicts, ShareGPT answers vs another question's answer,
   repeated --repeat times) through (a) `corpuskit render --mode preference` (the Renderer, one
   worker) and (b) TRL 1.16's `DPOTrainer._prepare_dataset` (apply_chat_template of prompt,
   prompt+chosen, prompt+rejected per pair, as `trainers dpo` would without pre-rendered data).
   Both give identical ids (tests/test_preference.py checks it); tokens/s counts prompt+chosen and
   prompt+rejected tokens, best of 3 runs, interleaved.
2. DPO step: the tiny LLaMA (trainers/configs/tiny_llama.json), batches of --batch pairs: (a)
   TRL's DataCollatorForPreference (2B rows padded to the longest) vs (b) the same 2B sequences
   in one row with position_ids restarting per sequence (block-diagonal causal attention, the
   layout `trainers` packs SFT data in). Each: forward, per-token log-probs of the replies, DPO
   sigmoid loss against fixed reference log-probs, backward; 1 torch thread, CPU seconds.

    .venv/bin/python bench/bench_preference.py [--repeat 4] [--batch 8] [--steps 6]
Writes bench/out/preference.json and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
LLAMA2 = Path(os.environ.get("CORPUSKIT_LLAMA2_MODEL", ROOT.parent / "shared" / "tokenizers" / "llama2" / "tokenizer.model"))


def cpu() -> float:
    return time.process_time()


def build(work: Path, repeat: int):
    from click.testing import CliRunner

    from corpuskit.cli import main
    from corpuskit.vocab.hf import write_hf_tokenizer
    from preference_data import review_offtopic_pairs, review_pairs, sharegpt_pairs, write_jsonl

    write_hf_tokenizer(LLAMA2, work / "tok")
    assert CliRunner().invoke(main, ["template", "export", "llama2-chinese", "--tokenizer", str(work / "tok")]).exit_code == 0
    pairs = (review_pairs(300) + sharegpt_pairs(60) + review_offtopic_pairs(300)) * repeat
    write_jsonl(work / "pairs.jsonl", pairs)
    return pairs


def render_bench(work: Path, pairs: list[dict], runs: int = 3) -> dict:
    from datasets import Dataset, disable_progress_bars
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging
    from trl import DPOConfig, DPOTrainer

    from corpuskit.ingest import iter_records
    from corpuskit.ingest.preference import reply_turns
    from corpuskit.render.preference import PairOptions, PairRenderer
    from corpuskit.render.templates import load_template
    from corpuskit.render.tokenizer_dir import TokenizerDir

    disable_progress_bars()
    hf_logging.set_verbosity_error()
    records = list(iter_records([str(work / "pairs.jsonl")]))
    renderer = PairRenderer(TokenizerDir.load(work / "tok"), load_template("llama2-chinese"),
                            PairOptions(max_length=1 << 20))
    hf_tok = AutoTokenizer.from_pretrained(str(work / "tok"))
    ds = Dataset.from_list([{"prompt": r["messages"], "chosen": reply_turns(r["chosen"]),
                             "rejected": reply_turns(r["rejected"])} for r in pairs])
    cfg = DPOConfig(output_dir=str(work / "unused"), max_length=None, bf16=False, dataset_num_proc=None)
    ours, theirs, tokens = [], [], 0
    for _ in range(runs):
        t = cpu()
        rows = renderer.process(records)
        ours.append(cpu() - t)
        tokens = sum(2 * len(r.prompt_ids) + len(r.chosen_ids) + len(r.rejected_ids) for r in rows)
        t = cpu()
        DPOTrainer._prepare_dataset(None, ds, hf_tok, cfg, "train")
        theirs.append(cpu() - t)
    return {"pairs": len(pairs), "tokens": tokens, "corpuskit_cpu_s": min(ours), "trl_cpu_s": min(theirs),
            "corpuskit_tokens_per_s": tokens / min(ours), "trl_tokens_per_s": tokens / min(theirs),
            "ratio": min(theirs) / min(ours)}


def dpo_step_bench(work: Path, batch: int, steps: int) -> dict:
    import torch
    from click.testing import CliRunner
    from datasets import load_from_disk
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    from corpuskit.cli import main

    torch.set_num_threads(1)
    out = work / "rendered"
    assert CliRunner().invoke(main, ["render", str(work / "pairs.jsonl"), "--tokenizer", str(work / "tok"), "--mode",
                                     "preference", "--max-length", "1024", "-o", str(out)]).exit_code == 0
    rows = load_from_disk(str(out)).shuffle(seed=0)
    raw = json.loads((ROOT / "trainers" / "configs" / "tiny_llama.json").read_text())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**raw), attn_implementation="sdpa")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    collate = DataCollatorForPreference(pad_token_id=0)

    def logps_padded(examples):
        b = collate(examples)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits[:, :-1]
        lp = torch.log_softmax(logits.float(), -1).gather(-1, b["input_ids"][:, 1:, None]).squeeze(-1)
        per_seq = (lp * b["completion_mask"][:, 1:]).sum(-1)
        real = int(b["attention_mask"].sum())
        return per_seq, real, b["input_ids"].numel()

    def logps_packed(examples):
        seqs, masks = [], []
        for side in ("chosen_ids", "rejected_ids"):
            for e in examples:
                seqs.append(e["prompt_ids"] + e[side])
                masks.append([0] * len(e["prompt_ids"]) + [1] * len(e[side]))
        ids = torch.tensor([t for s in seqs for t in s])[None]
        pos = torch.tensor([p for s in seqs for p in range(len(s))])[None]
        logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, :-1]
        lp = torch.log_softmax(logits.float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        comp = torch.tensor([m for s in masks for m in s])[1:].float()
        starts = torch.tensor([0] + [len(s) for s in seqs]).cumsum(0)
        seq_of = torch.repeat_interleave(torch.arange(len(seqs)), torch.tensor([len(s) for s in seqs]))[1:]
        comp[(starts[1:-1] - 1)] = 0  # a sequence's first token is not predicted from the previous sequence
        per_seq = torch.zeros(len(seqs)).index_add(0, seq_of, lp * comp)
        return per_seq, ids.numel(), ids.numel()

    def step(fn, examples):
        per_seq, real, computed = fn(examples)
        chosen, rejected = per_seq.chunk(2)
        loss = -torch.nn.functional.logsigmoid(0.1 * (chosen - rejected)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return real, computed

    layouts = {"padded": logps_padded, "packed": logps_packed}
    totals = {k: {"cpu_s": 0.0, "real_tokens": 0, "computed_tokens": 0} for k in layouts}
    batches = [[rows[i] for i in range(s * batch, (s + 1) * batch)] for s in range(steps + 1)]
    for fn in layouts.values():  # warm-up
        step(fn, batches[0])
    for examples in batches[1:]:
        for name, fn in layouts.items():
            t = cpu()
            real, computed = step(fn, examples)
            totals[name]["cpu_s"] += cpu() - t
            totals[name]["real_tokens"] += real
            totals[name]["computed_tokens"] += computed
    for v in totals.values():
        v["real_tokens_per_cpu_s"] = v["real_tokens"] / v["cpu_s"]
        v["step_cpu_s"] = v["cpu_s"] / steps
    totals["speedup_packed"] = totals["padded"]["step_cpu_s"] / totals["packed"]["step_cpu_s"]
    totals["batch_pairs"] = batch
    return totals


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    work = Path(tempfile.mkdtemp(prefix="bench-pref-"))
    try:
        pairs = build(work, args.repeat)
        r = render_bench(work, pairs)
        d = dpo_step_bench(work, args.batch, args.steps)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"render": r, "dpo_step": d}
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "preference.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"| pairs | tokens | corpuskit render tokens/CPU s | TRL DPO preprocessing tokens/CPU s | ratio |")
    print(f"|---:|---:|---:|---:|---:|")
    print(f"| {r['pairs']:,} | {r['tokens']:,} | {r['corpuskit_tokens_per_s']:,.0f} | {r['trl_tokens_per_s']:,.0f} | "
          f"**{r['ratio']:.1f}x** |")
    print()
    print("| layout | computed / real tokens | CPU s per step | real tokens / CPU s |")
    print("|---|---:|---:|---:|")
    for name in ("padded", "packed"):
        v = d[name]
        print(f"| {name} | {v['computed_tokens'] / v['real_tokens']:.2f} | {v['step_cpu_s']:.2f} | "
              f"{v['real_tokens_per_cpu_s']:,.0f} |")
    print(f"packed is {d['speedup_packed']:.2f}x faster per step ({args.batch} pairs per batch)")


if __name__ == "__main__":
    main()
