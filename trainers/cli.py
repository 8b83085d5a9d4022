"""`trainers` command line: pretrain, sft and merge-lora on `corpuskit pack` output; rm, dpo and
rlhf (trainers/recipes) on `corpuskit render --mode preference|prompt` output.

Nothing heavy is imported at module level, so `trainers --help` works and a missing [train]
extra is reported as one clear line instead of an ImportError traceback.
"""

from __future__ import annotations

import functools
import importlib
import os

import click

from corpuskit.cli_util import MAX_SEED, FloatRange, handle_errors
from corpuskit.overlap import check_paths
from trainers import __version__
from trainers.errors import TrainError

TRAIN_MODULES = ("torch", "accelerate", "peft", "tensorboard")


def require_train_extra(deepspeed: bool = False) -> None:
    for name in TRAIN_MODULES + (("deepspeed",) if deepspeed else ()):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise click.ClickException(f"trainers needs the [train] extra (cannot import {name}: {e}); "
                                       "install it with: pip install corpuskit[train]") from e


def clear_errors(fn):
    """Our own failures (bad data, mismatched tokenizer, bad config) become `Error: ...`, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrainError as e:
            raise click.ClickException(str(e)) from e

    return handle_errors(wrapper)


# commands in their own modules: name -> "module:attribute", imported only when used
COMMANDS = {
    "generate": "trainers.generate:generate_cmd",
    "eval": "trainers.evaluate:eval_cmd",
    "init-model": "trainers.init_model:init_model_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="trainers")
# the `deepspeed` launcher inserts --local_rank=N right after the script, before the subcommand;
# each process reads its rank from the LOCAL_RANK/RANK variables the launcher also sets
@click.option("--local_rank", "--local-rank", type=int, default=None, hidden=True, expose_value=False)
def main() -> None:
    """Train on `corpuskit pack` output with the Hugging Face Trainer, DeepSpeed and PEFT.

    \b
    Example:  trainers sft --data packed/ --model trainers/configs/tiny_llama.json \\
                  --tokenizer tok/ --output run/ --deepspeed zero2 --max-steps 20
    """
    from trainers import quiet

    quiet.install()  # before torch/DeepSpeed are imported: their noise the user cannot act on


def _positive_or_unset(ctx, param, value: int) -> int:
    if value == -1 or value > 0:
        return value
    raise click.BadParameter(f"{value} is not a step count (> 0, or -1 to train --epochs)")


def training_options(fn):
    options = [
        click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Output folder of `corpuskit pack` (datasets dir + manifest.json)."),
        click.option("--model", required=True, type=click.Path(exists=True),
                     help="Model directory (from_pretrained, no remote code) or a config JSON (random init)."),
        click.option("--tokenizer", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Tokenizer directory the data was rendered with (checked against the manifest)."),
        click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
                     help="Run folder: checkpoints, tensorboard/, model/, report.json."),
        click.option("--deepspeed", default=None, metavar="zero2|zero3|zero3-offload|FILE.json",
                     help="DeepSpeed config: a shipped one or your own; \"auto\" values come from these options."),
        click.option("--lora", is_flag=True, help="Train a LoRA adapter (with an extended vocabulary also "
                                                  "embed_tokens/lm_head)."),
        click.option("--lora-r", default=8, show_default=True, type=click.IntRange(1)),
        click.option("--lora-alpha", default=32, show_default=True, type=click.IntRange(1)),
        click.option("--lora-dropout", default=0.05, show_default=True, type=FloatRange(0, 1)),
        click.option("--lora-targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
                     show_default=True, help="Comma-separated module names LoRA wraps."),
        click.option("--prefix-tuning", is_flag=True, help="P-Tuning v2 prefix tuning (padded, unpacked batches)."),
        click.option("--pre-seq-len", default=128, show_default=True, type=click.IntRange(1),
                     help="Virtual prefix tokens for --prefix-tuning."),
        click.option("--pad-to-multiple-of", default=None, type=click.IntRange(1), metavar="N",
                     help="Round the embedding rows up to a multiple of N when resizing to the tokenizer (64 is "
                          "common on GPUs; the same N as `merge-vocab --pad-to-multiple-of`)."),
        click.option("--bf16", is_flag=True, help="bfloat16 mixed precision."),
        click.option("--attention", default="auto", show_default=True,
                     type=click.Choice(["auto", "flash_attention_2", "flex_attention", "sdpa", "eager"]),
                     help="Attention kernel; auto = flash_attention_2 on CUDA when installed, else sdpa. "
                          "Every choice keeps packed samples apart."),
        click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations to save memory."),
        click.option("--liger", is_flag=True, help="Liger-Kernel fused RMSNorm/RoPE/SwiGLU and linear+cross-entropy "
                                                   "(CUDA; pip install liger-kernel)."),
        click.option("--load-in-4bit", is_flag=True, help="QLoRA: the frozen base model in bitsandbytes NF4 (double "
                                                          "quantisation, bf16 compute) under --lora/--prefix-tuning "
                                                          "(CUDA, --bf16; pip install bitsandbytes)."),
        click.option("--lr", default=None, type=FloatRange(0, min_open=True), help="Peak learning rate [pretrain 2e-4, sft 2e-5; "
                                                            "LoRA 2e-4, prefix tuning 2e-2]."),
        click.option("--lr-scheduler", default="cosine", show_default=True,
                     type=click.Choice(["cosine", "linear", "constant", "constant_with_warmup"])),
        click.option("--warmup-steps", default=0.0, show_default=True, type=FloatRange(0),
                     help="Warmup steps, or a fraction of all steps when below 1."),
        click.option("--weight-decay", default=0.0, show_default=True, type=FloatRange(0)),
        click.option("--epochs", default=1.0, show_default=True, type=FloatRange(0, min_open=True)),
        click.option("--max-steps", default=-1, show_default=True, type=int, callback=_positive_or_unset,
                     help="Stop after this many steps (overrides --epochs); -1 = train --epochs."),
        click.option("--batch-size", default=1, show_default=True, type=click.IntRange(1),
                     help="Packed rows per device per micro-batch."),
        click.option("--grad-accum", default=1, show_default=True, type=click.IntRange(1)),
        click.option("--logging-steps", default=1, show_default=True, type=click.IntRange(1)),
        click.option("--save-steps", default=500, show_default=True, type=click.IntRange(1)),
        click.option("--seed", default=42, show_default=True, type=click.IntRange(0, MAX_SEED),
                     help="Seed for init, dropout and data order."),
        click.option("--resume", is_flag=False, flag_value="latest", default=None, metavar="[CKPT]",
                     help="Continue from the latest complete checkpoint in --output, or from CKPT."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


DEFAULT_LR = {"pretrain": 2e-4, "sft": 2e-5}


def _run(mode: str, kwargs: dict) -> None:
    ds = kwargs.get("deepspeed")
    check_paths({"--data": kwargs["data"], "--model": kwargs["model"], "--tokenizer": kwargs["tokenizer"],
                 "--deepspeed": ds if ds and os.path.isfile(ds) else None},
                dirs={"--output": kwargs["output"]}, replaced=False)
    require_train_extra(deepspeed=bool(kwargs.get("deepspeed")))
    from trainers.run import RunOptions, train

    lr = kwargs.pop("lr")
    if lr is None:
        lr = 2e-2 if kwargs["prefix_tuning"] else 2e-4 if kwargs["lora"] else DEFAULT_LR[mode]
    opts = RunOptions(mode=mode, lr=lr, **kwargs)
    train(opts, echo=lambda m: click.echo(m, err=True))


@main.command("pretrain")
@training_options
@clear_errors
def pretrain_cmd(**kwargs) -> None:
    """Continued pretraining on packed `render --mode pretrain` output (e.g. extended-vocab LLaMA-2).

    \b
    Example:
      trainers pretrain --data packed/ --model llama2-7b/ --tokenizer merged-tok/ \\
          --output run/ --deepspeed zero3 --bf16 --lr 2e-4 --epochs 1
    """
    _run("pretrain", kwargs)


@main.command("sft")
@training_options
@clear_errors
def sft_cmd(**kwargs) -> None:
    """Supervised fine-tuning (full, --lora or --prefix-tuning) on packed chat data.

    \b
    Example:
      trainers sft --data packed/ --model llama2-7b/ --tokenizer tok/ --output run/ \\
          --deepspeed zero2 --lora --lora-r 8 --lora-alpha 32 --bf16
    """
    _run("sft", kwargs)


@main.command("merge-lora")
@click.option("--adapter", required=True, type=click.Path(exists=True, file_okay=False),
              help="The model/ folder of a --lora run.")
@click.option("--base", required=True, type=click.Path(exists=True, file_okay=False), help="Base model directory.")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="Merged model directory.")
@clear_errors
def merge_lora_cmd(adapter: str, base: str, output: str) -> None:
    """Merge a LoRA adapter (and its trained embeddings) into a full model directory.

    \b
    Example:
      trainers merge-lora --adapter run/model --base llama2-7b/ -o merged/
    """
    check_paths({"--adapter": adapter, "--base": base}, dirs={"--output": output})
    require_train_extra()
    from trainers.run import merge_lora

    merge_lora(adapter, base, output, echo=lambda m: click.echo(m, err=True))


def _register_recipes() -> None:
    from trainers.recipes.cli import register  # rm, dpo, rlhf (TRL)

    register(main)


_register_recipes()


if __name__ == "__main__":
    main()
