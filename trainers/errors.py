"""The one base class of every expected failure, importable without torch, so the CLI can turn
each into a one-line `Error: ...` (exit 1) even when the [train] extra is missing."""


class TrainError(Exception):
    pass
