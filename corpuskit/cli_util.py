"""Small helpers shared by the click commands: error reporting, progress bars, common options."""

from __future__ import annotations

import codecs
import functools
import os
import sys
from typing import Callable, Iterable, TypeVar

import click
from tqdm import tqdm

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
        except (InputError, OutputError) as e:
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
seed_option = click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
