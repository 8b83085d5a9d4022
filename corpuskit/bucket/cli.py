"""`corpuskit bucket`: category-balanced, weighted, seeded buckets for continued pretraining."""

from __future__ import annotations

import click

import os

from corpuskit.bucket.inputs import category_options
from corpuskit.bucket.run import UnknownCategories, bucket
from corpuskit.bucket.weights import parse_weights
from corpuskit.cli_util import (UsageProblem, encoding_option, engine_options, from_option, handle_errors,
                                inputs_argument, max_record_option, seed_option, workers_option)
from corpuskit.overlap import check_paths


@click.command("bucket")
@inputs_argument
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Output folder (written atomically; replaced only if corpuskit wrote it).")
@click.option("-n", "--num-buckets", required=True, type=click.IntRange(1, 100000),
              help="Exactly this many bucket files are written (some may be empty if the data is small).")
@category_options
@click.option("--weights", "weights_spec", metavar="NAME=W,... | FILE.json",
              help="Resample categories: 2 repeats every record twice, 1.5 adds a seeded half, "
                   "0.5 keeps a seeded half (the rest are rejected as 'downsampled'). Others keep weight 1.")
@seed_option
@click.option("--shuffle/--no-shuffle", default=True, show_default=True,
              help="Shuffle each category before binning and each bucket's records (seeded); "
                   "--no-shuffle bins contiguous stretches and keeps input order.")
@workers_option
@from_option
@encoding_option
@max_record_option
@engine_options
@handle_errors
def bucket_cmd(inputs, outdir, num_buckets, category_field, default_category, category_by_file,
               weights_spec, seed, shuffle, workers, fmt, encoding, max_record_bytes, engine, ray_address,
               split_bytes):
    """Split records into N buckets so that every bucket holds every category in its global share
    (Colossal-LLaMA-2's mixing): each category is shuffled and cut into N bins differing by at most
    one record, and bucket i takes bin i of every category.

    Writes OUTDIR/bucket-00000.jsonl ... (exactly N files), OUTDIR/manifest.json (per bucket:
    records, count per category, sha256; seed, weights, inputs, counts before/after weighting),
    OUTDIR/rejected.jsonl and OUTDIR/report.json + report.md. Same inputs and seed give
    byte-identical output, whatever --workers, --engine or --split-size is: records are read and
    converted in parallel (big .jsonl/.txt files in byte-range splits, so one big file uses every
    worker; --engine ray runs them on a Ray cluster), then planned and written here. INPUT may be
    files, folders, globs or a `corpuskit clean` output folder.

    \b
    Examples:
      corpuskit bucket news.jsonl chats.jsonl -o buckets --num-buckets 8
      corpuskit bucket news.jsonl chats.jsonl -o buckets -n 4 --category-by-file --weights news=0.5
      corpuskit bucket clean-out/ -o buckets -n 16 --weights zh=2,en=0.5 --seed 7
      corpuskit bucket shards/ -o buckets -n 64 --workers 16
      corpuskit bucket big.jsonl -o buckets -n 64 --engine ray --ray-address auto
      corpuskit bucket data/ -o buckets -n 4 --weights weights.json --category-field source
    """
    check_paths({"input": inputs, "--weights": weights_spec if weights_spec and os.path.isfile(weights_spec) else None},
                dirs={"-o": outdir})
    weights = parse_weights(weights_spec)
    try:
        report, manifest = bucket(inputs, outdir, num_buckets, seed, weights, shuffle, category_field,
                                  default_category, fmt, encoding, category_by_file, workers, max_record_bytes,
                                  engine, ray_address, split_bytes)
    except UnknownCategories as e:
        raise UsageProblem(str(e)) from e
    click.echo(report.summary(), err=True)
    cats = ", ".join(f"{n} {c['before']}->{c['after']}" for n, c in manifest["categories"].items())
    click.echo(f"wrote {num_buckets} buckets ({manifest['records']['after']} records; {cats or 'no records'}) "
               f"to {outdir}", err=True)
