"""The whole chain through the command lines: convert -> render -> pack -> trainers sft/pretrain."""

from __future__ import annotations

import json

import pytest

from trainers_helpers import TINY_CONFIG, ck, details, losses, run_trainers

pytestmark = pytest.mark.slow


def test_sharegpt_to_trained_model(data_dir, llama2_tokenizer_dir, tmp_path):
    ck("convert", data_dir / "sharegpt_sample.json", "-o", tmp_path / "chats.jsonl", "--to", "sft")
    ck("render", tmp_path / "chats.jsonl", "--tokenizer", llama2_tokenizer_dir, "--template", "llama2",
       "--max-length", 512, "-o", tmp_path / "rendered")
    ck("pack", tmp_path / "rendered", "-o", tmp_path / "packed", "--seq-len", 1024)
    manifest = json.loads((tmp_path / "packed" / "manifest.json").read_text())
    out = tmp_path / "run"
    run_trainers("sft", "--data", tmp_path / "packed", "--model", TINY_CONFIG, "--tokenizer", llama2_tokenizer_dir,
                 "--output", out, "--deepspeed", "zero2", "--max-steps", 2, "--batch-size", 2)
    assert details(out)["steps"] == 2 and len(losses(out)) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["input"] == manifest["sequences"] == report["counts"]["kept"]


def test_peoples_daily_continued_pretraining(data_dir, llama2_tokenizer_dir, tmp_path):
    ck("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", tmp_path / "news.jsonl")
    ck("render", tmp_path / "news.jsonl", "--tokenizer", llama2_tokenizer_dir, "--mode", "pretrain",
       "--max-length", 256, "-o", tmp_path / "rendered")
    ck("pack", tmp_path / "rendered", "-o", tmp_path / "packed", "--seq-len", 512)
    out = tmp_path / "run"
    wrong = run_trainers("sft", "--data", tmp_path / "packed", "--model", TINY_CONFIG, "--tokenizer",
                         llama2_tokenizer_dir, "--output", out, "--max-steps", 1, check=False)
    assert wrong.returncode == 1 and "use `trainers pretrain`" in wrong.stderr
    run_trainers("pretrain", "--data", tmp_path / "packed", "--model", TINY_CONFIG, "--tokenizer",
                 llama2_tokenizer_dir, "--output", out, "--max-steps", 3, "--batch-size", 2)
    assert details(out)["steps"] == 3
