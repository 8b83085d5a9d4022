"""Small helpers shared by the click commands: error reporting, progress bars, common options."""

from __future__ import annotations

import codecs
import functools
import os
import sys
from typing import Callable, Iterable, TypeVar

import click
from tqdm import tqdm

from corpuskit.engine.executor import EngineError
from corpuskit.ingest import FORMATS, InputError
from corpuskit.outputs import OutputError

T = TypeVar("T")


class UsageProblem(click.ClickException):
    """A clear one-line error (file and line when known), exit status 1, never a traceback."""


def handle_errors(fn: Callable) -> Callable:
    """Turn known failures into `Error: path:line: message` instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, OutputError, EngineError) as e:
            raise UsageProblem(str(e)) from e
        except UnicodeDecodeError as e:
            raise UsageProblem(f"cannot decode input: {e}") from e
        except BrokenPipeError:  # `corpuskit validate ... | head`: stop quietly
            sys.stdout = open(os.devnull, "w")
            sys.exit(1)
        except OSError as e:  # an output folder that cannot be created, a disk that is full, ...
            where = f"{e.filename}: " if e.filename else ""
            raise UsageProblem(f"{where}{e.strerror or e}") from e
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
workers_option = click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
                              help="Processes to use; results never depend on this.")
def engine_options(fn: Callable) -> Callable:
    """--engine / --ray-address: where the work runs; output bytes never depend on it."""
    fn = click.option("--ray-address", default=None, metavar="auto|HOST:PORT",
                      help="With --engine ray: join this Ray cluster (default: start a local Ray for this command).")(fn)
    return click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                        help="local: processes on this machine (--workers); ray: Ray tasks on a cluster "
                             "(pip install 'corpuskit[ray]').")(fn)


def _parse_size(ctx, param, value):
    if value is None:
        return None
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    v = str(value).strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (v[:-1], v[-1]) if v and v[-1] in units else (v, "")
    try:
        n = int(float(num) * units[unit]) if num else 0
    except ValueError:
        n = 0
    if not 1 <= n <= 1 << 40:
        raise click.BadParameter(f"{value!r}: a size such as 65536, 64K, 64M or 1G")
    return n


split_size_option = click.option("--split-size", "split_bytes", default="64M", show_default=True, callback=_parse_size,
                                 metavar="SIZE", help="Read .jsonl/.txt files in byte ranges of about this size, "
                                                      "in parallel (line numbers stay exact).")
def shard_options(fn: Callable) -> Callable:
    """--shards N / --shard-size SIZE: write the output as numbered parts plus manifest.json."""
    fn = click.option("--shard-size", "shard_bytes", default=None, callback=_parse_size, metavar="SIZE",
                      help="Write the output as parts of about SIZE bytes each (e.g. 256M), with manifest.json.")(fn)
    fn = click.option("--shards", type=click.IntRange(1, 99999), default=None,
                      help="Write the output as exactly N parts of equal record counts, with manifest.json.")(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if kwargs.get("shards") is not None and kwargs.get("shard_bytes") is not None:
            raise click.UsageError("give --shards or --shard-size, not both")
        return fn(*args, **kwargs)
    return wrapper


seed_option = click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
