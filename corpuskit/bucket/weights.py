"""Mixture weights from the command line (`zh=2,en=0.5`) or a JSON file (`{"zh": 2, "en": 0.5}`).

Weights are kept as exact fractions so `0.1 * 30` gives exactly 3 records, never 2 or 4 through
float rounding.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction

import click

# a weight multiplies a category's record count (and the planner's memory); larger is a typo
MAX_WEIGHT = 1000


def _to_fraction(name: str, value, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise click.BadParameter(f"{where}: weight for {name!r} must be a number, got {value!r}")
    try:
        w = Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise click.BadParameter(f"{where}: weight for {name!r} is not a number: {value!r}") from None
    if not 0 <= w <= MAX_WEIGHT:
        raise click.BadParameter(f"{where}: weight for {name!r} must be >= 0 and <= {MAX_WEIGHT}, got {value!r}")
    return w


def parse_weights(spec: str | None) -> dict[str, Fraction]:
    """`name=w,name=w` or a path to a JSON object; an empty spec means every weight is 1."""
    if not spec:
        return {}
    if spec.lower().endswith(".json") or os.path.isfile(spec):
        if os.path.exists(spec) and not os.path.isfile(spec):  # a FIFO would block, a device never end
            raise click.BadParameter(f"{spec}: the weights file is not a regular file")
        try:
            with open(spec, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as e:
            raise click.BadParameter(f"{spec}: cannot read weights file: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise click.BadParameter(f"{spec}:{e.lineno}: invalid JSON in weights file: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise click.BadParameter(f"{spec}: weights file is not UTF-8: {e}") from None
        if not isinstance(data, dict) or not data:
            raise click.BadParameter(f"{spec}: weights file must be a non-empty JSON object "
                                     '{"category": weight, ...}')
        return {str(k): _to_fraction(str(k), v, spec) for k, v in data.items()}
    out: dict[str, Fraction] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"expected name=weight[,name=weight...] or a .json file, got {part!r}")
        if name in out:
            raise click.BadParameter(f"category {name!r} is given twice")
        out[name] = _to_fraction(name, value, "--weights")
    return out


def weight_json(w: Fraction) -> int | float:
    """How a weight is shown in the manifest: 2 stays 2, 1/2 becomes 0.5."""
    return int(w) if w.denominator == 1 else float(w)
