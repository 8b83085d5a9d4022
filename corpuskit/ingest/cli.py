"""`corpuskit convert`: any supported input format -> canonical jsonl, plus a rejects file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corpuskit.cli_util import (encoding_option, from_option, handle_errors, inputs_argument,
                                max_record_option, progress, warn)
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, REPAIRS, TOO_LARGE, expand_inputs, iter_records
from corpuskit.outputs import atomic_file, dumps
from corpuskit.records import Rejected
from corpuskit.report import StageReport


def convert(inputs, output, rejects_path, fmt="auto", to=None, encoding="utf-8", show_errors=20, repairs=(),
            category=None, max_record_bytes=DEFAULT_MAX_RECORD_BYTES):
    """Stream every input record to `output` (canonical) or `rejects_path` (with reason); return the report."""
    files = expand_inputs(inputs)
    report = StageReport("convert", inputs=files)
    shown = 0
    seen_files: set[str] = set()
    with atomic_file(output) as out, atomic_file(rejects_path) as rej:
        repaired = report.details.setdefault("repaired", {}) if repairs else {}
        for item in progress(iter_records(files, fmt, to, encoding, repairs, max_record_bytes), "convert"):
            seen_files.add(item.origin.path)
            if isinstance(item, Rejected):
                report.reject(item)
                rej.write(dumps(item.to_json()) + "\n")
                if item.reason in ("parse_error", TOO_LARGE) and shown < show_errors:
                    warn(f"{item.origin}: {item.message}")
                    shown += 1
            else:
                report.keep()
                if category is not None and item.category is None and item.kind != "piece":
                    item.category = category
                for name in item.repairs:
                    repaired[name] = repaired.get(name, 0) + 1
                out.write(dumps(item.to_json()) + "\n")
    empty = [f for f in files if f not in seen_files]
    for f in empty:
        warn(f"{f}: no records (empty or blank lines only)")
    if empty:
        report.details["files_without_records"] = empty
    return report


def _split_repairs(ctx, param, values):
    names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
    unknown = [n for n in names if n not in REPAIRS]
    if unknown:
        raise click.BadParameter(f"unknown repair {', '.join(map(repr, unknown))} (choose from {', '.join(REPAIRS)})")
    return names


@click.command("convert")
@inputs_argument
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Canonical jsonl to write.")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False),
              help="Where rejected records go, one JSON per line with its reason [default: OUTPUT with .rejected.jsonl].")
@click.option("--category", default=None,
              help="Category for records that have none (records with their own keep it); bucket mixes by it.")
@click.option("--to", type=click.Choice(["sft", "pretrain"]), default=None,
              help="Require this record kind; records of the other kind are rejected (wrong_kind).")
@from_option
@encoding_option
@max_record_option
@click.option("--repair", "repairs", multiple=True, callback=_split_repairs, metavar="[" + "|".join(REPAIRS) + "]",
              help="Opt-in fixes, counted in the report (repeat or comma-separate): leading-assistant drops "
                   "assistant turns before the first user turn (ShareGPT continuations); trailing-user drops "
                   "an unanswered final user turn.")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any record was rejected.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
@handle_errors
def convert_cmd(inputs, output, rejects_path, category, to, fmt, encoding, max_record_bytes, repairs, strict,
                report_path):
    """Convert ShareGPT, Colossal-LLaMA-2, Alpaca, Llama2-Chinese CSV, People's Daily or plain text
    to canonical records.

    \b
    Examples:
      corpuskit convert ShareGPT_V3.json -o chats.jsonl --to sft
      corpuskit convert ShareGPT_V3.json -o chats.jsonl --repair leading-assistant
      corpuskit convert atom_train.csv -o atom.jsonl --from llama2-chinese
      corpuskit convert 199801.txt -o pd.jsonl --from peoples-daily --category news
    """
    if not output.endswith(".jsonl"):  # a `-o chats.json` would be jsonl that no reader takes back as .json
        raise click.BadParameter(f"{output}: the output is JSON Lines; name it *.jsonl",
                                 param_hint="'-o' / '--output'")
    if rejects_path is None:
        p = Path(output)
        rejects_path = str(p.with_name(p.name.removesuffix(".jsonl") + ".rejected.jsonl"))
    report = convert(inputs, output, rejects_path, fmt, to, encoding, repairs=repairs, category=category,
                     max_record_bytes=max_record_bytes)
    if report_path:
        from corpuskit.outputs import write_json
        write_json(report_path, report.to_json())
    click.echo(report.summary(), err=True)
    if report.details.get("repaired"):
        click.echo("repaired (kept after an opt-in fix): " +
                   ", ".join(f"{k}={v}" for k, v in report.details["repaired"].items()), err=True)
    click.echo(f"wrote {output} ({report.kept} records) and {rejects_path} ({report.input - report.kept} rejected)",
               err=True)
    if strict and report.kept != report.input:
        sys.exit(1)
