"""`corpuskit convert`: any supported input format -> canonical jsonl, plus a rejects file."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from corpuskit.cli_util import (encoding_option, engine_options, from_option, handle_errors, inputs_argument,
                                max_record_option, progress, shard_options, warn, workers_option)
from corpuskit.engine import fs, make_executor
from corpuskit.engine.shards import MANIFEST, ShardedWriter
from corpuskit.engine.tasks import record_tasks, run_record_tasks
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, REPAIRS, TOO_LARGE, expand_inputs
from corpuskit.ingest.bridges import SPLITS
from corpuskit.ingest.formats import ALPACA_LAYOUTS
from corpuskit.ingest.steps import DefaultCategoryStep, ParseStep, SourceTargetStep, SystemTurnStep
from corpuskit.outputs import MARKER, OutputError, atomic_dir, atomic_files, dumps, marker_json
from corpuskit.overlap import check_paths
from corpuskit.report import StageReport


@dataclass(frozen=True)
class ConvertSteps:
    """convert's steps for its options (picklable: every task builds them where it runs)."""

    fmt: str = "auto"
    kind: str | None = None
    repairs: frozenset = frozenset()
    alpaca_layout: str = "newline"
    category: str | None = None
    split: str | None = None  # --to source-target: what becomes the source
    system: str | None = None

    def __call__(self) -> list:
        steps = [ParseStep(self.fmt, self.kind, self.repairs, self.alpaca_layout)]
        if self.category is not None:
            steps.append(DefaultCategoryStep(self.category))
        if self.split is not None:
            steps.append(SourceTargetStep(self.split))
        if self.system is not None:
            steps.append(SystemTurnStep(self.system))
        return steps


def convert(inputs, output, rejects_path, fmt="auto", to=None, encoding="utf-8", show_errors=20, repairs=(),
            category=None, report_path=None, split="none", system=None, alpaca_layout="newline",
            max_record_bytes=DEFAULT_MAX_RECORD_BYTES, engine="local", workers=1, ray_address=None,
            split_bytes=None, shards=None, shard_bytes=None):
    """Every input record to `output` (canonical) or `rejects_path` (with reason); return the report.

    The output, the rejects and the report (`report_path`) are published together or not at all.
    `to="source-target"` requires pretrain records and writes them as {source, target} (`split`
    chooses the source); `system` is prepended to conversations without a system turn.

    Work runs on `engine` (`workers` processes, or Ray tasks): big .jsonl/.txt files are read in
    byte-range splits of `split_bytes` (None: sized for the workers), and results are written in
    input order, so the bytes never depend on the engine, the workers or the split size. With
    `shards` or `shard_bytes`, `output` is a folder (published whole) of numbered parts +
    manifest.json + rejected.jsonl + report.json, which every command reads as input;
    `rejects_path` and `report_path` are then unused."""
    files = expand_inputs(inputs)
    report = StageReport("convert", inputs=files)
    kind = "pretrain" if to == "source-target" else to
    build = ConvertSteps(fmt, kind, frozenset(repairs), alpaca_layout, category,
                         split if to == "source-target" else None, system)
    if repairs:
        report.details["repaired"] = {}
    with make_executor(engine, workers, ray_address) as ex:
        tasks = record_tasks(files, build, encoding, max_record_bytes, split_bytes, ex.workers)
        results = progress(run_record_tasks(ex, tasks), "convert", unit="task")
        if shards is None and shard_bytes is None:
            with _output_files(output, rejects_path, report_path) as outputs:
                out, rej = outputs.open(output, "wb"), outputs.open(rejects_path)
                tally = _write(results, out.write, rej, report, show_errors)
                _details(report, files, tally, to, split, system, fmt, alpaca_layout)
                if report_path:
                    outputs.write_json(report_path, report.to_json())
        else:
            with _output_folder(output) as (folder, spool_dir):
                writer = ShardedWriter(lambda name: folder.open(name, "wb"), "part", shards, shard_bytes, spool_dir)
                try:
                    with folder.open("rejected.jsonl", "w") as rej:
                        tally = _write(results, writer.write, rej, report, show_errors)
                    manifest = writer.close()
                except BaseException:
                    writer.abort()
                    raise
                _details(report, files, tally, to, split, system, fmt, alpaca_layout)
                report.details["shards"] = len(manifest["shards"])
                for name, text in ((MANIFEST, _json_text(manifest)), ("report.json", _json_text(report.to_json())),
                                   ("report.md", report.to_markdown())):
                    with folder.open(name, "w") as fh:
                        fh.write(text)
    return report


def _json_text(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"  # as outputs.write_json writes it


def _output_files(*paths):
    """Local outputs are published together (outputs.atomic_files); URLs through fsspec (engine/fs.py)."""
    remote = {fs.is_remote(p) for p in paths if p is not None}
    if len(remote) > 1:
        raise OutputError(f"{', '.join(p for p in paths if p)}: give the outputs all as URLs or all as local paths")
    return fs.remote_files() if remote == {True} else atomic_files()


@contextlib.contextmanager
def _output_folder(path):
    """(folder to write into, where --shards may spool): published whole locally (outputs.atomic_dir),
    a new folder with its marker written last at a URL (engine/fs.py)."""
    if fs.is_remote(path):
        with fs.remote_dir(path, marker_json("convert"), MARKER) as folder:
            yield folder, None
        return
    with atomic_dir(path, "convert") as tmp:
        def opener(name: str, mode: str = "wb"):
            return open(tmp / name, mode) if "b" in mode else open(tmp / name, mode, encoding="utf-8", newline="\n")
        yield fs.Folder(opener), str(tmp)


def _write(results, write_data, rej, report: StageReport, show_errors: int) -> tuple[dict, dict]:
    """Results (in input order) to the output and the rejects; counts into `report`. Returns the
    raw items read per file and the steps' counters."""
    shown = 0
    items_per_file: dict[str, int] = {}
    counters: dict[str, int] = {}
    for res in results:
        items_per_file[res.split.path] = items_per_file.get(res.split.path, 0) + res.items
        if res.kept:
            write_data(res.data)
            report.keep(res.kept)
        for item in res.rejected:
            report.reject(item)
            rej.write(dumps(item.to_json()) + "\n")
            if item.reason in ("parse_error", TOO_LARGE) and shown < show_errors:
                warn(f"{item.origin}: {item.message}")
                shown += 1
        for key, n in res.counters.items():
            counters[key] = counters.get(key, 0) + n
    return items_per_file, counters


def _details(report: StageReport, files: list[str], tally: tuple[dict, dict], to, split, system, fmt,
             alpaca_layout) -> None:
    items_per_file, counters = tally
    if "repaired" in report.details:  # in the order the repairs were first applied
        report.details["repaired"] = {k.removeprefix("repaired."): n for k, n in counters.items()
                                      if k.startswith("repaired.")}
    empty = [f for f in files if not items_per_file.get(f)]
    for f in empty:
        warn(f"{f}: no records (empty or blank lines only)")
    if empty:
        report.details["files_without_records"] = empty
    if to == "source-target":
        report.details["source_target"] = {"split": split, **({"not_split": counters.get("not_split", 0)}
                                                              if split != "none" else {})}
    if system is not None:
        report.details["system_turn_added"] = counters.get("system_turn_added", 0)
    if fmt in ("auto", "alpaca"):
        report.details["alpaca_layout"] = alpaca_layout


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
@workers_option
@engine_options
@shard_options
@handle_errors
def convert_cmd(inputs, output, rejects_path, category, to, split, system, alpaca_layout, fmt, encoding,
                max_record_bytes, repairs, strict, report_path, workers, engine, ray_address, split_bytes, shards,
                shard_bytes):
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
      corpuskit convert big.jsonl -o parts/ --shards 64 --workers 8
      corpuskit convert big.jsonl -o parts/ --shard-size 256M --engine ray --ray-address auto
    """
    if split != "none" and to != "source-target":
        raise click.BadParameter("--split applies to --to source-target", param_hint="'--split'")
    if system is not None and not system.strip():
        raise click.BadParameter("the system turn is empty", param_hint="'--system'")
    if shards is not None and shard_bytes is not None:
        raise click.UsageError("give --shards or --shard-size, not both")
    output, rejects_path, report_path = (fs.local_path(p) for p in (output, rejects_path, report_path))
    sharded = shards is not None or shard_bytes is not None
    if sharded:
        for given, name, where in ((rejects_path, "--rejects", "rejected.jsonl"), (report_path, "--report", "report.json")):
            if given is not None:
                raise click.BadParameter(f"with --shards/--shard-size it is written as OUTPUT/{where}",
                                         param_hint=f"'{name}'")
        if output.endswith(".jsonl"):
            raise click.BadParameter(f"{output}: with --shards/--shard-size the output is a folder of "
                                     "part-*.jsonl files; name it without .jsonl", param_hint="'-o' / '--output'")
        if fs.is_remote(output):
            fs.check_outputs(inputs, {"-o": output}, folder=True)
        else:
            check_paths({"input": inputs}, dirs={"-o": output})
    else:
        if not output.endswith(".jsonl"):  # a `-o chats.json` would be jsonl that no reader takes back as .json
            raise click.BadParameter(f"{output}: the output is JSON Lines; name it *.jsonl (or give --shards N "
                                     "to write a folder of parts)", param_hint="'-o' / '--output'")
        if rejects_path is None:
            rejects_path = (output.removesuffix(".jsonl") if fs.is_remote(output) else
                            str(Path(output).with_name(Path(output).name.removesuffix(".jsonl")))) + ".rejected.jsonl"
        outputs = {"-o": output, "--rejects": rejects_path, "--report": report_path}
        if any(fs.is_remote(p) for p in outputs.values()):
            if not all(p is None or fs.is_remote(p) for p in outputs.values()):
                raise click.UsageError("give -o, --rejects and --report all as URLs or all as local paths")
            fs.check_outputs(inputs, outputs)
        else:
            check_paths({"input": inputs}, files=outputs)
    report = convert(inputs, output, rejects_path, fmt, to, encoding, repairs=repairs, category=category,
                     report_path=report_path, split=split, system=system, alpaca_layout=alpaca_layout,
                     max_record_bytes=max_record_bytes, engine=engine, workers=workers, ray_address=ray_address,
                     split_bytes=split_bytes, shards=shards, shard_bytes=shard_bytes)
    click.echo(report.summary(), err=True)
    if report.details.get("repaired"):
        click.echo("repaired (kept after an opt-in fix): " +
                   ", ".join(f"{k}={v}" for k, v in report.details["repaired"].items()), err=True)
    if sharded:
        click.echo(f"wrote {output}/ ({report.kept} records in {report.details['shards']} parts, "
                   f"{report.input - report.kept} rejected in rejected.jsonl; manifest.json, report.json)", err=True)
    else:
        click.echo(f"wrote {output} ({report.kept} records) and {rejects_path} "
                   f"({report.input - report.kept} rejected)", err=True)
    if strict and report.kept != report.input:
        sys.exit(1)
