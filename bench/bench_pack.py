"""Packing on real ShareGPT: fill ratio and padding waste of `corpuskit pack` (bfd, greedy) vs no
packing (pad every sample to --seq-len, or to the longest sample of its batch), and the speed of
the bisect-based BFD vs a plain O(n * bins) best-fit scan, in one run.

    .venv/bin/python bench/bench_pack.py

Uses the full ShareGPT file converted by bench/bench_render.py (bench/out/work/sharegpt.jsonl),
renders it with llama2-chinese at --max-length 4096, packs at 4096. Writes bench/out/pack.json.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from bench_render import CLI, OUT, TEMPLATE, WORK, prepare, sh

SEQ = 4096
BATCH = 8


def naive_best_fit(lengths: list[int], capacity: int) -> int:
    room: list[int] = []
    for n in sorted(lengths, reverse=True):
        best = -1
        for k, r in enumerate(room):
            if r >= n and (best < 0 or r < room[best]):
                best = k
        if best < 0:
            room.append(capacity - n)
        else:
            room[best] -= n
    return len(room)


def main() -> None:
    chats, tok = prepare()
    rendered = WORK / "rendered-4096"
    render_s = sh(CLI + ["render", chats, "--tokenizer", tok, "--template", TEMPLATE, "--max-length", SEQ,
                         "-o", rendered, "--workers", 2])
    from datasets import load_from_disk

    lengths = np.array([len(x) for x in load_from_disk(str(rendered)).data.column("input_ids").to_pylist()])
    tokens = int(lengths.sum())
    res = {"samples": len(lengths), "tokens": tokens, "seq_len": SEQ, "render_seconds": round(render_s, 2)}
    for strategy in ("bfd", "greedy"):
        out = WORK / f"packed-{strategy}"
        secs = sh(CLI + ["pack", rendered, "-o", out, "--seq-len", SEQ, "--strategy", strategy])
        m = json.loads((out / "manifest.json").read_text())
        res[strategy] = {"sequences": m["sequences"], "fill_ratio": m["fill_ratio"],
                         "padding_fraction": round(1 - m["fill_ratio"], 4), "seconds": round(secs, 2)}
    res["unpacked_pad_to_seq_len"] = {"sequences": len(lengths), "fill_ratio": round(tokens / (len(lengths) * SEQ), 4)}
    order = np.random.default_rng(0).permutation(len(lengths))
    padded = sum(int(lengths[order[i:i + BATCH]].max()) * len(order[i:i + BATCH]) for i in range(0, len(order), BATCH))
    res[f"unpacked_pad_to_longest_in_batch_of_{BATCH}"] = {"fill_ratio": round(tokens / padded, 4)}

    from corpuskit.pack.bfd import best_fit_decreasing

    t = time.perf_counter()
    n_bfd = len(best_fit_decreasing(lengths.tolist(), SEQ))
    bfd_s = time.perf_counter() - t
    t = time.perf_counter()
    n_naive = naive_best_fit(lengths.tolist(), SEQ)
    naive_s = time.perf_counter() - t
    assert n_bfd == n_naive
    res["bfd_plan"] = {"bisect_seconds": round(bfd_s, 4), "naive_scan_seconds": round(naive_s, 2),
                       "speedup": round(naive_s / bfd_s, 1), "bins": n_bfd}
    # no packer can beat this: every sample over seq_len/2 needs a sequence of its own
    lower = max(-(-tokens // SEQ), int((lengths > SEQ // 2).sum()))
    res["optimal_bound"] = {"min_sequences": lower, "max_fill_ratio": round(tokens / (lower * SEQ), 4),
                            "samples_over_half_seq_len": int((lengths > SEQ // 2).sum())}
    # the same conversations rendered at --max-length 2048 (more, shorter samples), packed at 4096
    short = WORK / "rendered-2048"
    sh(CLI + ["render", chats, "--tokenizer", tok, "--template", TEMPLATE, "--max-length", 2048,
              "-o", short, "--workers", 2])
    sh(CLI + ["pack", short, "-o", WORK / "packed-2048", "--seq-len", SEQ])
    m = json.loads((WORK / "packed-2048" / "manifest.json").read_text())
    res["bfd_max_length_2048"] = {"samples": m["samples"], "sequences": m["sequences"], "fill_ratio": m["fill_ratio"]}
    (OUT / "pack.json").write_text(json.dumps(res, indent=2) + "\n")
    json.dump(res, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
