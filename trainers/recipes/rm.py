"""`trainers rm`: a reward model (sequence-classification head, one score) trained on rendered
pairs with TRL's RewardTrainer; pairwise accuracy on a held-out split before and after training.

Each pair is `prompt_ids + chosen_ids` against `prompt_ids + rejected_ids`, the sequences TRL's
own preprocessing would build (tests check this), joined here from the rendered ids. The saved
model/ loads with `AutoModelForSequenceClassification` (a --lora adapter is merged into it).
"""

from __future__ import annotations

import time
from pathlib import Path

from trainers.recipes import common


def full_sequences(ds):
    """prompt + reply per side: the columns RewardTrainer reads pre-tokenised."""
    def join(batch):
        return {"chosen_ids": [p + c for p, c in zip(batch["prompt_ids"], batch["chosen_ids"])],
                "rejected_ids": [p + r for p, r in zip(batch["prompt_ids"], batch["rejected_ids"])]}

    keep = ["chosen_ids", "rejected_ids"]
    return ds.map(join, batched=True, remove_columns=[c for c in ds.column_names if c not in keep],
                  load_from_cache_file=False, desc=None)


def load_reward_model(path: str, tokenizer, seed: int):
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from trainers import model as model_setup

    config = model_setup.load_config(path)
    config.num_labels = 1
    config.pad_token_id = tokenizer.pad_token_id
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized": expected, the head is what we train
    try:
        if Path(path).is_dir():
            model = AutoModelForSequenceClassification.from_pretrained(path, config=config, dtype=torch.float32,
                                                                       trust_remote_code=False)
        else:
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32,
                                                                   trust_remote_code=False)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.use_cache = False
    return model


def pairwise_accuracy(model, pairs, pad_id: int, batch_size: int = 16) -> dict:
    """Share of pairs whose chosen side scores higher, and the mean score margin."""
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    collate = DataCollatorForPreference(pad_token_id=pad_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    wins = n = 0
    margin = 0.0
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            batch = collate([pairs[i] for i in range(start, min(start + batch_size, len(pairs)))])
            scores = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits.squeeze(-1).float()
            chosen, rejected = scores.chunk(2)
            wins += int((chosen > rejected).sum())
            margin += float((chosen - rejected).sum())
            n += len(chosen)
    model.train(was_training)
    return {"accuracy": round(wins / n, 4), "margin": round(margin / n, 4), "pairs": n}


def train(opts: common.AlignOptions, echo=print) -> dict:
    from trl import RewardConfig, RewardTrainer

    from trainers import model as model_setup

    t0 = time.perf_counter()
    out, rank0, resume, ds, manifest, tokenizer = common.start(opts, "rm", echo)
    model_config = model_setup.load_config(opts.model)
    pre = common.preflight(opts, "rm", ds, manifest, tokenizer, model_config)
    ds_cfg = common.deepspeed_config(opts, model_config, pre)
    pre.raise_if_any()
    common.set_pad_token(tokenizer)
    train_ds, eval_ds = common.split(full_sequences(ds), opts.eval_fraction, opts.seed)
    model = load_reward_model(opts.model, tokenizer, opts.seed)
    resize = model_setup.grow_vocabulary(model, tokenizer, len(tokenizer))
    peft_config = common.lora_config(opts, "SEQ_CLS", modules_to_save=["score"]) if opts.lora else None
    common.write_run_files(out, opts, rank0, ds_cfg)
    args = common.trl_args(RewardConfig, opts, out, ds_cfg, max_length=None, center_rewards_coefficient=None,
                           disable_dropout=True)
    trainer_cls = common.complete_checkpoints(RewardTrainer)  # checkpoints as `trainers sft` saves them
    trainer = trainer_cls(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                          peft_config=peft_config)
    pad_id = tokenizer.pad_token_id
    before = pairwise_accuracy(trainer.model, eval_ds, pad_id) if eval_ds is not None else None
    if rank0:
        echo(f"training a reward model on {len(train_ds)} pairs"
             + (f", {len(eval_ds)} held out (accuracy before: {before['accuracy']})" if before else ""))
    common.run_training(trainer, resume, rank0, echo)
    after = pairwise_accuracy(trainer.model, eval_ds, pad_id) if eval_ds is not None else None
    merged = trainer.model.merge_and_unload() if opts.lora else None
    final = common.save_final(trainer, tokenizer, out, model_to_save=merged)
    if final is None:
        return {}
    train_acc = common.log_series(trainer, "accuracy")
    details = {"pairs": len(ds), "train_pairs": len(train_ds), "eval_pairs": len(eval_ds) if eval_ds else 0,
               "eval_accuracy_before": before and before["accuracy"], "eval_accuracy": after and after["accuracy"],
               "eval_margin": after and after["margin"], "train_accuracy_last": train_acc[-1] if train_acc else None,
               "pad_token": tokenizer.pad_token, "embedding_resize": resize.to_json()}
    if after:
        echo(f"held-out pairwise accuracy {before['accuracy']} -> {after['accuracy']} on {after['pairs']} pairs")
    return common.finish("rm", opts, trainer, out, len(ds), details, t0, echo, ds_cfg)
