"""`trainers rm`, `dpo` and `rlhf` end to end (subprocesses, as a user runs them) on CPU.

Pairs from the real text in tests/data (preference_data.review_offtopic_pairs: a real review
with its correct verdict chosen, a real ShareGPT answer to another question rejected), rendered
with `corpuskit render --mode preference|prompt`, trained on a tiny random LLaMA.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from corpuskit.cli import main as corpuskit
from preference_data import review_offtopic_pairs, write_jsonl
from trainers_helpers import TINY_CONFIG, deepspeed_launcher, details, run_trainers, tensorboard_tags  # noqa: F401
from trainers.cli import main as trainers

pytestmark = pytest.mark.xdist_group("align")


def ck(*args):
    result = CliRunner().invoke(corpuskit, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def align(tmp_path_factory, llama2_tokenizer_dir):
    w = tmp_path_factory.mktemp("align")
    shutil.copytree(llama2_tokenizer_dir, w / "tok")
    ck("template", "export", "llama2-chinese", "--tokenizer", w / "tok")
    write_jsonl(w / "pairs.jsonl", review_offtopic_pairs(120))
    ck("render", w / "pairs.jsonl", "--tokenizer", w / "tok", "--mode", "preference", "--max-length", 256,
       "-o", w / "pairs")
    ck("render", w / "pairs.jsonl", "--tokenizer", w / "tok", "--mode", "prompt", "--max-length", 128,
       "-o", w / "prompts")
    return w


def common(data, model, tok, out):
    return ["--data", data, "--model", model, "--tokenizer", tok, "--output", out]


@pytest.fixture(scope="module")
def reward_model(align):
    """A reward model trained with DeepSpeed ZeRO-2 on 96 pairs, 24 held out."""
    out = align / "rm-run"
    run_trainers("rm", *common(align / "pairs", TINY_CONFIG, align / "tok", out), "--deepspeed", "zero2",
                 "--max-steps", 24, "--batch-size", 8, "--lr", 3e-3, "--eval-fraction", 0.2, "--logging-steps", 4)
    return out


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs(reward_model):
    import torch
    from transformers import AutoModelForSequenceClassification

    d = details(reward_model)
    assert d["eval_pairs"] == 24 and d["train_pairs"] == 96 and d["zero_stage"] == 2
    assert d["eval_accuracy"] >= 0.9 > d["eval_accuracy_before"] - 0.2  # chance is 0.5
    model = AutoModelForSequenceClassification.from_pretrained(reward_model / "model")
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    with torch.no_grad():
        assert model(torch.tensor([[1, 12968, 29901, 2]])).logits.shape == (1, 1)
    assert "train/accuracy" in tensorboard_tags(reward_model)


@pytest.mark.slow
def test_dpo_implicit_reward_accuracy_and_margin_grow(align):
    out = align / "dpo-run"
    run_trainers("dpo", *common(align / "pairs", TINY_CONFIG, align / "tok", out), "--max-steps", 10,
                 "--batch-size", 4, "--lr", 3e-3, "--eval-fraction", 0.2, "--logging-steps", 1, "--beta", 0.1)
    d = details(out)
    train, held_out = d["train"], d["eval"]
    assert train["rewards/accuracies"]["last"] >= 0.9 and held_out["rewards/accuracies"] >= 0.9
    assert train["logp_margin"]["last"] > train["logp_margin"]["first"]
    assert train["rewards/margins"]["last"] > train["rewards/margins"]["first"] and held_out["rewards/margins"] > 0
    assert d["reference"] == "starting model" and (out / "model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_rlhf_mean_reward_rises_with_the_trained_reward_model(align, reward_model, tiny_model_dir):
    out = align / "rlhf-run"
    run_trainers("rlhf", *common(align / "prompts", tiny_model_dir, align / "tok", out), "--reward-model",
                 reward_model / "model", "--max-steps", 12, "--batch-size", 8, "--num-generations", 4,
                 "--max-completion-length", 12, "--lr", 3e-3, "--logging-steps", 1)
    d = details(out)
    rewards = d["reward"]
    assert len(rewards) == 12 and len(d["kl"]) == 12
    assert d["mean_reward_last_quarter"] > d["mean_reward_first_quarter"], rewards
    assert "train/reward" in tensorboard_tags(out)


@pytest.mark.slow
def test_lora_reward_model_is_merged_into_a_loadable_model(align, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    out = align / "rm-lora"
    run_trainers("rm", *common(align / "pairs", tiny_model_dir, align / "tok", out), "--lora", "--max-steps", 2,
                 "--batch-size", 4, "--eval-fraction", 0.1, "--gradient-checkpointing")
    assert details(out)["adapter"] == "lora" and not (out / "model" / "adapter_config.json").exists()
    AutoModelForSequenceClassification.from_pretrained(out / "model")


def invoke(*args):
    result = CliRunner().invoke(trainers, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_bad_inputs_are_one_line_errors(align, llama2_tokenizer_dir, tiny_model_dir, tmp_path):
    # prompt data to dpo, pairs to rlhf: each says which render mode it needs
    res = invoke("dpo", *common(align / "prompts", TINY_CONFIG, align / "tok", tmp_path / "a"))
    assert res.exit_code == 1 and "render --mode preference" in res.output and "Traceback" not in res.output
    res = invoke("rlhf", *common(align / "pairs", tiny_model_dir, align / "tok", tmp_path / "b"),
                 "--reward-model", tiny_model_dir)
    assert res.exit_code == 1 and "render --mode prompt" in res.output
    # a tokenizer other than the one the data was rendered with
    from transformers import AddedToken, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(align / "tok")
    tok.add_tokens([AddedToken("好评", normalized=False)])
    tok.save_pretrained(tmp_path / "tok2")
    res = invoke("rm", *common(align / "pairs", TINY_CONFIG, tmp_path / "tok2", tmp_path / "c"))
    assert res.exit_code == 1 and "sha256" in res.output and "manifest.json" in res.output
    # rlhf: a causal LM is not a reward model, and batches must hold whole groups of replies
    res = invoke("rlhf", *common(align / "prompts", tiny_model_dir, align / "tok", tmp_path / "d"),
                 "--reward-model", tiny_model_dir, "--batch-size", 6, "--num-generations", 4)
    assert res.exit_code == 1 and "not a one-score sequence-classification model" in res.output
    assert "multiple of --num-generations" in res.output
    res = invoke("dpo", *common(align / "pairs", TINY_CONFIG, align / "tok", tmp_path / "e"), "--prefix-tuning")
    assert res.exit_code == 1 and "--prefix-tuning is not supported" in res.output
    for name in ("a", "b", "c", "d", "e"):
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("command", ["rm", "dpo", "rlhf"])
def test_commands_have_help_with_an_example(command):
    res = invoke(command, "--help")
    assert res.exit_code == 0 and f"trainers {command}" in res.output and "render --mode" in res.output
