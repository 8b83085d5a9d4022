"""`corpuskit convert`: any supported input format -> canonical jsonl, plus a rejects file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from corpuskit.cli_util import (encoding_option, from_option, handle_errors, inputs_argument,
                                max_record_option, progress, warn)
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, REPAIRS, TOO_LARGE, expand_inputs, iter_records
from corpuskit.ingest.bridges import SPLITS, add_system, to_source_target
from corpuskit.ingest.formats import ALPACA_LAYOUTS
from corpuskit.outputs import atomic_files, dumps
from corpuskit.overlap import check_paths
from corpuskit.records import Rejected
from corpuskit.report import StageReport


def convert(inputs, output, rejects_path, fmt="auto", to=None, encoding="utf-8", show_errors=20, repairs=(),
            category=None, report_path=None, split="none", system=None, alpaca_layout="newline",
            max_record_bytes=DEFAULT_MAX_RECORD_BYTES):
    """Stream every input record to `output` (canonical) or `rejects_path` (with reason); return the report.

    The output, the rejects and the report (`report_path`) are published together or not at all.
    `to="source-target"` requires pretrain records and writes them as {source, target} (`split`
    chooses the source); `system` is prepended to conversations without a system turn."""
    files = expand_inputs(inputs)
    report = StageReport("convert", inputs=files)
    shown = 0
    seen_files: set[str] = set()
    reshaped = {"not_split": 0} if to == "source-target" and split != "none" else {}
    systems = 0
    kind = "pretrain" if to == "source-target" else to
    with atomic_files() as outputs:
        out, rej = outputs.open(output), outputs.open(rejects_path)
        repaired = report.details.setdefault("repaired", {}) if repairs else {}
        for item in progress(iter_records(files, fmt, kind, encoding, repairs, alpaca_layout, max_record_bytes),
                             "convert"):
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
                if to == "source-target":
                    item, split_done = to_source_target(item, split)
                    if reshaped and not split_done:
                        reshaped["not_split"] += 1
                if system is not None:
                    systems += add_system(item, system)
                out.write(dumps(item.to_json()) + "\n")
        empty = [f for f in files if f not in seen_files]
        for f in empty:
            warn(f"{f}: no records (empty or blank lines only)")
        if empty:
            report.details["files_without_records"] = empty
        if to == "source-target":
            report.details["source_target"] = {"split": split, **reshaped}
        if system is not None:
            report.details["system_turn_added"] = systems
        if fmt in ("auto", "alpaca"):
            report.details["alpaca_layout"] = alpaca_layout
        if report_path:
            outputs.write_json(report_path, report.to_json())
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
@click.option("--to", type=click.Choice(["sft", "pretrain", "preference", "source-target"]), default=None,
              help="Require this record kind; records of the other kind are rejected (wrong_kind). "
                   "source-target: pretrain records written as Colossal-LLaMA-2's {source, target} "
                   "(loss on target; see --split).")
@click.option("--split", type=click.Choice(SPLITS), default="none", show_default=True,
              help="With --to source-target, what becomes the source of a text: none (empty source), "
                   "first-line (e.g. a title) or first-sentence; a text without that split is all target "
                   "(counted in the report as not_split).")
@click.option("--system", default=None, metavar="TEXT",
              help='A system turn for every conversation that has none, e.g. --system "你是一个乐于助人的助手。"')
@click.option("--alpaca-layout", type=click.Choice(list(ALPACA_LAYOUTS)), default="newline", show_default=True,
              help="How an Alpaca record's instruction and input form the user turn: newline "
                   "(instruction\\ninput, as Chinese-LLaMA-Alpaca-2 and LLaMA-Factory), blank-line, input-first, "
                   "or stanford (### Instruction: / ### Input: sections).")
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
def convert_cmd(inputs, output, rejects_path, category, to, split, system, alpaca_layout, fmt, encoding,
                max_record_bytes, repairs, strict, report_path):
    """Convert ShareGPT, Colossal-LLaMA-2, Alpaca, Llama2-Chinese CSV, People's Daily, plain text or
    preference pairs (Anthropic HH, UltraFeedback-binarized, flat prompt/chosen/rejected) to
    canonical records.

    \b
    Examples:
      corpuskit convert ShareGPT_V3.json -o chats.jsonl --to sft
      corpuskit convert ShareGPT_V3.json -o chats.jsonl --repair leading-assistant
      corpuskit convert atom_train.csv -o atom.jsonl --from llama2-chinese
      corpuskit convert 199801.txt -o pd.jsonl --from peoples-daily --category news
      corpuskit convert hh-rlhf-train.jsonl -o pairs.jsonl --to preference
      corpuskit convert news.jsonl -o colossal.jsonl --to source-target --split first-line
      corpuskit convert alpaca_zh.json -o chats.jsonl --system "你是一个乐于助人的助手。"
    """
    if split != "none" and to != "source-target":
        raise click.BadParameter("--split applies to --to source-target", param_hint="'--split'")
    if system is not None and not system.strip():
        raise click.BadParameter("the system turn is empty", param_hint="'--system'")
    if not output.endswith(".jsonl"):  # a `-o chats.json` would be jsonl that no reader takes back as .json
        raise click.BadParameter(f"{output}: the output is JSON Lines; name it *.jsonl",
                                 param_hint="'-o' / '--output'")
    if rejects_path is None:
        p = Path(output)
        rejects_path = str(p.with_name(p.name.removesuffix(".jsonl") + ".rejected.jsonl"))
    check_paths({"input": inputs}, files={"-o": output, "--rejects": rejects_path, "--report": report_path})
    report = convert(inputs, output, rejects_path, fmt, to, encoding, repairs=repairs, category=category,
                     report_path=report_path, split=split, system=system, alpaca_layout=alpaca_layout,
                     max_record_bytes=max_record_bytes)
    click.echo(report.summary(), err=True)
    if report.details.get("repaired"):
        click.echo("repaired (kept after an opt-in fix): " +
                   ", ".join(f"{k}={v}" for k, v in report.details["repaired"].items()), err=True)
    click.echo(f"wrote {output} ({report.kept} records) and {rejects_path} ({report.input - report.kept} rejected)",
               err=True)
    if strict and report.kept != report.input:
        sys.exit(1)
