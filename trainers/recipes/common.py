"""Pieces the preference recipes (rm, dpo, rlhf) share: the rendered data and its pre-flight
checks, the tokenizer, the output folder, checkpoints and --resume (those of `trainers sft`,
see checkpoints.py), the TRL config, the final save and the report.

The data is `corpuskit render --mode preference|prompt` output, already in the columns TRL takes
pre-tokenised (`prompt_ids`, `chosen_ids`, `rejected_ids`), so nothing re-tokenises here.
"""

from __future__ import annotations

import os
import pickle
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path

from corpuskit.outputs import dumps, write_json
from corpuskit.render.pipeline import FORMAT as RENDER_FORMAT
from corpuskit.report import StageReport
from trainers import checkpoints
from trainers.errors import TrainError, read_json
from trainers.run import RUN_MARKER, RunError, RunOptions, _options_json, ensure_distributed_env, prepare_output

COLUMNS = {"preference": ("prompt_ids", "chosen_ids", "rejected_ids"), "prompt": ("prompt_ids",)}
DATA_MODE = {"rm": "preference", "dpo": "preference", "rlhf": "prompt"}


@dataclass
class AlignOptions(RunOptions):
    eval_fraction: float = 0.0  # held-out share of the pairs (rm, dpo)
    beta: float = 0.1  # dpo: strength of the pull to the reference; rlhf: KL coefficient
    loss_type: str = "sigmoid"  # dpo loss
    reward_model: str | None = None  # rlhf: a `trainers rm` model directory
    num_generations: int = 4  # rlhf: replies sampled per prompt
    max_completion_length: int = 64  # rlhf
    temperature: float = 1.0  # rlhf sampling


class DataError(TrainError):
    pass


def read_render_dir(rdir: str | Path, command: str):
    """(dataset, manifest) of a render output folder in the mode `command` needs."""
    from datasets import load_from_disk

    rdir = Path(rdir)
    path = rdir / "manifest.json"
    if not path.is_file():
        raise DataError(f"{rdir}: no manifest.json; expected the output folder of "
                        f"`corpuskit render --mode {DATA_MODE[command]}`")
    manifest = read_json(path, "the render manifest", DataError)
    if not isinstance(manifest, dict) or manifest.get("format") != RENDER_FORMAT:
        raise DataError(f"{path}: not a `corpuskit render` manifest (format {RENDER_FORMAT!r})")
    want = DATA_MODE[command]
    if manifest.get("mode") != want:
        raise DataError(f"{rdir} holds render --mode {manifest.get('mode')} data but `trainers {command}` trains on "
                        f"`corpuskit render --mode {want}` output")
    try:
        ds = load_from_disk(str(rdir))
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"{rdir}: cannot load the rendered dataset ({e})") from e
    missing = [c for c in COLUMNS[want] if c not in ds.column_names]
    if missing:
        raise DataError(f"{rdir}: dataset lacks columns {missing}")
    if len(ds) != manifest.get("records"):
        raise DataError(f"{rdir}: manifest says {manifest.get('records')} rows, dataset has {len(ds)}")
    if len(ds) == 0:
        raise DataError(f"{rdir}: no rows to train on")
    return ds, manifest


def token_range(ds, columns) -> tuple[int, int, int]:
    """(min id, max id, longest sequence) over the id columns, read from Arrow without Python rows."""
    import pyarrow.compute as pc

    lo, hi = 0, -1
    table = ds.data
    for c in columns:
        mm = pc.min_max(pc.list_flatten(table.column(c)))
        if mm["max"].as_py() is not None:
            lo, hi = min(lo, mm["min"].as_py()), max(hi, mm["max"].as_py())
    if "chosen_ids" in columns:
        p = pc.list_value_length(table.column("prompt_ids"))
        longest = max(int(pc.max(pc.add(p, pc.list_value_length(table.column(c)))).as_py()) for c in
                      ("chosen_ids", "rejected_ids"))
    else:
        longest = int(pc.max(pc.list_value_length(table.column("prompt_ids"))).as_py())
    return lo, hi, longest


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    if not (Path(path) / "tokenizer.json").is_file():
        raise RunError(f"--tokenizer {path}: no tokenizer.json; pass the Hugging Face tokenizer directory "
                       "the data was rendered with")
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a corrupt file
        raise RunError(f"--tokenizer {path}: cannot load a tokenizer ({' '.join(str(e).split())})") from e


def set_pad_token(tokenizer) -> str:
    """A pad token that never occurs at the end of a real sequence: the reward model reads the
    score at the last non-pad token, which must be the reply's end-of-turn token, not the one before."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer.pad_token


def preflight(opts: AlignOptions, command: str, ds, manifest: dict, tokenizer, model_config):
    from trainers.checks import Preflight

    pre = Preflight(opts.data, opts.tokenizer)
    pre.check_tokenizer(manifest, tokenizer)  # vocab size, special ids, tokenizer.json sha256 vs the manifest
    lo, hi, longest = token_range(ds, COLUMNS[DATA_MODE[command]])
    rows = max(len(tokenizer), int(getattr(model_config, "vocab_size", 0) or 0))
    if hi >= rows or lo < 0:
        pre.problems.append(f"{opts.data}: token ids span {lo}..{hi} but the tokenizer/model have {rows} rows")
    limit = getattr(model_config, "max_position_embeddings", None)
    need = longest + (opts.max_completion_length if command == "rlhf" else 0)
    if limit is not None and need > limit:
        pre.problems.append(f"sequences of {need} tokens are above the model's max_position_embeddings {limit} "
                            f"({opts.model}); render with a smaller --max-length")
    pre.require(not opts.prefix_tuning, f"--prefix-tuning is not supported by `trainers {command}`; use --lora")
    pre.require(not (opts.lora and not Path(opts.model).is_dir()),
                f"--lora trains an adapter on saved base weights: --model must be a model directory, "
                f"not a config file ({opts.model})")
    pre.require(0.0 <= opts.eval_fraction < 1.0, "--eval-fraction must be in [0, 1)")
    if opts.eval_fraction:
        pre.require(round(len(ds) * opts.eval_fraction) >= 1 and len(ds) - round(len(ds) * opts.eval_fraction) >= 1,
                    f"--eval-fraction {opts.eval_fraction} of {len(ds)} rows leaves no held-out or no training row")
    return pre


def split(ds, fraction: float, seed: int):
    """(train, held-out): a seeded split, the same for the same data and seed."""
    if not fraction:
        return ds, None
    parts = ds.train_test_split(test_size=fraction, seed=seed, shuffle=True)
    return parts["train"], parts["test"]


def lora_config(opts: AlignOptions, task_type: str, modules_to_save=None):
    from peft import LoraConfig

    return LoraConfig(task_type=task_type, r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                      target_modules=[t.strip() for t in opts.lora_targets.split(",") if t.strip()],
                      modules_to_save=modules_to_save)


def deepspeed_config(opts: AlignOptions, model_config, pre) -> dict | None:
    from trainers import ds_config

    if not opts.deepspeed:
        return None
    ds = ds_config.load_ds_config(opts.deepspeed)
    return ds_config.fill_auto(ds, ds_config.RunNumbers(
        micro_batch=opts.batch_size, grad_accum=opts.grad_accum, lr=opts.lr, weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm, bf16=opts.bf16, fp16=False, warmup_steps=int(opts.warmup_steps),
        total_steps=opts.max_steps if opts.max_steps > 0 else -1,
        hidden_size=int(getattr(model_config, "hidden_size", 1024))))


def trl_args(config_cls, opts: AlignOptions, out: Path, ds: dict | None, **extra):
    """The TRL config with the options `trainers sft` users know; TRL's own defaults otherwise."""
    import torch

    names = {f.name for f in fields(config_cls)}
    kwargs = dict(
        output_dir=str(out), per_device_train_batch_size=opts.batch_size, per_device_eval_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum, learning_rate=opts.lr, lr_scheduler_type=opts.lr_scheduler,
        warmup_steps=opts.warmup_steps, weight_decay=opts.weight_decay, max_grad_norm=opts.max_grad_norm,
        num_train_epochs=opts.epochs, max_steps=opts.max_steps, logging_steps=opts.logging_steps,
        save_steps=opts.save_steps, save_total_limit=opts.save_total_limit, bf16=opts.bf16, seed=opts.seed,
        data_seed=opts.seed, report_to=["tensorboard"], dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(), deepspeed=ds, **extra, **opts.extra)
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    kwargs[key] = opts.gradient_checkpointing
    return config_cls(**kwargs)


def start(opts: AlignOptions, command: str, echo=print):
    """Everything before the model: output folder, the checkpoint to resume from (checked as for
    `trainers sft`, see checkpoints.py), data, tokenizer. Returns (out, rank0, resume, ds, manifest, tokenizer)."""
    if opts.deepspeed:
        ensure_distributed_env()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    out = prepare_output(opts, rank0)
    resume = checkpoints.resolve_resume(opts.resume, out, echo if rank0 else lambda m: None)
    ds, manifest = read_render_dir(opts.data, command)
    tokenizer = load_tokenizer(opts.tokenizer)
    return out, rank0, resume, ds, manifest, tokenizer


def write_run_files(out: Path, opts: AlignOptions, rank0: bool, ds_cfg: dict | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if rank0:
        write_json(out / RUN_MARKER, _options_json(opts))
        if ds_cfg is not None:
            write_json(out / "ds_config.json", ds_cfg)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "tensorboard"))


def complete_checkpoints(trainer_cls):
    """trainer_cls whose checkpoints appear only when complete, as `trainers sft` saves them."""
    from trainers.trainer import CompleteCheckpoints

    return type(trainer_cls.__name__, (CompleteCheckpoints, trainer_cls), {"__doc__": trainer_cls.__doc__})


def run_training(trainer, resume: str | None, rank0: bool, echo):
    """trainer.train from `resume` (a checked checkpoint folder, or None) with every torch.load
    weights-only; an object the pickle scan let pass is refused in one line."""
    if resume and rank0:
        echo(f"resuming from {resume}")
    with checkpoints.weights_only_loading():
        try:
            return trainer.train(resume_from_checkpoint=resume)
        except pickle.UnpicklingError as e:
            raise checkpoints.unpickling_refused(resume, e) from e


def save_final(trainer, tokenizer, out: Path, model_to_save=None) -> Path | None:
    """model/ (weights + tokenizer), renamed into place when complete; rank 0 returns its path."""
    tmp_model = out / ".model.tmp"
    if model_to_save is None:
        trainer.save_model(str(tmp_model))
    elif trainer.is_world_process_zero():
        model_to_save.save_pretrained(str(tmp_model))
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return None
    tokenizer.save_pretrained(str(tmp_model))
    final = out / "model"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp_model, final)
    trainer.save_state()
    return final


def log_series(trainer, key: str) -> list[float]:
    return [h[key] for h in trainer.state.log_history if key in h]


def finish(command: str, opts: AlignOptions, trainer, out: Path, rows: int, details: dict, t0: float, echo,
           ds_cfg: dict | None = None) -> dict:
    from trainers import ds_config as dsc

    report = StageReport(command=f"trainers {command}", inputs=[opts.data])
    report.keep(rows)
    losses = log_series(trainer, "loss")
    report.details.update({
        "steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None, "deepspeed": opts.deepspeed,
        "zero_stage": dsc.zero_stage(ds_cfg) if ds_cfg else None,
        "adapter": "lora" if opts.lora else None, "model_dir": str(out / "model"),
        "tensorboard": os.environ["TENSORBOARD_LOGGING_DIR"], **details})
    report.time("train", time.perf_counter() - t0)
    report.write(out)
    steps = trainer.state.global_step
    echo(f"trained {steps} step{'' if steps == 1 else 's'}; model in {out / 'model'}, "
         f"TensorBoard logs in {report.details['tensorboard']}")
    echo(dumps({"report": str(out / "report.json")}))
    return report.details
