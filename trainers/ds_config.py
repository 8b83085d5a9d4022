"""DeepSpeed configs shipped with the package, with their "auto" values filled from the command line.

The filled config is written beside the run (ds_config.json) so a run can be repeated by hand
with the `deepspeed` launcher. Values that depend on the world size (train_batch_size) stay
"auto" for the Hugging Face integration to set at launch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from trainers.errors import TrainError, read_json

SHIPPED = {"zero2": "zero2.json", "zero3": "zero3.json", "zero3-offload": "zero3_offload.json"}


class ConfigError(TrainError):
    pass


@dataclass
class RunNumbers:
    micro_batch: int
    grad_accum: int
    lr: float
    weight_decay: float
    max_grad_norm: float
    bf16: bool
    fp16: bool
    warmup_steps: int
    total_steps: int
    hidden_size: int
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


def load_ds_config(name_or_file: str) -> dict:
    if name_or_file in SHIPPED:
        text = resources.files("trainers").joinpath("configs", SHIPPED[name_or_file]).read_text(encoding="utf-8")
        return json.loads(text)
    path = Path(name_or_file)
    if not path.is_file():
        raise ConfigError(f"--deepspeed {name_or_file}: not one of {', '.join(SHIPPED)} and no such file")
    config = read_json(path, "the DeepSpeed config", ConfigError)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a DeepSpeed config is a JSON object")
    return config


def _fill(node: Any, key: str, value: Any) -> None:
    if isinstance(node, dict) and node.get(key) == "auto":
        node[key] = value


def fill_auto(config: dict, n: RunNumbers) -> dict:
    """Replace every "auto" we can know before launch; leave world-size ones to the HF integration."""
    cfg = json.loads(json.dumps(config))
    _fill(cfg, "train_micro_batch_size_per_gpu", n.micro_batch)
    _fill(cfg, "gradient_accumulation_steps", n.grad_accum)
    _fill(cfg, "gradient_clipping", n.max_grad_norm)
    _fill(cfg.get("bf16"), "enabled", n.bf16)
    _fill(cfg.get("fp16"), "enabled", n.fp16)
    opt = cfg.get("optimizer", {}).get("params", {})
    for key, value in (("lr", n.lr), ("betas", list(n.betas)), ("eps", n.eps), ("weight_decay", n.weight_decay)):
        _fill(opt, key, value)
    sched = cfg.get("scheduler", {}).get("params", {})
    for key, value in (("warmup_min_lr", 0.0), ("warmup_max_lr", n.lr), ("warmup_num_steps", n.warmup_steps),
                       ("total_num_steps", n.total_steps)):
        _fill(sched, key, value)
    zero = cfg.get("zero_optimization", {})
    h = n.hidden_size
    _fill(zero, "reduce_bucket_size", h * h)
    _fill(zero, "stage3_prefetch_bucket_size", int(0.9 * h * h))
    _fill(zero, "stage3_param_persistence_threshold", 10 * h)
    if zero.get("offload_optimizer", {}).get("device") == "cpu" and "optimizer" not in cfg:
        cfg["zero_force_ds_cpu_optimizer"] = False  # keep the Trainer's torch optimizer
    return cfg


def zero_stage(config: dict) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))
