"""One training run, start to finish: pre-flight checks, model setup, Trainer, outputs.

Output folder layout: run.json (the arguments; marks the folder as ours), ds_config.json (the
filled DeepSpeed config), tensorboard/, checkpoint-N/ (resumable; each appears only when complete,
see checkpoints.py), model/ (final weights or adapter + tokenizer, renamed into place when
complete), report.json + report.md.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from corpuskit.outputs import dumps, write_json
from corpuskit.report import StageReport
from trainers import checkpoints
from trainers.errors import TrainError, read_json
from trainers.tokenizer_files import copy_tokenizer_files

RUN_MARKER = "run.json"


class RunError(TrainError):
    pass


@dataclass
class RunOptions:
    mode: str  # "pretrain" | "sft"
    data: str
    model: str
    tokenizer: str
    output: str
    deepspeed: str | None = None
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    prefix_tuning: bool = False
    pre_seq_len: int = 128
    pad_to_multiple_of: int | None = None  # round embedding rows up (extended vocabularies)
    bf16: bool = False
    attention: str = "auto"
    gradient_checkpointing: bool = False
    liger: bool = False
    load_in_4bit: bool = False
    lr: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup_steps: float = 0.0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 1
    grad_accum: int = 1
    logging_steps: int = 1
    save_steps: int = 500
    save_total_limit: int | None = 2
    seed: int = 42
    resume: str | None = None  # "latest" or a checkpoint folder
    extra: dict = field(default_factory=dict)


def ensure_distributed_env() -> None:
    """DeepSpeed needs a process group even for one process; the launcher sets these otherwise."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"})


def prepare_output(opts: RunOptions, rank0: bool = True) -> Path:
    """Refuse to clobber a folder. Only rank 0 judges it: under the `deepspeed` launcher a rank that
    starts late (another node) would otherwise find rank 0's fresh run.json and refuse its own run."""
    out = Path(opts.output)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a directory")
    ours = (out / RUN_MARKER).is_file()
    if not rank0:
        return out
    if out.exists() and any(out.iterdir()) and not ours:
        raise RunError(f"{out}: directory is not empty and was not written by trainers; choose a new --output")
    if ours and not opts.resume:
        raise RunError(f"{out}: holds an earlier run; pass --resume to continue it or choose a new --output")
    if out.is_dir():
        checkpoints.clean_staging(out)  # what a save killed mid-way left behind
    return out


def _options_json(opts: RunOptions) -> dict:
    return {k: v for k, v in asdict(opts).items() if k != "extra"}


def train(opts: RunOptions, echo=print) -> dict:
    """Run one training; no torch.load in it may unpickle anything but tensors (see checkpoints.py)."""
    with checkpoints.weights_only_loading():
        return _train(opts, echo)


def _train(opts: RunOptions, echo=print) -> dict:
    import torch
    from transformers import AutoTokenizer, TrainingArguments

    from trainers import accel, checks, data, distributed, ds_config, model as model_setup, peft_setup, rendered
    from trainers.trainer import PackedTrainer

    t0 = time.perf_counter()
    accel.check(opts.liger, opts.load_in_4bit, opts.lora or opts.prefix_tuning, opts.bf16,
                ds_config.zero_stage(ds_config.load_ds_config(opts.deepspeed)) if opts.deepspeed else None,
                torch.cuda.is_available())
    report = StageReport(command=f"trainers {opts.mode}", inputs=[opts.data])
    if opts.deepspeed:
        ensure_distributed_env()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    out = prepare_output(opts, rank0)
    resume = checkpoints.resolve_resume(opts.resume, out, echo if rank0 else lambda m: None)

    rows = rendered.open_rows(opts.data)  # pack output, or render --group-texts rows
    manifest = rows.manifest
    if not (Path(opts.tokenizer) / "tokenizer.json").is_file():
        raise RunError(f"--tokenizer {opts.tokenizer}: no tokenizer.json; pass the Hugging Face tokenizer directory "
                       "the data was rendered with")
    try:
        tokenizer = AutoTokenizer.from_pretrained(opts.tokenizer, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a corrupt file
        raise RunError(f"--tokenizer {opts.tokenizer}: cannot load a tokenizer ({' '.join(str(e).split())})") from e
    model_config = model_setup.load_config(opts.model)
    stats = checks.data_stats(rows.table)
    embedding_rows = int(getattr(model_config, "vocab_size", 0) or 0)

    pre = checks.Preflight(opts.data, opts.tokenizer)
    pre.check_mode(manifest, opts.mode)
    pre.check_tokenizer(manifest, tokenizer)
    pre.check_data(stats, max(len(tokenizer), embedding_rows))
    pre.check_model(model_config, int(manifest["seq_len"]), stats, opts.model)
    pre.require(not (opts.lora and opts.prefix_tuning), "--lora and --prefix-tuning cannot be combined")
    pre.require(not ((opts.lora or opts.prefix_tuning) and not Path(opts.model).is_dir()),
                f"--lora/--prefix-tuning train an adapter on saved base weights: --model must be a model directory, "
                f"not a config file ({opts.model})")
    pre.require(not (opts.prefix_tuning and len(tokenizer) > embedding_rows),
                "--prefix-tuning keeps the base model frozen, so it cannot learn an extended vocabulary "
                f"({len(tokenizer)} pieces > {embedding_rows} embedding rows); use --lora or full training")
    ds = None
    if opts.deepspeed:
        ds = ds_config.load_ds_config(opts.deepspeed)
        pre.require(not (opts.prefix_tuning and ds_config.zero_stage(ds) == 3),
                    "--prefix-tuning is not supported with ZeRO-3 (PEFT prefix encoders need whole parameters); use zero2")
    pre.raise_if_any()

    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    attn = model_setup.attention_implementation(device_type, opts.attention)
    if opts.prefix_tuning and attn in ("flash_attention_2", "flex_attention"):
        attn = "sdpa"  # prefix tuning uses padded batches with a 2D mask (see data.UnpackedCollator)
    if opts.load_in_4bit:
        model = model_setup.load_model(opts.model, attn, dtype=torch.bfloat16, seed=opts.seed,
                                       quantization_config=accel.nf4_config())
    else:
        model = model_setup.load_model(opts.model, attn, seed=opts.seed)
    resize = model_setup.grow_vocabulary(model, tokenizer, len(tokenizer), opts.pad_to_multiple_of)
    if resize.new_rows > resize.old_rows:
        echo(f"embeddings resized {resize.old_rows} -> {resize.new_rows}: {resize.from_pieces} rows initialised "
             f"from the mean of their base pieces, {resize.from_mean} from the mean of all rows"
             + (f", {resize.padding} padding rows (--pad-to-multiple-of)" if resize.padding else ""))
    if opts.load_in_4bit:
        model = accel.prepare_4bit(model, opts.gradient_checkpointing)
    if opts.lora:
        model = peft_setup.apply_lora(model, peft_setup.LoraOptions(opts.lora_r, opts.lora_alpha, opts.lora_dropout,
                                                                    opts.lora_targets),
                                      train_embeddings=resize.new_rows > resize.old_rows)
    elif opts.prefix_tuning:
        model = peft_setup.apply_prefix_tuning(model, opts.pre_seq_len)
    if opts.gradient_checkpointing and (opts.lora or opts.prefix_tuning):
        model.enable_input_require_grads()
    params = peft_setup.trainable_summary(model)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if opts.prefix_tuning:
        collator = data.UnpackedCollator(pad_id)
    else:
        collator = data.PackedCollator(pad_id, flatten=attn == "flash_attention_2")

    if ds is not None:
        total_steps = opts.max_steps if opts.max_steps > 0 else -1
        ds = ds_config.fill_auto(ds, ds_config.RunNumbers(
            micro_batch=opts.batch_size, grad_accum=opts.grad_accum, lr=opts.lr, weight_decay=opts.weight_decay,
            max_grad_norm=opts.max_grad_norm, bf16=opts.bf16, fp16=False, warmup_steps=int(opts.warmup_steps),
            total_steps=total_steps, hidden_size=int(getattr(model_config, "hidden_size", 1024))))
    out.mkdir(parents=True, exist_ok=True)
    if rank0:
        write_json(out / RUN_MARKER, _options_json(opts))
        if ds is not None:
            write_json(out / "ds_config.json", ds)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "tensorboard"))

    launch_args = distributed.cpu_process_group(deepspeed=ds is not None)
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=opts.batch_size, gradient_accumulation_steps=opts.grad_accum,
        learning_rate=opts.lr, lr_scheduler_type=opts.lr_scheduler, warmup_steps=opts.warmup_steps,
        weight_decay=opts.weight_decay, max_grad_norm=opts.max_grad_norm, num_train_epochs=opts.epochs,
        max_steps=opts.max_steps, logging_steps=opts.logging_steps, save_steps=opts.save_steps,
        save_total_limit=opts.save_total_limit, bf16=opts.bf16, seed=opts.seed, data_seed=opts.seed,
        activation_checkpointing=opts.gradient_checkpointing, report_to=["tensorboard"], remove_unused_columns=False,
        dataloader_num_workers=0, dataloader_pin_memory=device_type == "cuda", deepspeed=ds, **launch_args,
        **accel.trainer_args(opts.liger), **opts.extra)
    trainer = PackedTrainer(model=model, args=args, train_dataset=rows, data_collator=collator,
                            groups=rows.groups, sampler_seed=opts.seed, group_names=rows.group_names)
    if rank0:
        echo(f"training {params['trainable_params']:,} of {params['total_params']:,} parameters on "
             f"{len(rows)} packed rows ({stats.tokens:,} tokens, {stats.trained_tokens:,} trained) "
             f"with attention={attn}, deepspeed={opts.deepspeed or 'off'} on {device_type}")
    if resume and rank0:
        echo(f"resuming from {resume}")
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except pickle.UnpicklingError as e:  # weights-only loading refused an object the pickle scan let pass
        raise checkpoints.unpickling_refused(resume, e) from e
    ranks = distributed.gather_from_ranks(trainer.meter.run_summary())

    tmp_model = out / ".model.tmp"
    trainer.save_model(str(tmp_model))
    trainer.accelerator.wait_for_everyone()
    summary = {}
    if trainer.is_world_process_zero():
        copy_tokenizer_files(opts.tokenizer, tmp_model)  # the very files trained with, tokenizer.model included
        final = out / "model"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp_model, final)
        trainer.save_state()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        report.keep(len(rows))
        report.details.update({
            "steps": trainer.state.global_step, "train_loss": round(float(result.training_loss), 6),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "embedding_resize": resize.to_json(), **params, "attention": attn,
            "deepspeed": opts.deepspeed, "zero_stage": ds_config.zero_stage(ds) if ds else None,
            "world_size": len(ranks), "ranks": ranks, "liger": opts.liger, "load_in_4bit": opts.load_in_4bit,
            "adapter": "lora" if opts.lora else "prefix-tuning" if opts.prefix_tuning else None,
            "model_dir": str(final), "tensorboard": os.environ["TENSORBOARD_LOGGING_DIR"]})
        report.time("train", time.perf_counter() - t0)
        report.write(out)
        summary = report.details
        steps = trainer.state.global_step
        echo(f"trained {steps} step{'' if steps == 1 else 's'}, loss {summary['first_loss']} -> {summary['last_loss']}; "
             f"model in {final}, TensorBoard logs in {summary['tensorboard']}")
        echo(dumps({"report": str(out / "report.json")}))
    return summary


def merge_lora(adapter: str, base: str, output: str, echo=print) -> dict:
    """Fold a LoRA adapter into its base model; a larger adapter tokenizer resizes the base first."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from corpuskit.outputs import atomic_dir
    from trainers.inference import adapter_embedding_rows

    adapter_dir = Path(adapter)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise RunError(f"--adapter {adapter}: no adapter_config.json (pass the model/ folder of a --lora run)")
    if not Path(base).is_dir():
        raise RunError(f"--base {base}: not a model directory")
    adapter_config = read_json(adapter_dir / "adapter_config.json", "the adapter config", RunError)
    peft_type = adapter_config.get("peft_type") if isinstance(adapter_config, dict) else None
    if peft_type != "LORA":
        raise RunError(f"--adapter {adapter}: a {peft_type} adapter cannot be merged into the weights (only LoRA can)")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir), trust_remote_code=False)
    rows = model.get_input_embeddings().weight.shape[0]
    adapter_rows = adapter_embedding_rows(adapter_dir)  # trained embeddings: the tokenizer, maybe padded
    if adapter_rows is None and len(tokenizer) > rows:
        adapter_rows = len(tokenizer)
    if adapter_rows is not None and adapter_rows != rows:
        model.resize_token_embeddings(adapter_rows, mean_resizing=False)  # rows come from the adapter
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    with atomic_dir(output, "trainers merge-lora") as tmp:
        merged.save_pretrained(str(tmp))
        copy_tokenizer_files(adapter_dir, tmp)
        report = StageReport(command="trainers merge-lora", inputs=[adapter, base])
        report.keep(1)
        report.details.update({"base_rows": rows, "vocab_size": len(tokenizer),
                               "params": sum(p.numel() for p in merged.parameters())})
        report.write(tmp)
    echo(f"merged {adapter} into {base}: full model in {output}")
    return report.details
