"""Small helpers shared by the click commands: error reporting, progress bars, common options."""

from __future__ import annotations

import codecs
import functools
import math
import os
import sys
from typing import Callable, Iterable, TypeVar

import click
from tqdm import tqdm

from corpuskit.errors import CorpusError
from corpuskit.ingest import DEFAULT_MAX_RECORD_BYTES, FORMATS

T = TypeVar("T")


class UsageProblem(click.ClickException):
    """A clear one-line error (file and line when known), exit status 1, never a traceback."""


def handle_errors(fn: Callable) -> Callable:
    """Turn known failures into `Error: path:line: message` instead of a traceback: every library
    error (corpuskit.errors.CorpusError: inputs, outputs, engines, templates, tokenizer folders,
    packing) is caught here, once."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CorpusError as e:
            raise UsageProblem(str(e)) from e
        except UnicodeDecodeError as e:
            raise UsageProblem(f"cannot decode input: {e}") from e
        except BrokenPipeError:  # `corpuskit validate ... | head`: stop quietly
            sys.stdout = open(os.devnull, "w")
            sys.exit(1)
        except OSError as e:  # an output folder that cannot be created, a disk that is full, ...
            where = f"{e.filename}: " if e.filename else ""
            raise UsageProblem(f"{where}{e.strerror or e}") from e
        except RecursionError as e:  # every reader bounds nesting; this is the last line of defence
            raise UsageProblem(f"input nested too deeply to process ({e})") from None
        except KeyboardInterrupt:
            click.echo("interrupted; no output was written", err=True)
            sys.exit(130)

    return wrapper


def progress(iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "rec") -> Iterable[T]:
    """A tqdm bar on stderr; silent when stderr is not a terminal (CI, pipes)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=None, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def warn(message: str) -> None:
    click.echo(message, err=True)


inputs_argument = click.argument("inputs", nargs=-1, required=True, type=click.Path())


def _known_encoding(ctx, param, value: str) -> str:
    """Reject a misspelt --encoding up front instead of failing mid-read with a LookupError."""
    try:
        codecs.lookup(value)
    except LookupError:
        raise click.BadParameter(f"unknown encoding {value!r} (e.g. utf-8, gbk, gb18030, utf-16)") from None
    return value


encoding_option = click.option("--encoding", default="utf-8", show_default=True, callback=_known_encoding,
                               help="Input text encoding (e.g. gbk); anything undecodable is an error naming file and line.")
from_option = click.option("--from", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
                           help="Input record format; auto detects it per record.")
MAX_WORKERS = 256  # more processes than this is a typo (each one holds a tokenizer or an index)
MAX_SEED = 2**32 - 1  # numpy's and SentencePiece's seeds are 32-bit unsigned
MAX_SEQ_LEN = 1 << 20  # tokens in one sample or packed row; beyond this no model trains on it


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (nan passes every range comparison)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


workers_option = click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
                              help="Processes to use; results never depend on this.")
seed_option = click.option("--seed", type=click.IntRange(0, MAX_SEED), default=42, show_default=True,
                           help=f"Random seed (0 to {MAX_SEED}).")


class ByteSize(click.ParamType):
    """A size in bytes: 1000, 64K, 16M, 1G (K/M/G are powers of 1024; KiB/MiB/GiB too)."""

    name = "bytes"
    UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

    def __init__(self, low: int = 1, high: int = 1 << 30):
        self.low, self.high = low, high

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int):
            n = value
        else:
            text = str(value).strip().lower().removesuffix("ib").removesuffix("b")
            unit = text[-1:] if text[-1:] in self.UNITS else ""
            number = text[:-1] if unit else text
            if not number.isdigit():
                self.fail(f"{value!r} is not a size (e.g. 1000, 64K, 16M, 1G)", param, ctx)
            n = int(number) * self.UNITS[unit]
        if not self.low <= n <= self.high:
            self.fail(f"{value} is not between {self.low} and {self.high} bytes", param, ctx)
        return n


max_record_option = click.option(
    "--max-record-bytes", type=ByteSize(), default=DEFAULT_MAX_RECORD_BYTES, metavar="SIZE",
    show_default="16M",
    help="Largest record accepted (a line, a JSON array element, a CSV row; K/M/G suffixes); a larger one "
         "is read past without being held and rejected as record_too_large.")


SPLIT_DEFAULT = "64M, or less to give each worker about 4 ranges, >= 1M"


def engine_options(fn: Callable | None = None, *, split_default: str = SPLIT_DEFAULT) -> Callable:
    """--engine / --ray-address / --split-size: where the work runs; output bytes never depend on it.
    Use as `@engine_options`, or `@engine_options(split_default=...)` where a command sizes splits its own way."""
    if fn is None:
        return lambda f: engine_options(f, split_default=split_default)
    fn = click.option("--split-size", "split_bytes", type=ByteSize(1, 1 << 40), default=None, metavar="SIZE",
                      help="Read .jsonl/.txt files in byte ranges of about this size, in parallel (line numbers "
                           f"stay exact)  [default: {split_default}]")(fn)
    fn = click.option("--ray-address", default=None, metavar="auto|HOST:PORT",
                      help="With --engine ray: join this Ray cluster (default: start a local Ray for this command).")(fn)
    return click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                        help="local: processes on this machine (--workers); ray: Ray tasks on a cluster "
                             "(pip install 'corpuskit[ray]').")(fn)


def shard_options(fn: Callable) -> Callable:
    """--shards N / --shard-size SIZE: the output is a folder of numbered parts plus manifest.json."""
    fn = click.option("--shard-size", "shard_bytes", type=ByteSize(1, 1 << 40), default=None, metavar="SIZE",
                      help="Write the output as a folder of parts of about SIZE bytes each (e.g. 256M), "
                           "with manifest.json.")(fn)
    return click.option("--shards", type=click.IntRange(1, 99999), default=None,
                        help="Write the output as a folder of N parts of equal record counts (fewer if there "
                             "are fewer records), with manifest.json.")(fn)
