#!/usr/bin/env bash
# The whole pipeline on shipped sample data. Run through `make demo` (which installs first).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
OUT=${DEMO_OUT:-demo-out}
rm -rf "$OUT"; mkdir -p "$OUT"

echo "== convert: ShareGPT (real file, with rejects) and People's Daily to canonical records"
corpuskit convert tests/data/sharegpt_sample.json -o "$OUT/chats.jsonl" --to sft
corpuskit convert tests/data/sharegpt_truncated_tail.json -o "$OUT/tail.jsonl" --to sft || true
corpuskit convert tests/data/peoples_daily_199801_head.txt --from peoples-daily -o "$OUT/news.jsonl"

echo
echo "Outputs are under $OUT/"
