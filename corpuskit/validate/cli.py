"""`corpuskit validate`: check data files record by record; exit 0 only if all are valid."""

from __future__ import annotations

from typing import Iterator

import click

from corpuskit.cli_util import (encoding_option, engine_options, handle_errors, max_record_option, progress,
                                workers_option)
from corpuskit.engine import make_executor
from corpuskit.engine.runner import LineNumbers
from corpuskit.engine.splits import DEFAULT_SPLIT_BYTES, auto_split_bytes, plan_splits
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, FORMATS, InputError, expand_inputs
from corpuskit.outputs import dumps
from corpuskit.validate.files import FileResult, SplitCheck, merge_split_results, validate_split
from corpuskit.validate.schemas import SCHEMA_NAMES


def _targets(inputs: tuple[str, ...]) -> Iterator[str | FileResult]:
    """Each input expanded to files; an input that names nothing usable becomes a failed result."""
    for inp in inputs:
        try:
            yield from expand_inputs([inp])
        except InputError as e:  # named after the file at fault (a FIFO inside a folder, ...)
            yield FileResult(e.path, file_error=(e.line, e.message))


def _run(targets: list[str | FileResult], schema: str, encoding: str, max_errors: int, workers: int,
         fmt: str | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, engine: str = "local",
         ray_address: str | None = None, split_bytes: int | None = DEFAULT_SPLIT_BYTES) -> Iterator[FileResult]:
    """Results in input order, whatever the engine, number of workers or split size: every file is read
    in byte-range splits (big .jsonl/.txt) that run in parallel, and each file's splits are merged."""
    with make_executor(engine, workers, ray_address) as ex:
        if split_bytes is None:  # sized for the workers, over all the files (splits.auto_split_bytes)
            split_bytes = auto_split_bytes([t for t in targets if not isinstance(t, FileResult)], ex.workers)
        plan = [t if isinstance(t, FileResult) else plan_splits([t], split_bytes) for t in targets]
        tasks = [SplitCheck(s, schema, encoding, max_errors, fmt, max_record_bytes)
                 for p in plan if isinstance(p, list) for s in p]
        numbers = LineNumbers()
        results = iter(progress(ex.map(validate_split, tasks), "validate", total=len(tasks), unit="split"))
        for p in plan:
            if isinstance(p, FileResult):
                yield p
            else:
                yield merge_split_results([next(results) for _ in p], p, numbers, max_errors)


def _print_text(result: FileResult, max_errors: int) -> None:
    if result.file_error:
        line, message = result.file_error
        click.echo(f"{result.path}:{line}: {message}" if line else f"{result.path}: {message}")
    for line, message in result.errors:
        click.echo(f"{result.path}:{line}: {message}")
    hidden = result.invalid - len(result.errors)
    status = "OK" if result.ok else "FAILED"
    more = f" (first {max_errors} errors shown)" if hidden > 0 else ""
    click.echo(f"{result.path}: {status}: {result.records} records, {result.valid} valid, "
               f"{result.invalid} invalid{more}")


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--schema", type=click.Choice(("auto",) + SCHEMA_NAMES), default="auto", show_default=True,
              help="Record schema to check against; auto picks per record (chosen/rejected -> preference, messages -> sft, piece -> piece, "
                   "Llama2-Chinese '<s>Human: ...' text -> sft, else pretrain).")
@click.option("--max-errors", type=click.IntRange(0), default=50, show_default=True,
              help="Error lines printed per file (all invalid records are still counted).")
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: `path:line: message` lines and a summary per file; json: one JSON object per file "
                   "per line.")
@click.option("--from", "fmt", type=click.Choice([f for f in FORMATS if f != "canonical"]), default=None,
              help="Validate raw records of this format (most Chinese instruction sets are Alpaca) as "
                   "`corpuskit convert --from` reads them: a record is valid when it converts to a valid "
                   "canonical record. Default: the files are canonical.")
@encoding_option
@max_record_option
@workers_option
@engine_options
@handle_errors
@click.pass_context
def validate_cmd(ctx, files, schema, max_errors, out_format, fmt, encoding, max_record_bytes, workers, engine,
                 ray_address, split_bytes):
    """Check canonical data files (jsonl, JSON array, CSV; .gz too) record by record against the
    JSON Schemas in schemas/ and the turn-order rules. Exits 0 only if every record of every file
    is valid; an empty or blank-only file is an error.

    \b
    Examples:
      corpuskit validate chats.jsonl --schema sft
      corpuskit validate data/ --format json > validate.jsonl
      corpuskit validate atom_train.csv.gz --schema sft
      corpuskit validate 'corpus/**/*.jsonl.gz' --max-errors 10 --workers 2
      corpuskit validate alpaca_gpt4_zh.json --from alpaca
    """
    all_ok = True
    n_files = n_records = n_invalid = 0
    for result in _run(list(_targets(files)), schema, encoding, max_errors, workers, fmt, max_record_bytes, engine,
                       ray_address, split_bytes):
        all_ok &= result.ok
        n_files += 1
        n_records += result.records
        n_invalid += result.invalid
        if out_format == "json":
            click.echo(dumps(result.to_json()))
        else:
            _print_text(result, max_errors)
    if out_format == "text" and n_files > 1:
        click.echo(f"validate: {'OK' if all_ok else 'FAILED'}: {n_files} files, {n_records} records, "
                   f"{n_invalid} invalid")
    if not all_ok:
        ctx.exit(1)
