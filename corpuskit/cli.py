"""`corpuskit` command line: a thin layer over the library; each command is imported only when used."""

from __future__ import annotations

import importlib

import click

from corpuskit import __version__

# command name -> "module:attribute"; loaded lazily so `corpuskit validate` never imports transformers.
COMMANDS = {
    "convert": "corpuskit.ingest.cli:convert_cmd",
    "validate": "corpuskit.validate.cli:validate_cmd",
    "clean": "corpuskit.clean.cli:clean_cmd",
    "bucket": "corpuskit.bucket.cli:bucket_cmd",
    "stats": "corpuskit.stats.cli:stats_cmd",
    "train-vocab": "corpuskit.vocab.cli:train_vocab_cmd",
    "merge-vocab": "corpuskit.vocab.cli:merge_vocab_cmd",
    "tokenizer": "corpuskit.vocab.cli:tokenizer_group",
    "render": "corpuskit.render.cli:render_cmd",
    "template": "corpuskit.render.cli:template_group",
    "pack": "corpuskit.pack.cli:pack_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx, name):
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            try:
                return getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as e:
                if e.name and module.startswith(e.name):  # that stage is not installed in this build
                    return None
                raise
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="corpuskit")
def main() -> None:
    """Turn raw Chinese/English text and chat logs into clean, deduplicated, mixed, packed training data.

    \b
    Pipeline:  convert -> validate -> clean -> bucket -> render -> pack -> trainers
    Example:   corpuskit convert sharegpt.json -o chats.jsonl --to sft
    """


if __name__ == "__main__":
    main()
