"""Real training runs through the `trainers` executable (subprocesses, as a user runs them).

A tiny random LLaMA on real ShareGPT rows tokenized with the LLaMA-2 tokenizer. DeepSpeed runs on
CPU here; the first run JIT-builds its small shared-memory comm op (~30 s, cached afterwards).
"""

from __future__ import annotations

import json

import pytest

from trainers_helpers import (TINY_CONFIG, common, deepspeed_launcher, details, losses, render_and_pack,
                              run_trainers, select_records, tensorboard_tags)

pytestmark = pytest.mark.slow


def test_full_sft_with_zero2_trains_logs_and_saves(packed_dir, llama2_tokenizer_dir, tmp_path):
    out = tmp_path / "run"
    run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), "--deepspeed", "zero2",
                 "--max-steps", 4, "--batch-size", 3, "--lr", 1e-3)
    d = details(out)
    assert d["steps"] == 4 and d["zero_stage"] == 2 and d["attention"] == "sdpa"
    # buckets are trained in order: the bucket logged at each step is that of its batch's last row
    manifest = json.loads((packed_dir / "manifest.json").read_text())
    group_of = [gi for gi, g in enumerate(manifest["groups"]) for _ in range(g["start"], g["end"])]
    expected = [group_of[min(3 * (step + 1), len(group_of)) - 1] for step in range(4)]
    assert expected[0] == 0 and expected[-1] == 1
    state = json.loads((out / "trainer_state.json").read_text())
    assert [h["bucket"] for h in state["log_history"] if "loss" in h] == expected
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    ds = json.loads((out / "ds_config.json").read_text())
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["zero_optimization"]["stage"] == 2
    tags = tensorboard_tags(out)
    for tag in ("train/loss", "train/learning_rate", "train/tokens_per_second", "train/token_accuracy",
                "train/bucket", "train/category/chat"):
        assert tag in tags, (tag, sorted(tags))
    report = json.loads((out / "report.json").read_text())
    n = manifest["sequences"]
    assert report["counts"] == {"input": n, "kept": n, "rejected": {}}


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


def test_tiny_fixed_set_overfits(llama2_tokenizer_dir, chats_jsonl, tmp_path):
    first_two = [json.loads(line)["id"] for line in chats_jsonl.read_text().splitlines()[:2]]
    two = select_records(chats_jsonl, tmp_path / "two.jsonl", lambda r: r["id"] in first_two)
    pdir = render_and_pack(two, llama2_tokenizer_dir, tmp_path)
    out = tmp_path / "run"
    run_trainers("sft", *common(pdir, TINY_CONFIG, llama2_tokenizer_dir, out), "--max-steps", 40, "--lr", 3e-3,
                 "--lr-scheduler", "constant", "--logging-steps", 1)
    got = losses(out)
    assert len(got) == 40
    assert got[-1] < 0.3 * got[0], got


CJK_WORDS = ["中国", "我们", "可以", "一个", "什么", "这个"]


@pytest.fixture(scope="module")
def extended(tmp_path_factory, llama2_tokenizer_dir, chats_jsonl):
    """A LLaMA-2 tokenizer with a few CJK words added, and the Chinese-heavy ShareGPT conversations
    rendered and packed with it."""
    from datasets import load_from_disk
    from transformers import AddedToken, AutoTokenizer

    root = tmp_path_factory.mktemp("extended")
    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    tok.add_tokens([AddedToken(w, normalized=False) for w in CJK_WORDS])
    tok.save_pretrained(root / "tok")
    chinese = select_records(chats_jsonl, root / "zh.jsonl", lambda r: sum(
        "\u4e00" <= c <= "\u9fff" for m in r["messages"] for c in m["content"]) > 50)
    pdir = render_and_pack(chinese, root / "tok", root, max_length=128)
    assert any(t >= 32000 for row in load_from_disk(str(pdir))["input_ids"] for t in row)  # the new pieces are used
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
