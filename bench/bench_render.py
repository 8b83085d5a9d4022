"""Render speed on real ShareGPT: `corpuskit render --workers 2` vs (a) one batched fast-tokenizer
call on the same rendered text (the ceiling) and (b) a per-sample, per-message loop in the
LLaMA-Factory style (tokenize each turn separately, build the mask in Python), in one run.

    .venv/bin/python bench/bench_render.py [--records 5000]

Writes bench/out/render.json. The first run converts the full ShareGPT file with `corpuskit convert`
(cached in bench/out/work/).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import bench_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
WORK = OUT / "work"
SHAREGPT = bench_data.SHAREGPT
LLAMA2 = Path(os.environ.get("CORPUSKIT_LLAMA2_MODEL", ROOT.parent / "shared/tokenizers/llama2/tokenizer.model"))
CLI = [str(ROOT / ".venv" / "bin" / "corpuskit")]
TEMPLATE = "llama2-chinese"


def sh(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def prepare() -> tuple[Path, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    chats, tok = WORK / "sharegpt.jsonl", WORK / "tok"
    if not chats.exists():
        sh(CLI + ["convert", SHAREGPT, "-o", chats, "--to", "sft"])
    if not (tok / "tokenizer.json").exists():
        from corpuskit.vocab.hf import write_hf_tokenizer
        write_hf_tokenizer(LLAMA2, tok)
    return chats, tok


# -- (b) LLaMA-Factory-style baseline: one tokenizer call per message ----------------------------
_ENC = None


def _init(tok_path, via_transformers):
    """via_transformers: `tokenizer.encode` as LLaMA-Factory calls it; else the raw Rust tokenizer."""
    global _ENC
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if via_transformers:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(tok_path)
        _ENC = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    else:
        from tokenizers import Tokenizer
        raw = Tokenizer.from_file(str(Path(tok_path) / "tokenizer.json"))
        _ENC = lambda s: raw.encode(s, add_special_tokens=False).ids  # noqa: E731


def _loop_chunk(lines: list[str]) -> int:
    enc = _ENC
    tokens = 0
    for line in lines:
        messages = json.loads(line)["messages"]
        input_ids, labels = [], []
        for m in messages:
            if m["role"] == "assistant":
                prefix = enc("<s>Assistant:")
                target = enc(" " + m["content"] + "\n</s>")
                input_ids += prefix + target
                labels += [-100] * len(prefix) + target
            else:
                role = "Human" if m["role"] == "user" else "System"
                ids = enc(f"<s>{role}: {m['content']}\n</s>")
                input_ids += ids
                labels += [-100] * len(ids)
        assert len(input_ids) == len(labels)
        tokens += len(input_ids)
    return tokens


def loop_baseline(lines: list[str], tok: Path, workers: int, via_transformers: bool) -> tuple[float, int]:
    """Same worker count as render, and like render's in-process time it includes starting the
    workers and loading the tokenizer in each (render's time also includes reading and writing)."""
    chunks = [lines[i:i + 256] for i in range(0, len(lines), 256)]
    t = time.perf_counter()
    with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(str(tok), via_transformers)) as pool:
        tokens = sum(pool.map(_loop_chunk, chunks))
        return time.perf_counter() - t, tokens


def ceiling(subset: Path, tok: Path) -> tuple[float, int]:
    """Render the texts (not timed), then one batched encode of all of them (timed)."""
    from corpuskit.ingest import iter_records
    from corpuskit.records import Record
    from corpuskit.render.templates import load_template
    from corpuskit.render.tokenizer_dir import TokenizerDir
    from tokenizers import Tokenizer

    td = TokenizerDir.load(tok)
    tpl = load_template(TEMPLATE)
    texts = [tpl.render(r.messages, td.special_tokens_map())[0]
             for r in iter_records([str(subset)], to="sft") if isinstance(r, Record)]
    fast = Tokenizer.from_file(str(tok / "tokenizer.json"))
    t = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), 2048):
        tokens += sum(len(e.ids) for e in fast.encode_batch(texts[i:i + 2048], add_special_tokens=False))
    return time.perf_counter() - t, tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=5000, help="conversations in the timed subset")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    chats, tok = prepare()
    with chats.open(encoding="utf-8") as fh:  # not splitlines(): content holds U+2028
        lines = fh.readlines()[: args.records]
    subset = WORK / "subset.jsonl"
    subset.write_text("".join(lines), encoding="utf-8")
    rendered = WORK / "rendered-subset"
    # no truncation in any contender, so all three tokenize the same text
    ours_s = sh(CLI + ["render", subset, "--tokenizer", tok, "--template", TEMPLATE, "--max-length", 10**7,
                       "-o", rendered, "--workers", args.workers])
    ours_tokens = json.loads((rendered / "manifest.json").read_text())["tokens"]
    # the CLI's wall time also counts interpreter start and imports (~1-2 s): compare without them
    ours_cli_s, ours_s = ours_s, json.loads((rendered / "report.json").read_text())["timings"]["render"]
    os.environ.pop("TOKENIZERS_PARALLELISM", None)
    ceil_s, ceil_tokens = ceiling(subset, tok)
    loop_s, loop_tokens = loop_baseline(lines, tok, args.workers, via_transformers=True)
    raw_s, raw_tokens = loop_baseline(lines, tok, args.workers, via_transformers=False)
    res = {
        "records": len(lines), "workers": args.workers, "template": TEMPLATE,
        "render": {"seconds": round(ours_s, 2), "cli_wall_seconds": round(ours_cli_s, 2), "tokens": ours_tokens,
                   "tokens_per_s": round(ours_tokens / ours_s)},
        "ceiling_batched_tokenizer": {"seconds": round(ceil_s, 2), "tokens": ceil_tokens,
                                      "tokens_per_s": round(ceil_tokens / ceil_s)},
        "llama_factory_loop": {"seconds": round(loop_s, 2), "tokens": loop_tokens,
                               "tokens_per_s": round(loop_tokens / loop_s)},
        "per_message_loop_raw_rust_tokenizer": {"seconds": round(raw_s, 2), "tokens": raw_tokens,
                                                "tokens_per_s": round(raw_tokens / raw_s)},
    }
    res["render_vs_ceiling"] = round(res["render"]["tokens_per_s"] / res["ceiling_batched_tokenizer"]["tokens_per_s"], 3)
    res["render_vs_loop"] = round(res["render"]["tokens_per_s"] / res["llama_factory_loop"]["tokens_per_s"], 3)
    res["render_vs_raw_loop"] = round(res["render"]["tokens_per_s"]
                                      / res["per_message_loop_raw_rust_tokenizer"]["tokens_per_s"], 3)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "render.json").write_text(json.dumps(res, indent=2) + "\n")
    json.dump(res, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
