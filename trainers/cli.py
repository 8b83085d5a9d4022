"""`trainers` command line (filled in by the training plugin)."""

import click

from trainers import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trainers")
def main() -> None:
    """Train on `corpuskit pack` output with the Hugging Face Trainer, DeepSpeed and PEFT."""
