"""`trainers dpo`: Direct Preference Optimisation with TRL's DPOTrainer on rendered pairs.

The reference is the starting model (a frozen copy), or with --lora the same model with the
adapter switched off (TRL's own PEFT path). The data is already in DPOTrainer's columns
(`prompt_ids`, `chosen_ids`, `rejected_ids`); the one change to the trainer is that it takes them
as they are instead of tokenizing again. Reports TRL's implicit-reward accuracy and margins, and
the chosen - rejected log-probability margin, at the first and last log and on held-out pairs.
"""

from __future__ import annotations

import copy
import time

from trainers.recipes import common

PAIR_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")
METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
           "logps/rejected")


def pretokenized_dpo_trainer():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer that trains on rendered ids (its own preprocessing would re-tokenize them)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if set(PAIR_COLUMNS) <= set(dataset.column_names):
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return PretokenizedDPOTrainer


def _summary(logs: list[dict], prefix: str = "") -> dict:
    out = {}
    for key in METRICS:
        series = [h[prefix + key] for h in logs if prefix + key in h]
        if series:
            out[key] = {"first": round(series[0], 6), "last": round(series[-1], 6)}
    if "logps/chosen" in out and "logps/rejected" in out:
        out["logp_margin"] = {k: round(out["logps/chosen"][k] - out["logps/rejected"][k], 6) for k in ("first", "last")}
    return out


def train(opts: common.AlignOptions, echo=print) -> dict:
    import torch
    from trl import DPOConfig

    from trainers import model as model_setup

    t0 = time.perf_counter()
    out, rank0, resume, ds, manifest, tokenizer = common.start(opts, "dpo", echo)
    model_config = model_setup.load_config(opts.model)
    pre = common.preflight(opts, "dpo", ds, manifest, tokenizer, model_config)
    ds_cfg = common.deepspeed_config(opts, model_config, pre)
    pre.raise_if_any()
    train_ds, eval_ds = common.split(ds.select_columns(list(PAIR_COLUMNS)), opts.eval_fraction, opts.seed)
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    attn = model_setup.attention_implementation(device_type, opts.attention)
    model = model_setup.load_model(opts.model, attn, seed=opts.seed)
    resize = model_setup.grow_vocabulary(model, tokenizer, len(tokenizer))
    peft_config = common.lora_config(opts, "CAUSAL_LM") if opts.lora else None
    ref_model = None if opts.lora else copy.deepcopy(model).eval().requires_grad_(False)
    common.write_run_files(out, opts, rank0, ds_cfg)
    args = common.trl_args(DPOConfig, opts, out, ds_cfg, beta=opts.beta, loss_type=[opts.loss_type], max_length=None,
                           eval_strategy="no", precompute_ref_log_probs=False)
    trainer_cls = common.complete_checkpoints(pretokenized_dpo_trainer())  # checkpoints as `trainers sft` saves them
    trainer = trainer_cls(model=model, ref_model=ref_model, args=args, train_dataset=train_ds,
                          processing_class=tokenizer, peft_config=peft_config)
    if rank0:
        echo(f"DPO (beta {opts.beta}, {opts.loss_type}) on {len(train_ds)} pairs"
             + (f", {len(eval_ds)} held out" if eval_ds is not None else "")
             + f"; reference = {'the base model with the adapter off' if opts.lora else 'the starting model'}")
    common.run_training(trainer, resume, rank0, echo)
    held_out = {}
    if eval_ds is not None:
        metrics = trainer.evaluate(eval_dataset=eval_ds)
        held_out = {k.removeprefix("eval_"): round(v, 6) for k, v in metrics.items()
                    if k.removeprefix("eval_") in METRICS}
        if "logps/chosen" in held_out:
            held_out["logp_margin"] = round(held_out["logps/chosen"] - held_out["logps/rejected"], 6)
    final = common.save_final(trainer, tokenizer, out)
    if final is None:
        return {}
    train_logs = [h for h in trainer.state.log_history if "loss" in h]
    details = {"pairs": len(ds), "train_pairs": len(train_ds), "eval_pairs": len(eval_ds) if eval_ds else 0,
               "beta": opts.beta, "loss_type": opts.loss_type, "train": _summary(train_logs), "eval": held_out,
               "reference": "adapter-off base" if opts.lora else "starting model", "attention": attn,
               "embedding_resize": resize.to_json()}
    s = details["train"]
    if "rewards/accuracies" in s:
        echo(f"implicit-reward accuracy {s['rewards/accuracies']['first']} -> {s['rewards/accuracies']['last']}, "
             f"log-prob margin {s['logp_margin']['first']} -> {s['logp_margin']['last']}"
             + (f"; held out: accuracy {held_out.get('rewards/accuracies')}, margin {held_out.get('rewards/margins')}"
                if held_out else ""))
    return common.finish("dpo", opts, trainer, out, len(ds), details, t0, echo, ds_cfg)
