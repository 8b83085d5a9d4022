"""What `bucket` and `stats` read: another corpuskit stage's output folder as input (e.g.
`corpuskit bucket clean-out/`), and the options that say which category a record is in.

A stage folder also holds rejected.jsonl and report.json, which are not corpus records; this picks
the stage's data files instead of every file in the folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from corpuskit.ingest import InputError, expand_inputs
from corpuskit.outputs import MARKER

# data files written by stages whose folders users feed onward
STAGE_DATA = {"clean": ["clean.jsonl"], "bucket": ["bucket-*.jsonl"]}


def stage_data_files(folder: Path) -> list[str] | None:
    """The data files of a corpuskit output folder, or None if `folder` is not one."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    try:
        command = json.loads(marker.read_text(encoding="utf-8")).get("command")
    except (OSError, ValueError, AttributeError):
        return None
    patterns = STAGE_DATA.get(command)
    if patterns is None:
        raise InputError(str(folder), f"is the output of `corpuskit {command}`, which holds no corpus records "
                                      f"to read (readable stage folders: {', '.join(sorted(STAGE_DATA))})")
    files = sorted(str(p) for pattern in patterns for p in folder.glob(pattern))
    if not files:
        raise InputError(str(folder), f"`corpuskit {command}` output folder has no {' or '.join(patterns)}")
    return files


def resolve_inputs(inputs) -> list[str]:
    """Like `expand_inputs`, but a corpuskit output folder contributes only its data files."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        data = stage_data_files(p) if p.is_dir() else None
        out.extend(data if data is not None else expand_inputs([item]))
    return out


def category_options(fn):
    """--category-field, --default-category, --category-by-file (shared by bucket and stats)."""
    for option in reversed([
        click.option("--category-field", default="category", show_default=True,
                     help="Top-level record key holding the category."),
        click.option("--default-category", default="default", show_default=True,
                     help="Category of records without one (named in the output; never dropped)."),
        click.option("--category-by-file", is_flag=True,
                     help="Records without a category take their input file's name (news.jsonl -> news)."),
    ]):
        fn = option(fn)
    return fn
