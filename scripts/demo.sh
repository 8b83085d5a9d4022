#!/usr/bin/env bash
# The whole pipeline on the real samples shipped in tests/data. Run it through `make demo`,
# which installs into .venv first. Every stage writes report.json next to its outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
OUT=${DEMO_OUT:-demo-out}
BASE_MODEL=${LLAMA2_MODEL:-../shared/tokenizers/llama2/tokenizer.model}
rm -rf "$OUT"; mkdir -p "$OUT"
# DEMO_QUICK=1 (used by tests/test_demo.py) trains the fewest steps that still prove the chain.
if [ -n "${DEMO_QUICK:-}" ]; then PT_LEN="--max-steps 2"; SFT_LEN="--max-steps 2"; LORA_LEN="--max-steps 1"
else PT_LEN="--max-steps 20"; SFT_LEN="--epochs 1"; LORA_LEN="--max-steps 5"; fi
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "convert: ShareGPT (real file) and People's Daily / reviews to canonical records"
corpuskit convert tests/data/sharegpt_sample.json -o "$OUT/chats.jsonl" --to sft --repair leading-assistant
echo "-- the real ShareGPT file is cut off mid-record; convert keeps what is complete and says where:"
corpuskit convert tests/data/sharegpt_truncated_tail.json -o "$OUT/tail.jsonl" --to sft
corpuskit convert tests/data/peoples_daily_199801_head.txt --from peoples-daily -o "$OUT/news.jsonl" --category news
corpuskit convert tests/data/reviews_pos_head.txt tests/data/reviews_neg_head.txt -o "$OUT/reviews.jsonl" --category reviews

step "validate: what a data pull request check prints"
corpuskit validate "$OUT/chats.jsonl" "$OUT/news.jsonl" "$OUT/reviews.jsonl"
corpuskit validate "$OUT/chats.jsonl" "$OUT/news.jsonl" --format json > "$OUT/validate.jsonl"

step "clean: filters, exact and near-duplicate removal (every drop has a reason)"
corpuskit clean "$OUT/news.jsonl" "$OUT/reviews.jsonl" -o "$OUT/clean-pretrain" --workers 2
corpuskit clean "$OUT/chats.jsonl" -o "$OUT/clean-chats" --workers 2

step "train-vocab and merge-vocab: a Chinese SentencePiece vocabulary merged into LLaMA-2"
corpuskit train-vocab "$OUT/news.jsonl" "$OUT/reviews.jsonl" -o "$OUT/zh-vocab" --vocab-size 3000 \
  --character-coverage 0.995 --pre-tokenize jieba
corpuskit merge-vocab --base "$BASE_MODEL" --add "$OUT/zh-vocab/tokenizer.model" -o "$OUT/llama2-zh" \
  --eval "$OUT/news.jsonl" --eval "$OUT/chats.jsonl"

step "stats and bucket: records, characters and tokens per category, then 4 buckets mixing news 2:1"
corpuskit stats "$OUT/clean-pretrain" --tokenizer "$OUT/llama2-zh" --plot "$OUT/lengths.png"
corpuskit bucket "$OUT/clean-pretrain" -o "$OUT/buckets" -n 4 --weights news=2 --seed 7

step "template export, render, pack: exact label masks, then packing that loses no token"
corpuskit template export llama2-chinese --tokenizer "$OUT/llama2-zh" -o "$OUT/tokenizer"
corpuskit render "$OUT/clean-chats/clean.jsonl" --tokenizer "$OUT/tokenizer" -o "$OUT/rendered" \
  --max-length 1024 --workers 2 --show 1
corpuskit pack "$OUT/rendered" -o "$OUT/packed" --seq-len 1024
corpuskit render "$OUT/buckets" --tokenizer "$OUT/tokenizer" --mode pretrain -o "$OUT/pt-rendered" --max-length 512
corpuskit pack "$OUT/pt-rendered" -o "$OUT/pt-packed" --seq-len 512

step "trainers: continued pretraining, then SFT, of a tiny random LLaMA on CPU (DeepSpeed ZeRO-2)"
TINY=trainers/configs/tiny_llama.json
trainers pretrain --data "$OUT/pt-packed" --model "$TINY" --tokenizer "$OUT/tokenizer" -o "$OUT/run-pretrain" \
  --deepspeed zero2 $PT_LEN --lr 2e-3 --logging-steps 5
trainers sft --data "$OUT/packed" --model "$OUT/run-pretrain/model" --tokenizer "$OUT/tokenizer" -o "$OUT/run-sft" \
  --deepspeed zero2 $SFT_LEN --lr 1e-3 --logging-steps 5
step "trainers generate and eval: answer prompts with the chat template of training; held-out loss per bucket"
trainers generate --model "$OUT/run-sft/model" "猫山王是什么意思" "What is the capital of France?" \
  --max-new-tokens 24 -o "$OUT/answers.jsonl"
echo "-- a 4M-parameter model after a few CPU minutes: the point is the training format, not the answers"
head -n 2 "$OUT/answers.jsonl"
trainers eval --data "$OUT/packed" --model "$OUT/run-pretrain/model" -o "$OUT/eval-pretrain"
trainers eval --data "$OUT/packed" --model "$OUT/run-sft/model" -o "$OUT/eval-sft"
echo "-- LoRA on the continued-pretraining model (its embeddings already hold the extended vocabulary, so only the adapter trains), merged back into a full model"
trainers sft --data "$OUT/packed" --model "$OUT/run-pretrain/model" --tokenizer "$OUT/tokenizer" -o "$OUT/run-lora" \
  --lora --lora-r 4 $LORA_LEN --lr 1e-3 --logging-steps 1
trainers merge-lora --adapter "$OUT/run-lora/model" --base "$OUT/run-pretrain/model" -o "$OUT/merged"

step "alignment: preference pairs -> reward model -> DPO on the SFT model (TRL, CPU)"
echo "-- pairs from the real samples: a review with its correct verdict (chosen) vs a ShareGPT answer to another question"
python tests/preference_data.py "$OUT/pairs-raw.jsonl" 120
corpuskit convert "$OUT/pairs-raw.jsonl" -o "$OUT/pairs.jsonl" --to preference
corpuskit render "$OUT/pairs.jsonl" --tokenizer "$OUT/tokenizer" --mode preference -o "$OUT/pairs-rendered" \
  --max-length 256 --show 1
trainers rm --data "$OUT/pairs-rendered" --model "$OUT/run-sft/model" --tokenizer "$OUT/tokenizer" -o "$OUT/run-rm" \
  --max-steps 20 --batch-size 8 --lr 3e-3 --eval-fraction 0.2 --logging-steps 5
trainers dpo --data "$OUT/pairs-rendered" --model "$OUT/run-sft/model" --tokenizer "$OUT/tokenizer" -o "$OUT/run-dpo" \
  --max-steps 4 --batch-size 4 --lr 1e-3 --eval-fraction 0.1 --logging-steps 1

step "outputs"
cat <<EOT
  canonical records      $OUT/chats.jsonl, $OUT/news.jsonl, $OUT/reviews.jsonl (+ .rejected.jsonl)
  validation (json)      $OUT/validate.jsonl
  cleaned                $OUT/clean-pretrain/, $OUT/clean-chats/   (report.md explains every drop)
  buckets                $OUT/buckets/bucket-0000*.jsonl + manifest.json
  length histogram       $OUT/lengths.png
  merged tokenizer       $OUT/llama2-zh/   (merge-report.md), chat tokenizer $OUT/tokenizer/
  rendered / packed      $OUT/rendered/, $OUT/packed/, $OUT/pt-rendered/, $OUT/pt-packed/
  trained models         $OUT/run-pretrain/model/, $OUT/run-sft/model/, LoRA $OUT/run-lora/model/ -> $OUT/merged/   (TensorBoard: tensorboard --logdir $OUT/run-sft/tensorboard)
  answers / eval         $OUT/answers.jsonl, $OUT/eval-pretrain/report.md vs $OUT/eval-sft/report.md
  preference pairs       $OUT/pairs.jsonl -> $OUT/pairs-rendered/ ; reward model $OUT/run-rm/model/, DPO $OUT/run-dpo/model/
EOT
