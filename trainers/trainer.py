"""The Hugging Face Trainer, with bucket-ordered sampling and token metrics for packed data."""

from __future__ import annotations

from transformers import Trainer

from trainers.callbacks import TokenMeter
from trainers.data import GroupOrderedSampler


class PackedTrainer(Trainer):
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
