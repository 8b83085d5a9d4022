"""The one base class of every expected failure, importable without torch, so the CLI can turn
each into a one-line `Error: ...` (exit 1) even when the [train] extra is missing."""

from __future__ import annotations

import json
from pathlib import Path


class TrainError(Exception):
    pass


def read_json(path: str | Path, what: str, error: type[TrainError] = TrainError):
    """A JSON file the user pointed us at; a syntax error names the file and line."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise error(f"{path}:{e.lineno}: {what} is not valid JSON ({e.msg})") from e
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read {what} ({e})") from e
