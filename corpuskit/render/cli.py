"""`corpuskit render` and `corpuskit template ...`."""

from __future__ import annotations

import os
import sys

import click

from corpuskit.cli_util import (MAX_SEQ_LEN, UsageProblem, encoding_option, engine_options, from_option, handle_errors,
                                inputs_argument, max_record_option, progress, warn, workers_option)
from corpuskit.overlap import check_paths
from corpuskit.records import PRETRAIN, SFT
from corpuskit.render.export import export_template, missing_special_tokens
from corpuskit.render.templates import (BUILTINS, ChatTemplate, builtin_source, check_has_generation,
                                        load_template)
from corpuskit.render.tokenize import TRUNCATIONS, RenderOptions

PAIR_MODES = ("preference", "prompt")  # corpuskit.render.preference: TRL-ready pairs and RL prompts
from corpuskit.render.tokenizer_dir import TokenizerDir


def resolve_template(name: str | None, tok: TokenizerDir, mode: str) -> ChatTemplate | None:
    if mode == PRETRAIN:
        if name:
            raise UsageProblem("--template applies to --mode sft only")
        return None
    if name:
        template = load_template(name)
        if tok.chat_template is not None and tok.chat_template != template.source:
            warn(f"warning: {tok.path} has a different chat_template; inference will not match training "
                 f"until you run `corpuskit template export {name} --tokenizer {tok.path}`")
    elif tok.chat_template is not None:  # named after the built-in it is, so manifests say which
        builtin = next((n for n in BUILTINS if builtin_source(n) == tok.chat_template), None)
        template = (load_template(builtin) if builtin
                    else ChatTemplate("tokenizer", tok.chat_template, (), f"chat_template of {tok.path}"))
        check_has_generation(template)
    else:
        raise UsageProblem(f"{tok.path} has no chat_template; give --template "
                           f"({', '.join(BUILTINS)} or a .jinja/.yaml file)")
    missing = missing_special_tokens(tok, template)
    if missing:
        raise UsageProblem(f"template {template.name} needs special tokens {', '.join(missing)} that the tokenizer "
                           f"in {tok.path} lacks (they would be split into plain text); run "
                           f"`corpuskit template export {template.name} --tokenizer {tok.path}` first")
    return template


@click.command("render")
@inputs_argument
@click.option("--tokenizer", "tokenizer_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Hugging Face tokenizer directory (tokenizer.json + tokenizer_config.json).")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Output datasets directory (datasets.load_from_disk). Optional with --show.")
@click.option("--mode", type=click.Choice([SFT, PRETRAIN, *PAIR_MODES]), default=SFT, show_default=True,
              help="sft: chat records through a template; pretrain: {text} or {source,target} records; "
                   "preference: prompt/chosen/rejected ids for trainers rm/dpo; prompt: prompts with the "
                   "generation prompt for trainers rlhf.")
@click.option("--template", "template_name", default=None,
              help=f"Built-in ({', '.join(BUILTINS)}) or a .jinja/.yaml file [default: the tokenizer's "
                   "chat_template, written by `corpuskit template export`].")
@click.option("--max-length", type=click.IntRange(8, MAX_SEQ_LEN), default=4096, show_default=True,
              help="Longest sample in tokens.")
@click.option("--truncation", type=click.Choice(TRUNCATIONS + ("left",)), default=None,
              help="Too-long records: turns = drop whole turns from the end (sft default), right = cut and end "
                   "on EOS (pretrain default), left = keep BOS and the end of the prompt, never cut a reply "
                   "(preference/prompt default), drop = reject.")
@click.option("--train-on", type=click.Choice(["all", "last"]), default="all", show_default=True,
              help="Train on every assistant turn or only the last one.")
@click.option("--group-texts", type=click.IntRange(8, MAX_SEQ_LEN), default=None, metavar="BLOCK",
              help="Pretrain: concatenate records of a file into BLOCK-token rows (the remainder is kept).")
@click.option("--show", type=click.IntRange(0), default=0, metavar="N",
              help="Print the first N rendered records with the trained tokens marked.")
@workers_option
@engine_options
@from_option
@encoding_option
@max_record_option
@handle_errors
def render_cmd(inputs, tokenizer_dir, output, mode, template_name, max_length, truncation, train_on,
               group_texts, show, workers, engine, ray_address, split_bytes, fmt, encoding, max_record_bytes):
    """Tokenize records with exact label masks: chat templates for SFT, BOS/EOS for pretraining.

    SFT trains on each assistant answer plus the end-of-turn token that closes it; system, user
    and template text get label -100. Output rows have input_ids, labels, origin and category.

    \b
    Examples:
      corpuskit render chats.jsonl --tokenizer tok/ --template llama2-chinese -o rendered/
      corpuskit render chats.jsonl --tokenizer tok/ --template colossal --show 2
      corpuskit render news.jsonl --tokenizer tok/ --mode pretrain --group-texts 4096 -o pt/ --workers 2
      corpuskit render pairs.jsonl --tokenizer tok/ --mode preference --max-length 1024 -o pairs/
      corpuskit render pairs.jsonl --tokenizer tok/ --mode prompt --max-length 512 -o prompts/
    """
    from corpuskit.render.pipeline import default_truncation, render_corpus, show_samples

    if mode in PAIR_MODES:
        return _render_pairs(inputs, tokenizer_dir, output, mode, template_name, max_length, truncation, train_on,
                             group_texts, show, workers, fmt, encoding, engine, ray_address, split_bytes)
    if truncation == "left":
        raise UsageProblem("--truncation left applies to --mode preference and prompt only")
    if output is None and not show:
        raise UsageProblem("give -o/--output (or --show N to only look at samples)")
    if group_texts and mode != PRETRAIN:
        raise UsageProblem("--group-texts applies to --mode pretrain only")
    truncation = truncation or default_truncation(mode)
    if mode == PRETRAIN and truncation == "turns":
        raise UsageProblem("--truncation turns applies to --mode sft only; use right or drop")
    tok = TokenizerDir.load(tokenizer_dir)
    template = resolve_template(template_name, tok, mode)
    if output is not None:
        check_paths({"input": inputs, "--tokenizer": tokenizer_dir, "--template": _template_file(template_name)},
                    dirs={"-o": output})
    opts = RenderOptions(mode=mode, max_length=max_length, truncation=truncation, train_on=train_on,
                         truncate=not group_texts, max_record_bytes=max_record_bytes)
    if show:
        show_samples(list(inputs), tok, template, opts, show, fmt, encoding,
                     color=sys.stdout.isatty(), echo=click.echo)
    if output is None:
        return
    report = render_corpus(list(inputs), output, tok, template, opts, workers, group_texts, fmt, encoding,
                           progress=lambda it, desc: progress(it, desc, unit="task"), engine=engine,
                           ray_address=ray_address, split_bytes=split_bytes)
    d = report.details
    click.echo(report.summary(), err=True)
    click.echo(f"wrote {output}: {d['rows']} rows, {d['tokens']} tokens ({d['trained_tokens']} trained), "
               f"{d['truncated']} truncated", err=True)
    if d["untrained_blocks_dropped"]:
        click.echo(f"left out {d['untrained_blocks_dropped']} --group-texts blocks "
                   f"({d['untrained_block_tokens_dropped']} tokens) that lie wholly inside masked sources", err=True)


def _template_file(name: str | None) -> str | None:
    return name if name and name not in BUILTINS and os.path.isfile(name) else None


def _render_pairs(inputs, tokenizer_dir, output, mode, template_name, max_length, truncation, train_on,
                  group_texts, show, workers, fmt, encoding, engine, ray_address, split_bytes):
    from corpuskit.render.preference import PAIR_TRUNCATIONS, PairOptions, render_pairs, show_pairs

    if output is None and not show:
        raise UsageProblem("give -o/--output (or --show N to only look at samples)")
    if group_texts or train_on != "all":
        raise UsageProblem(f"--group-texts and --train-on do not apply to --mode {mode} "
                           "(the replies are what is trained on)")
    truncation = truncation or "left"
    if truncation not in PAIR_TRUNCATIONS:
        raise UsageProblem(f"--truncation {truncation} does not apply to --mode {mode}; use left or drop")
    tok = TokenizerDir.load(tokenizer_dir)
    template = resolve_template(template_name, tok, mode)
    if output is not None:
        check_paths({"input": inputs, "--tokenizer": tokenizer_dir, "--template": _template_file(template_name)},
                    dirs={"-o": output})
    opts = PairOptions(mode=mode, max_length=max_length, truncation=truncation)
    if show:
        show_pairs(list(inputs), tok, template, opts, show, fmt, encoding, echo=click.echo)
    if output is None:
        return
    report = render_pairs(list(inputs), output, tok, template, opts, workers, fmt, encoding,
                          progress=lambda it, desc: progress(it, desc, unit="task"), engine=engine,
                          ray_address=ray_address, split_bytes=split_bytes)
    d = report.details
    click.echo(report.summary(), err=True)
    if mode == "preference":
        click.echo(f"wrote {output}: {d['rows']} pairs, {d['tokens']} tokens ({d['trained_tokens']} in replies), "
                   f"{d['truncated']} truncated", err=True)
    else:
        click.echo(f"wrote {output}: {d['rows']} prompts, {d['tokens']} tokens, {d['truncated']} truncated", err=True)


@click.group("template")
def template_group():
    """Chat templates: list them, show one, or export one into a tokenizer directory.

    \b
    Examples:
      corpuskit template list
      corpuskit template show llama2-chinese
      corpuskit template export llama2-chinese --tokenizer tok/
    """


@template_group.command("list")
def template_list_cmd():
    """List the built-in templates.

    \b
    Example:
      corpuskit template list
    """
    for name, (desc, tokens) in BUILTINS.items():
        click.echo(f"{name:15s} {desc}")


@template_group.command("show")
@click.argument("name")
@handle_errors
def template_show_cmd(name):
    """Print a template's Jinja source (NAME is a built-in or a .jinja/.yaml file).

    \b
    Example:
      corpuskit template show chatml
    """
    click.echo(load_template(name).source, nl=False)


@template_group.command("export")
@click.argument("name")
@click.option("--tokenizer", "tokenizer_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Tokenizer directory to write the template into.")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Write a copy of the tokenizer directory here instead of changing it in place.")
@handle_errors
def template_export_cmd(name, tokenizer_dir, output):
    """Write a template into a tokenizer directory as chat_template.jinja, so that
    `tokenizer.apply_chat_template` at inference gives exactly the training format. Templates with
    their own markers (chatml) also add them as special tokens.

    \b
    Examples:
      corpuskit template export llama2-chinese --tokenizer tok/
      corpuskit template export chatml --tokenizer tok/ -o tok-chatml/
      corpuskit template export my_template.yaml --tokenizer tok/
    """
    if output is not None:
        if os.path.realpath(output) == os.path.realpath(tokenizer_dir):
            raise UsageProblem(f"-o {output} is the --tokenizer folder itself; leave out -o to export in place")
        check_paths({"--tokenizer": tokenizer_dir, "NAME": _template_file(name)}, dirs={"-o": output})
    info = export_template(load_template(name), tokenizer_dir, output)
    click.echo(f"wrote template {info['template']} into {info['dir']}", err=True)
    if info["added_tokens"]:
        click.echo(f"added special tokens {', '.join(info['added_tokens'])}: vocabulary "
                   f"{info['vocab_size_before']} -> {info['vocab_size']} (resize the model's embeddings)", err=True)
