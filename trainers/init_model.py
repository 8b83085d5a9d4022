"""`trainers init-model`: a seeded random model folder from a config and a tokenizer.

For pretraining from scratch and as a saved base for LoRA/prefix experiments (adapters need
weights on disk). The embedding rows follow the tokenizer (rounded up by --pad-to-multiple-of),
BOS/EOS/pad ids are the tokenizer's, and the tokenizer files are copied in byte for byte. The same
config, tokenizer and seed give byte-identical files (report.json/report.md hold the timings).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from trainers.cli import clear_errors, require_train_extra
from trainers.errors import TrainError


class InitError(TrainError):
    pass


def config_path(name: str) -> Path:
    """A config file or model folder, or the name of a shipped config (`tiny_llama`)."""
    path = Path(name)
    if path.exists():
        return path
    shipped = resources.files("trainers").joinpath("configs", f"{name.removesuffix('.json')}.json")
    if shipped.is_file():
        return Path(str(shipped))
    raise InitError(f"--config {name}: no such file or model directory, and not a shipped config (e.g. tiny_llama)")


def init_model(config: str, tokenizer: str, output: str, seed: int = 42, pad_to_multiple_of: int | None = None,
               dtype: str = "float32") -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from corpuskit.outputs import atomic_dir
    from corpuskit.render.tokenizer_dir import TokenizerDir, TokenizerDirError
    from corpuskit.report import StageReport
    from trainers.model import load_config, padded_rows
    from trainers.tokenizer_files import copy_tokenizer_files

    path = config_path(config)
    model_config = load_config(path)
    try:
        tok = TokenizerDir.load(tokenizer)
    except TokenizerDirError as e:
        raise InitError(str(e)) from e
    pieces = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    rows = padded_rows(pieces, pad_to_multiple_of)
    model_config.vocab_size = rows
    for key, token in (("bos_token_id", tok.bos_token), ("eos_token_id", tok.eos_token),
                       ("pad_token_id", tok.pad_token)):
        setattr(model_config, key, tok.token_id(token))
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(model_config, dtype=getattr(torch, dtype), trust_remote_code=False)
    params = sum(p.numel() for p in model.parameters())
    with atomic_dir(output) as tmp:
        model.save_pretrained(str(tmp))
        copied = copy_tokenizer_files(tokenizer, tmp)
        report = StageReport("trainers init-model", inputs=[str(path), str(tokenizer)])
        report.keep(1)
        report.details.update({"model_type": model_config.model_type, "params": params, "vocab_size": rows,
                               "tokenizer_pieces": pieces, "padding_rows": rows - pieces, "seed": seed,
                               "dtype": dtype, "tokenizer_files": copied})
        report.write(tmp)
    return report.details


@click.command("init-model")
@click.option("--config", required=True, help="Model config JSON, a model folder (its config), or a shipped "
                                              "config name (tiny_llama).")
@click.option("--tokenizer", required=True, type=click.Path(exists=True, file_okay=False),
              help="Tokenizer directory: sets the embedding rows and the special token ids; copied into -o.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--seed", default=42, show_default=True, type=int, help="Seed of the random initialisation.")
@click.option("--pad-to-multiple-of", default=None, type=click.IntRange(1), metavar="N",
              help="Round the embedding rows up to a multiple of N (64 is common on GPUs).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "bfloat16", "float16"]))
@clear_errors
def init_model_cmd(config, tokenizer, output, seed, pad_to_multiple_of, dtype):
    """Write a seeded random model folder (weights, config, tokenizer), byte-identical per seed.

    \b
    Examples:
      trainers init-model --config tiny_llama --tokenizer tok/ -o tiny-base/ --seed 0
      trainers init-model --config my_llama.json --tokenizer llama2-zh/ -o base/ --pad-to-multiple-of 64
    """
    require_train_extra()
    d = init_model(config, tokenizer, output, seed, pad_to_multiple_of, dtype)
    click.echo(f"init-model: {d['model_type']} with {d['params']:,} parameters, {d['vocab_size']} embedding rows "
               f"({d['tokenizer_pieces']} tokenizer pieces), seed {seed}: {output}", err=True)
