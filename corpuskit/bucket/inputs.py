"""Options shared by `bucket` and `stats`: which category a record is in.

(A corpuskit output folder given as input, e.g. `corpuskit bucket clean-out/`, contributes only its
data files: `corpuskit.ingest.expand_inputs` does that for every command.)
"""

from __future__ import annotations

import click


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
