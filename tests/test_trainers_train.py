"""Real training runs through the `trainers` executable (subprocesses, as a user runs them).

A tiny random LLaMA on real ShareGPT rows tokenized with the LLaMA-2 tokenizer. DeepSpeed runs on
CPU here; the first run JIT-builds its small shared-memory comm op (~30 s, cached afterwards).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_trainers_fixtures import (TINY_CONFIG, packed_dir, render_samples, sft_samples,  # noqa: F401
                                    sharegpt_pairs, tiny_model_dir, write_packed_dir)

TRAINERS = str(Path(sys.executable).parent / "trainers")
pytestmark = pytest.mark.slow


def run_trainers(*args, check=True, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """`trainers ARGS`, or `LAUNCHER... trainers ARGS` (the `deepspeed` launcher form of the README)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TENSORBOARD_LOGGING_DIR"):
        env.pop(key, None)
    cmd = [*(launcher or []), TRAINERS, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def deepspeed_launcher() -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "1", "--master_port", str(port)]


def losses(run_dir: Path) -> list[float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def details(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())["details"]


def tensorboard_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (run_dir / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


def common(pdir, model, tokenizer, out):
    return ["--data", pdir, "--model", model, "--tokenizer", tokenizer, "--output", out]


def test_full_sft_with_zero2_trains_logs_and_saves(packed_dir, llama2_tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), "--deepspeed", "zero2",
                 "--max-steps", 4, "--batch-size", 2, "--lr", 1e-3)
    d = details(out)
    assert d["steps"] == 4 and d["zero_stage"] == 2 and d["attention"] == "sdpa"
    # bucket 0 holds 6 rows (3 batches of 2), then bucket 1 starts: buckets are trained in order
    state = json.loads((out / "trainer_state.json").read_text())
    assert [h["bucket"] for h in state["log_history"] if "loss" in h] == [0, 0, 0, 1]
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    ds = json.loads((out / "ds_config.json").read_text())
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["zero_optimization"]["stage"] == 2
    tags = tensorboard_tags(out)
    for tag in ("train/loss", "train/learning_rate", "train/tokens_per_second", "train/token_accuracy",
                "train/bucket", "train/category/chat"):
        assert tag in tags, (tag, sorted(tags))
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"input": 11, "kept": 11, "rejected": {}}


def test_zero3_under_the_deepspeed_launcher_trains_and_saves_a_loadable_full_model(packed_dir, llama2_tokenizer_dir,
                                                                                    tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    # as the README launches it: `deepspeed --num_gpus N $(which trainers) sft ...` (the launcher puts
    # --local_rank=0 before the subcommand and sets RANK/WORLD_SIZE/MASTER_PORT)
    proc = run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), "--deepspeed", "zero3",
                        "--max-steps", 2, "--grad-accum", 2, launcher=deepspeed_launcher())
    assert "--local_rank=0" in proc.stdout + proc.stderr
    assert details(out)["zero_stage"] == 3 and details(out)["steps"] == 2
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model.get_input_embeddings().weight.shape == (32000, 64)


def test_tiny_fixed_set_overfits(llama2_tokenizer_dir, sft_samples, tmp_path):
    pdir = write_packed_dir(tmp_path / "pdir", llama2_tokenizer_dir, {"one.jsonl": sft_samples[:2]}, seq_len=256)
    out = tmp_path / "run"
    run_trainers("sft", *common(pdir, TINY_CONFIG, llama2_tokenizer_dir, out), "--max-steps", 40, "--lr", 3e-3,
                 "--lr-scheduler", "constant", "--logging-steps", 1)
    got = losses(out)
    assert len(got) == 40
    assert got[-1] < 0.3 * got[0], got


def test_resume_continues_exactly(packed_dir, llama2_tokenizer_dir, tmp_path):
    args = ["--deepspeed", "zero2", "--lr", 1e-3, "--lr-scheduler", "constant"]
    straight = tmp_path / "straight"
    run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, straight), *args, "--max-steps", 4)
    resumed = tmp_path / "resumed"
    run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, resumed), *args, "--max-steps", 2,
                 "--save-steps", 2)
    run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, resumed), *args, "--max-steps", 4,
                 "--resume")
    assert len(losses(straight)) == 4
    assert losses(resumed) == pytest.approx(losses(straight), abs=1e-5)


CJK_WORDS = ["中国", "我们", "可以", "一个", "什么", "这个"]


@pytest.fixture(scope="module")
def extended(tmp_path_factory, llama2_tokenizer_dir):
    """A LLaMA-2 tokenizer with a few CJK words added, and Chinese-heavy rows rendered with it."""
    from transformers import AddedToken, AutoTokenizer

    root = tmp_path_factory.mktemp("extended")
    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    tok.add_tokens([AddedToken(w, normalized=False) for w in CJK_WORDS])
    tok.save_pretrained(root / "tok")
    tok = AutoTokenizer.from_pretrained(root / "tok")
    pairs = [p for p in sharegpt_pairs(1000, every_turn=True) if sum("\u4e00" <= c <= "\u9fff" for c in p[0] + p[1]) > 50]
    samples = render_samples(tok, pairs, max_len=128)
    assert any(t >= 32000 for s in samples for t in s["input_ids"])  # the new pieces are really used
    pdir = write_packed_dir(root / "pdir", root / "tok", {"zh.jsonl": samples}, seq_len=256)
    return root / "tok", pdir


def test_lora_on_extended_vocab_trains_embeddings_and_merges(extended, tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tok_dir, pdir = extended
    out = tmp_path / "lora"
    run_trainers("sft", *common(pdir, tiny_model_dir, tok_dir, out), "--deepspeed", "zero2", "--lora",
                 "--lora-r", 4, "--lora-alpha", 8, "--max-steps", 2)
    d = details(out)
    assert d["adapter"] == "lora"
    assert d["embedding_resize"] == {"old_rows": 32000, "new_rows": 32006, "initialised_from_pieces": 6,
                                     "initialised_from_mean": 0}
    adapter_cfg = json.loads((out / "model" / "adapter_config.json").read_text())
    assert set(adapter_cfg["modules_to_save"]) == {"embed_tokens", "lm_head"}
    assert adapter_cfg["r"] == 4 and adapter_cfg["lora_alpha"] == 8

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    base.resize_token_embeddings(32006, mean_resizing=False)
    peft_model = PeftModel.from_pretrained(base, out / "model").eval()
    merged_dir = tmp_path / "merged"
    proc = run_trainers("merge-lora", "--adapter", out / "model", "--base", tiny_model_dir, "-o", merged_dir)
    assert str(merged_dir) in proc.stderr
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert merged.get_input_embeddings().weight.shape[0] == 32006
    ids = torch.tensor([[1, 32000, 32001, 450, 32005]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft_model(ids).logits, atol=1e-4)


def test_prefix_tuning_saves_an_adapter_that_loads_back(packed_dir, llama2_tokenizer_dir, tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "prefix"
    run_trainers("sft", *common(packed_dir, tiny_model_dir, llama2_tokenizer_dir, out), "--deepspeed", "zero2",
                 "--prefix-tuning", "--pre-seq-len", 4, "--max-steps", 2)
    d = details(out)
    assert d["adapter"] == "prefix-tuning" and d["trainable_params"] == 4 * 2 * 2 * 64  # virtual tokens x layers x k,v x hidden
    adapter_cfg = json.loads((out / "model" / "adapter_config.json").read_text())
    assert adapter_cfg["peft_type"] == "PREFIX_TUNING" and adapter_cfg["num_virtual_tokens"] == 4
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out / "model").eval()
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[1, 450, 4996]]), attention_mask=torch.ones(1, 3, dtype=torch.long)
                     ).logits.shape == (1, 3, 32000)
    bad = run_trainers("merge-lora", "--adapter", out / "model", "--base", tiny_model_dir, "-o", tmp_path / "m",
                       check=False)
    assert bad.returncode == 1 and "PREFIX_TUNING adapter cannot be merged" in bad.stderr
    assert "Traceback" not in bad.stderr
