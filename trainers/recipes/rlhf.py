"""`trainers rlhf`: the online loop with TRL's RLOOTrainer (TRL 1.x has no PPOTrainer): sample k
replies per prompt, score them with a `trainers rm` model, push the policy towards the better
ones (leave-one-out baseline), with a KL penalty to the reference (the starting model).

Prompts are `corpuskit render --mode prompt` ids (generation prompt included), handed to the
trainer as they are; the reward model scores `prompt ids + sampled ids` directly, so policy and
reward model see the same tokens and nothing is decoded and re-tokenized in between.
"""

from __future__ import annotations

import time
from pathlib import Path

from trainers.recipes import common


class RewardModelScorer:
    """A TRL reward function over a `trainers rm` model directory, scoring token ids."""

    __name__ = "reward_model"

    def __init__(self, path: str, device):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32,
                                                                        trust_remote_code=False).to(device).eval()
        self.pad_id = self.model.config.pad_token_id
        self.device = device

    def __call__(self, prompts, completions, completion_ids, **kwargs) -> list[float]:
        import torch

        seqs = [list(p) + list(c) for p, c in zip(prompts, completion_ids)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        with torch.inference_mode():
            scores = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits[:, 0]
        return scores.float().cpu().tolist()


def id_prompt_rloo_trainer():
    from trl import RLOOTrainer

    class IdPromptRLOOTrainer(RLOOTrainer):
        """RLOOTrainer whose prompts are already token ids (render --mode prompt)."""

        def _tokenize_prompts(self, prompts):
            return [list(p) for p in prompts], None, {}

    return IdPromptRLOOTrainer


def check_reward_model(pre, opts: common.AlignOptions, tokenizer) -> None:
    rm = Path(opts.reward_model)
    if not (rm / "config.json").is_file():
        pre.problems.append(f"--reward-model {rm}: no config.json (pass the model/ folder of a `trainers rm` run)")
        return
    config = common.read_json(rm / "config.json", "the reward model config", common.DataError)
    if config.get("num_labels", len(config.get("id2label", {}))) != 1 or not any(
            a.endswith("ForSequenceClassification") for a in config.get("architectures", [])):
        pre.problems.append(f"--reward-model {rm}: not a one-score sequence-classification model "
                            "(train one with `trainers rm`)")
    if config.get("pad_token_id") is None:
        pre.problems.append(f"--reward-model {rm}/config.json: no pad_token_id")
    if (rm / "tokenizer.json").is_file():
        theirs = common.load_tokenizer(str(rm))
        if theirs.get_vocab() != tokenizer.get_vocab() or theirs.eos_token_id != tokenizer.eos_token_id:
            pre.problems.append(f"--reward-model {rm}: its tokenizer's vocabulary differs from --tokenizer "
                                f"{opts.tokenizer}; the reward model must read the policy's token ids")


def train(opts: common.AlignOptions, echo=print) -> dict:
    import torch
    from trl import RLOOConfig

    from trainers import model as model_setup

    t0 = time.perf_counter()
    out, rank0, resume, ds, manifest, tokenizer = common.start(opts, "rlhf", echo)
    model_config = model_setup.load_config(opts.model)
    pre = common.preflight(opts, "rlhf", ds, manifest, tokenizer, model_config)
    pre.require(Path(opts.model).is_dir(), f"--model {opts.model}: rlhf starts from saved weights (the SFT model "
                                           "directory); the reference model is loaded from it")
    pre.require(len(tokenizer) <= int(getattr(model_config, "vocab_size", 0) or 0),
                f"--tokenizer has {len(tokenizer)} pieces but {opts.model} has {model_config.vocab_size} embedding "
                "rows; run `trainers sft` with this tokenizer first")
    pre.require(opts.reward_model is not None, "--reward-model is required")
    pre.require((opts.batch_size * opts.grad_accum) % opts.num_generations == 0,
                f"--batch-size x --grad-accum ({opts.batch_size * opts.grad_accum}) must be a multiple of "
                f"--num-generations ({opts.num_generations}): each batch holds whole groups of replies")
    if opts.reward_model is not None:
        check_reward_model(pre, opts, tokenizer)
    ds_cfg = common.deepspeed_config(opts, model_config, pre)
    pre.raise_if_any()
    common.set_pad_token(tokenizer)
    prompts = ds.select_columns(["prompt_ids"]).rename_column("prompt_ids", "prompt")
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    attn = model_setup.attention_implementation(device_type, opts.attention)
    model = model_setup.load_model(opts.model, attn, seed=opts.seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    peft_config = common.lora_config(opts, "CAUSAL_LM") if opts.lora else None
    scorer = RewardModelScorer(opts.reward_model, torch.device(device_type))
    common.write_run_files(out, opts, rank0, ds_cfg)
    args = common.trl_args(RLOOConfig, opts, out, ds_cfg, beta=opts.beta, num_generations=opts.num_generations,
                           max_completion_length=opts.max_completion_length, temperature=opts.temperature,
                           log_completions=False)
    trainer_cls = common.complete_checkpoints(id_prompt_rloo_trainer())  # checkpoints as `trainers sft` saves them
    trainer = trainer_cls(model=model, reward_funcs=scorer, args=args, train_dataset=prompts,
                          processing_class=tokenizer, peft_config=peft_config)
    if rank0:
        echo(f"RLOO on {len(prompts)} prompts, {opts.num_generations} replies each, reward model {opts.reward_model}, "
             f"KL beta {opts.beta}")
    common.run_training(trainer, resume, rank0, echo)
    final = common.save_final(trainer, tokenizer, out)
    if final is None:
        return {}
    rewards = common.log_series(trainer, "reward")
    kl = common.log_series(trainer, "kl")
    details = {"prompts": len(prompts), "num_generations": opts.num_generations, "beta": opts.beta,
               "reward_model": opts.reward_model, "reward": [round(r, 6) for r in rewards],
               "kl": [round(k, 6) for k in kl], "attention": attn}
    if rewards:
        k = max(1, len(rewards) // 4)
        details["mean_reward_first_quarter"] = round(sum(rewards[:k]) / k, 6)
        details["mean_reward_last_quarter"] = round(sum(rewards[-k:]) / k, 6)
        echo(f"mean reward {details['mean_reward_first_quarter']} (first quarter of the logs) -> "
             f"{details['mean_reward_last_quarter']} (last quarter)")
    return common.finish("rlhf", opts, trainer, out, len(prompts), details, t0, echo, ds_cfg)
