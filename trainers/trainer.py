"""The Hugging Face Trainer, with bucket-ordered sampling, token metrics for packed data and
checkpoints that appear only when complete (see trainers/checkpoints.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from trainers import checkpoints
from trainers.callbacks import TokenMeter
from trainers.data import GroupOrderedSampler


class CompleteCheckpoints:
    """Trainer mixin (before the Trainer class in the bases): checkpoint-N is written into the
    staging folder and published with its manifest once every rank is done (checkpoints.publish).
    PackedTrainer and the TRL trainers of `trainers rm/dpo/rlhf` share it."""

    _staging: Path | None = None

    def _get_output_dir(self, trial):
        return str(self._staging) if self._staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        # every rank writes checkpoint-N into the staging folder; rank 0 publishes it once all are done
        run_dir = Path(super()._get_output_dir(trial))
        staging = checkpoints.staging_dir(run_dir)
        staged = staging / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save and staged.exists():
            shutil.rmtree(staged)
        self.accelerator.wait_for_everyone()
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            checkpoints.publish(staged, run_dir, self.state.global_step)
            checkpoints.rotate(run_dir, self.args.save_total_limit)
            checkpoints.tidy(run_dir)
        self.accelerator.wait_for_everyone()


class PackedTrainer(CompleteCheckpoints, Trainer):
    def __init__(self, *args, groups, sampler_seed: int, group_names=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups = groups
        self.sampler_seed = sampler_seed
        self.meter = TokenMeter(group_names)

    def _get_train_sampler(self, train_dataset=None):
        # One group: a seeded shuffle; several (buckets): bucket order kept, shuffled within each.
        return GroupOrderedSampler(self.groups, seed=self.sampler_seed)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        meta = inputs.pop("meta", {})
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            logits = outputs.get("logits") if hasattr(outputs, "get") else None
            self.meter.update(inputs, meta, logits)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs, start_time=None):
        if "loss" in logs:  # a training log: add what the meter saw since the last one
            logs.update(self.meter.drain(self.args.device))
        super().log(logs, start_time)
