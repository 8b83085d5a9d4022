"""Where render's time goes outside the tokenizer: `Renderer.process` vs the bare `encode_batch` on
the same rendered text, with labels from span edges (`char_to_token`, current) and from every
token's offsets (the former way), CPU seconds, best of 4, in one process.

    .venv/bin/python bench/bench_render_overhead.py [--records 2000]

Uses the converted ShareGPT file and tokenizer prepared by bench/bench_render.py.
"""

from __future__ import annotations

import argparse
import os
import time

from bench_render import TEMPLATE, prepare


def main() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from corpuskit.ingest import iter_records
    from corpuskit.render import tokenize
    from corpuskit.render.templates import load_template
    from corpuskit.render.tokenizer_dir import TokenizerDir

    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2000)
    args = ap.parse_args()
    chats, tok = prepare()
    td, tpl = TokenizerDir.load(tok), load_template(TEMPLATE)
    recs = []
    for r in iter_records([str(chats)], "auto", "sft", "utf-8"):
        recs.append(r)
        if len(recs) >= args.records:
            break
    chunks = [recs[i:i + 256] for i in range(0, len(recs), 256)]
    texts = [[tpl.render(x.messages, td.special_tokens_map())[0] for x in c] for c in chunks]
    fast = tokenize.Renderer(td, tpl, tokenize.RenderOptions(max_length=10**7))
    slow = tokenize.Renderer(td, tpl, tokenize.RenderOptions(max_length=10**7))
    slow._labels_fast = lambda enc, ids, n, spans: slow._labels(ids, tokenize._offsets(enc), spans)
    best: dict[str, float] = {}
    for _ in range(4):
        for name in ("tokenizer", "offsets", "span_edges"):
            t = time.process_time()
            if name == "tokenizer":
                for tx in texts:
                    td.tokenizer.encode_batch(tx, add_special_tokens=False)
            else:
                for c in chunks:
                    (slow if name == "offsets" else fast).process(c)
            best[name] = min(best.get(name, 1e9), time.process_time() - t)
    e = best["tokenizer"]
    print(f"tokenizer alone {e:.2f}s CPU")
    for k in ("offsets", "span_edges"):
        print(f"labels from {k}: process {best[k]:.2f}s, outside the tokenizer {best[k] - e:.2f}s "
              f"({(best[k] / e - 1) * 100:.0f}% of tokenizer time)")


if __name__ == "__main__":
    main()
