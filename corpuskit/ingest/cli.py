"""`corpuskit convert`: any supported input format -> canonical jsonl, plus a rejects file."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from corpuskit.cli_util import (encoding_option, engine_options, from_option, handle_errors, inputs_argument,
                                progress, shard_options, split_size_option, warn,
                                workers_option)
from corpuskit.engine import make_executor
from corpuskit.engine.runner import run_splits
from corpuskit.engine.splits import DEFAULT_SPLIT_BYTES, plan_splits
from corpuskit.engine.tasks import RecordTask, run_record_task
from corpuskit.ingest import REPAIRS, expand_inputs
from corpuskit.ingest.steps import DefaultCategoryStep, ParseStep
from corpuskit.engine.shards import ShardedWriter
from corpuskit.outputs import atomic_dir, atomic_file, dumps, write_json
from corpuskit.report import StageReport


@dataclass(frozen=True)
class ConvertSteps:
    """convert's steps, rebuilt once in each worker (picklable, hashable)."""

    fmt: str = "auto"
    to: str | None = None
    repairs: frozenset = frozenset()
    category: str | None = None

    def __call__(self) -> list:
        steps = [ParseStep(self.fmt, self.to, self.repairs)]
        if self.category is not None:
            steps.append(DefaultCategoryStep(self.category))
        return steps


def convert(inputs, output, rejects_path, fmt="auto", to=None, encoding="utf-8", show_errors=20, repairs=(),
            category=None, engine="local", workers=1, ray_address=None, split_bytes=DEFAULT_SPLIT_BYTES,
            shards=None, shard_bytes=None):
    """Stream every input record to `output` (canonical) or `rejects_path` (with reason); return the report.

    Big .jsonl/.txt files are read in byte-range splits, in parallel with `workers` or on Ray; output
    is written in input order, so it is byte-identical whatever the engine, workers or split size.
    With `shards` or `shard_bytes`, `output` is a folder of numbered parts + manifest.json + rejected.jsonl
    + report.json, which every command reads as input."""
    files = expand_inputs(inputs)
    report = StageReport("convert", inputs=files)
    build = ConvertSteps(fmt, to, frozenset(repairs), category)
    tasks = [RecordTask(s, build, encoding) for s in plan_splits(files, split_bytes)]
    with make_executor(engine, workers, ray_address) as ex:
        results = progress(run_splits(ex, run_record_task, tasks), "convert", total=len(tasks), unit="split")
        if shards is None and shard_bytes is None:
            with atomic_file(output) as out, atomic_file(rejects_path) as rej:
                _write_results(results, report, lambda lines: out.write("\n".join(lines) + "\n"), rej, show_errors)
        else:
            with atomic_dir(output) as tmp:
                writer = ShardedWriter(tmp, "part", shards, shard_bytes)
                with open(tmp / "rejected.jsonl", "w", encoding="utf-8", newline="\n") as rej:
                    _write_results(results, report, writer.write_lines, rej, show_errors)
                manifest = writer.close()
                write_json(tmp / "manifest.json", manifest)
                report.details["shards"] = len(manifest["shards"])
                _finish(report, files, repairs)
                report.write(tmp)
                return report
    return _finish(report, files, repairs)


def _write_results(results, report: StageReport, write_lines, rej, show_errors: int) -> None:
    shown = 0
    items_per_file = report.details.setdefault("_items", {})
    for res in results:
        items_per_file[res.split.path] = items_per_file.get(res.split.path, 0) + res.counters["items"]
        if res.lines:
            write_lines(res.lines)
        report.keep(len(res.lines))
        for item in res.rejected:
            report.reject(item)
            rej.write(dumps(item.to_json()) + "\n")
            if item.reason == "parse_error" and shown < show_errors:
                warn(f"{item.origin}: {item.message}")
                shown += 1
        repaired = report.details.setdefault("_repaired", {})
        for key, n in res.counters.items():
            if key.startswith("repaired."):
                repaired[key.removeprefix("repaired.")] = repaired.get(key.removeprefix("repaired."), 0) + n


def _finish(report: StageReport, files: list[str], repairs) -> StageReport:
    items_per_file = report.details.pop("_items", {})
    repaired = report.details.pop("_repaired", {})
    if repairs:
        report.details["repaired"] = {name: repaired[name] for name in REPAIRS if name in repaired}
    empty = [f for f in files if not items_per_file.get(f)]
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
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Canonical jsonl to write (with --shards/--shard-size: a folder of numbered parts).")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False),
              help="Where rejected records go, one JSON per line with its reason [default: OUTPUT with .rejected.jsonl].")
@click.option("--category", default=None,
              help="Category for records that have none (records with their own keep it); bucket mixes by it.")
@click.option("--to", type=click.Choice(["sft", "pretrain"]), default=None,
              help="Require this record kind; records of the other kind are rejected (wrong_kind).")
@from_option
@encoding_option
@click.option("--repair", "repairs", multiple=True, callback=_split_repairs, metavar="[" + "|".join(REPAIRS) + "]",
              help="Opt-in fixes, counted in the report (repeat or comma-separate): leading-assistant drops "
                   "assistant turns before the first user turn (ShareGPT continuations); trailing-user drops "
                   "an unanswered final user turn.")
@click.option("--strict", is_flag=True, help="Exit with status 1 if any record was rejected.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
@workers_option
@engine_options
@split_size_option
@shard_options
@handle_errors
def convert_cmd(inputs, output, rejects_path, category, to, fmt, encoding, repairs, strict, report_path, workers,
                engine, ray_address, split_bytes, shards, shard_bytes):
    """Convert ShareGPT, Colossal-LLaMA-2, Alpaca, Llama2-Chinese CSV, People's Daily or plain text
    to canonical records.

    \b
    Examples:
      corpuskit convert ShareGPT_V3.json -o chats.jsonl --to sft
      corpuskit convert ShareGPT_V3.json -o chats.jsonl --repair leading-assistant
      corpuskit convert atom_train.csv -o atom.jsonl --from llama2-chinese
      corpuskit convert 199801.txt -o pd.jsonl --from peoples-daily --category news
    """
    sharded = shards is not None or shard_bytes is not None
    if sharded:
        if rejects_path is not None:
            raise click.BadParameter("with --shards/--shard-size the rejects go to OUTPUT/rejected.jsonl",
                                     param_hint="'--rejects'")
        rejects_path = os.path.join(output, "rejected.jsonl")
    elif not output.endswith(".jsonl"):  # a `-o chats.json` would be jsonl that no reader takes back as .json
        raise click.BadParameter(f"{output}: the output is JSON Lines; name it *.jsonl (or give --shards N "
                                 "to write a folder)", param_hint="'-o' / '--output'")
    if rejects_path is None:
        p = Path(output)
        rejects_path = str(p.with_name(p.name.removesuffix(".jsonl") + ".rejected.jsonl"))
    report = convert(inputs, output, rejects_path, fmt, to, encoding, repairs=repairs, category=category,
                     engine=engine, workers=workers, ray_address=ray_address, split_bytes=split_bytes,
                     shards=shards, shard_bytes=shard_bytes)
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
