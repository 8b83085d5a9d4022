"""`corpuskit clean`: normalise, filter and deduplicate records; every dropped record has a reason."""

from __future__ import annotations

import os

import click

from corpuskit.clean.config import ConfigError, load_config
from corpuskit.clean.minhash import SHINGLES, SKETCHES, MinHashParams
from corpuskit.clean.neardup_disk import MemoryBudget
from corpuskit.clean.pipeline import DEDUP_METHODS, CleanOptions, clean
from corpuskit.cli_util import (FloatRange, UsageProblem, encoding_option, engine_options, from_option, handle_errors,
                                inputs_argument, max_record_option, seed_option, workers_option)
from corpuskit.overlap import check_paths


def _parse_dedup(ctx, param, value: str) -> tuple[str, ...]:
    if value == "none":
        return ()
    methods = tuple(m.strip() for m in value.split(",") if m.strip())
    bad = [m for m in methods if m not in DEDUP_METHODS]
    if bad or not methods or len(set(methods)) != len(methods):
        raise click.BadParameter(f"{value!r}: use none, exact, minhash or exact,minhash")
    return tuple(m for m in DEDUP_METHODS if m in methods)


def _parse_memory(ctx, param, value: str) -> MemoryBudget:
    try:
        return MemoryBudget.parse(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e


@click.command("clean")
@inputs_argument
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Output folder: clean.jsonl, rejected.jsonl, report.json, report.md (written atomically).")
@click.option("--filters", "filters_spec", default="default", show_default=True,
              metavar="default|zh|en|web|none|FILE.yaml",
              help="Normalisation and quality filters: a preset or a YAML file (see README, section clean). "
                   "default: thresholds per record's script (Chinese or English), records judged as paragraphs; "
                   "zh / en: every record judged as Chinese / English; web: every rule (C4 too), records judged "
                   "as web pages; none: nothing.")
@click.option("--dedup", default="exact,minhash", show_default=True, callback=_parse_dedup,
              metavar="exact,minhash|exact|minhash|none", help="Duplicate removal methods.")
@click.option("--threshold", type=FloatRange(0.0, 1.0, min_open=True), default=0.8, show_default=True,
              help="Near-duplicate threshold on the Jaccard similarity of shingle sets (estimated by MinHash, exact near the threshold).")
@click.option("--num-perm", type=click.IntRange(16, 1024), default=128, show_default=True,
              help="MinHash permutations (signature length).")
@click.option("--ngram", type=click.IntRange(1, 64), default=5, show_default=True, help="Shingle size in tokens.")
@click.option("--shingle", type=click.Choice(SHINGLES), default="char", show_default=True,
              help="Shingle tokens: characters (works for Chinese), whitespace words, or jieba words.")
@click.option("--lsh-index", type=click.Choice(["compact", "datasketch"]), default="compact", show_default=True,
              help="LSH band index: compact (dedup state ~2.1 kB/record) or datasketch's MinHashLSH "
                   "(~7.3 kB/record); same results.")
@click.option("--sketch", type=click.Choice(SKETCHES), default="rensa", show_default=True,
              help="MinHash sketch: rensa's R-MinHash (fast), or affine32 (bit-identical to datasketch's MinHash).")
@click.option("--memory", "memory", default="auto", show_default=True, metavar="auto|SIZE", callback=_parse_memory,
              help="Memory budget for the whole run (all workers), e.g. 8G. auto: 400 MB + 300 bytes per record. "
                   "Near-dup state stays in memory while it fits, else it moves to sorted runs on disk (same output).")
@click.option("--tmp-dir", type=click.Path(file_okay=False), default=None,
              help="Scratch folder for near-dup runs on disk (default: beside the output; removed at the end).")
@workers_option
@engine_options(split_default="256K: a split's records wait in memory until dedup has indexed them")
@seed_option
@from_option
@encoding_option
@max_record_option
@handle_errors
def clean_cmd(inputs, outdir, filters_spec, dedup, threshold, num_perm, ngram, shingle, lsh_index, sketch, memory,
              tmp_dir, workers, engine, ray_address, split_bytes, seed, fmt, encoding, max_record_bytes):
    """Normalise text, drop low-quality records (mojibake, HTML/JS left-overs, menus and
    boilerplate, random characters; Gopher, FineWeb and C4 rules, with Chinese thresholds for
    Chinese records), and remove exact and MinHash near-duplicates, keeping the earliest record of
    each cluster.

    Every input record ends up in OUTDIR/clean.jsonl (input order, canonical form) or in
    OUTDIR/rejected.jsonl with its reason; OUTDIR/report.json checks input = kept + rejected.
    Output is byte-identical for the same inputs and seed, whatever --workers, --engine or
    --split-size is: the per-record work runs on the engine, dedup decisions on this machine.

    \b
    Examples:
      corpuskit clean chats.jsonl news.jsonl -o cleaned/
      corpuskit clean 199801.txt --from peoples-daily -o pd_clean --workers 4
      corpuskit clean crawl/ -o web_clean --filters web
      corpuskit clean crawl/ -o out --filters my_filters.yaml --threshold 0.7 --shingle jieba
      corpuskit clean big.jsonl -o out --engine ray --ray-address auto
    """
    check_paths({"input": inputs, "--filters": filters_spec if os.path.isfile(filters_spec) else None},
                dirs={"-o": outdir})
    try:
        config = load_config(filters_spec)
    except ConfigError as e:
        raise UsageProblem(str(e)) from e
    opts = CleanOptions(config=config, dedup=dedup,
                        minhash=MinHashParams(num_perm=num_perm, ngram=ngram, shingle=shingle, seed=seed,
                                              threshold=threshold, lsh_index=lsh_index, sketch=sketch),
                        workers=workers, fmt=fmt, encoding=encoding, max_record_bytes=max_record_bytes,
                        memory=memory, tmp_dir=tmp_dir, engine=engine, ray_address=ray_address,
                        split_bytes=split_bytes)
    report = clean(inputs, outdir, opts)
    click.echo(report.summary(), err=True)
    click.echo(f"wrote {os.path.join(outdir, 'clean.jsonl')} ({report.kept} records), rejected.jsonl, report.json, report.md", err=True)
