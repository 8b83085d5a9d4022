"""`corpuskit stats`: what is in a corpus, per category, before choosing mixture weights."""

from __future__ import annotations

import click

from corpuskit.bucket.inputs import category_options
from corpuskit.cli_util import (MAX_WORKERS, encoding_option, engine_options, from_option, handle_errors,
                                inputs_argument, max_record_option, progress, warn)
from corpuskit.engine import make_executor
from corpuskit.engine.items import run_item_tasks
from corpuskit.engine.tasks import record_tasks
from corpuskit.ingest import expand_inputs
from corpuskit.outputs import atomic_files
from corpuskit.overlap import check_paths
from corpuskit.report import StageReport
from corpuskit.stats.collect import merge_counts
from corpuskit.stats.render import save_plot, to_json, to_text
from corpuskit.stats.steps import StatsCountStep, StatsSteps

SHOW_REJECTS = 10


@click.command("stats")
@inputs_argument
@click.option("--tokenizer", type=click.Path(), default=None,
              help="Hugging Face tokenizer directory; adds token counts (no BOS/EOS) and a token-length histogram.")
@category_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the statistics as JSON here.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Also save the length histogram as a PNG here.")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              help="Worker processes (or Ray tasks) that read, parse and count; counts never depend on this.")
@engine_options
@from_option
@encoding_option
@max_record_option
@handle_errors
def stats_cmd(inputs, tokenizer, category_field, default_category, category_by_file, json_path, plot_path,
              workers, engine, ray_address, split_bytes, fmt, encoding, max_record_bytes):
    """Records, characters and tokens per category, and a length histogram (power-of-two ranges),
    printed as a table. Records that cannot be read are counted as rejected with their reason
    (the first few are listed with file and line). SFT records count the text of all turns.
    The work runs on --engine (--workers processes, or Ray tasks): big .jsonl/.txt files are read
    in byte ranges in parallel and the counts are added up in input order, so the numbers (and the
    rejects listed) never depend on the engine, the workers or --split-size.

    \b
    Examples:
      corpuskit stats news.jsonl chats.jsonl --category-by-file
      corpuskit stats clean-out/ --tokenizer llama2-hf/ --json stats.json --plot lengths.png --workers 8
    """
    check_paths({"input": inputs, "--tokenizer": tokenizer}, files={"--json": json_path, "--plot": plot_path})
    files = expand_inputs(inputs)
    count = StatsCountStep(category_field, default_category, category_by_file)
    if tokenizer:  # loaded here first: a bad folder is one line before any work starts
        from corpuskit.render.tokenizer_dir import tokenizer_fingerprint
        from corpuskit.stats.tokens import cached_token_counter, load_token_counter
        counter = load_token_counter(tokenizer, workers)
        fingerprint = tokenizer_fingerprint(tokenizer)
        cached_token_counter(tokenizer, fingerprint, counter)
        count = StatsCountStep(category_field, default_category, category_by_file, tokenizer, fingerprint)
    report = StageReport("stats", inputs=files)
    shown = [0]

    def on_reject(rej) -> None:
        if shown[0] < SHOW_REJECTS:
            warn(f"{rej.origin}: rejected ({rej.reason}): {rej.message}")
        shown[0] += 1

    with make_executor(engine, workers, ray_address) as ex:
        tasks = record_tasks(files, StatsSteps(fmt, count), encoding, max_record_bytes, split_bytes, ex.workers)
        stats = merge_counts(progress(run_item_tasks(ex, tasks), "stats", unit="task"), report,
                             tokenizer is not None, on_reject)
    if shown[0] > SHOW_REJECTS:
        warn(f"... and {shown[0] - SHOW_REJECTS} more rejected records")
    click.echo(to_text(stats), nl=False)
    with atomic_files() as outputs:  # --json and --plot describe one run: published together
        if json_path:
            outputs.write_json(json_path, to_json(stats, files, category_field, default_category, tokenizer))
        if plot_path:
            save_plot(stats, outputs.open(plot_path, "wb"))
