"""`corpuskit pack`."""

from __future__ import annotations

import click

from corpuskit.cli_util import MAX_SEQ_LEN, handle_errors, seed_option
from corpuskit.pack.bfd import STRATEGIES
from corpuskit.pack.packer import pack_dir


@click.command("pack")
@click.argument("input_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Output datasets directory.")
@click.option("--seq-len", type=click.IntRange(8, MAX_SEQ_LEN), default=4096, show_default=True,
              help="Capacity of one packed sequence in tokens.")
@click.option("--strategy", type=click.Choice(sorted(STRATEGIES)), default="bfd", show_default=True,
              help="bfd = best-fit decreasing (fills sequences best); greedy = next-fit in input order.")
@seed_option
@handle_errors
def pack_cmd(input_dir, output, seq_len, strategy, seed):
    """Pack rendered samples into sequences of at most --seq-len tokens, losing no token.

    Samples are packed within their group (the input file they were rendered from, e.g. one
    `corpuskit bucket` bucket), groups stay in order, rows inside a group are shuffled by --seed.
    Each row keeps seq_lens and position_ids restarting at 0 per sample, so the trainer can keep
    samples from attending to each other.

    \b
    Example:
      corpuskit pack rendered/ -o packed/ --seq-len 4096
    """
    report = pack_dir(input_dir, output, seq_len, strategy, seed)
    d = report.details
    click.echo(f"pack: {d['samples']} samples -> {d['sequences']} sequences of <= {seq_len} tokens, "
               f"fill ratio {d['fill_ratio']:.4f} (unpacked: {d['unpacked_fill_ratio']:.4f}), "
               f"tokens in {d['tokens_in']} == out {d['tokens_out']}", err=True)
