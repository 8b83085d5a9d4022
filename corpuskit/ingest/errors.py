"""The error every reader raises for a problem with an input file as a whole (a leaf module, so
path expansion and the readers can share it)."""

from __future__ import annotations

from corpuskit.errors import CorpusError


class InputError(CorpusError):
    """A problem with an input file as a whole: message names the file (and line when known)."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # picklable as raised, so an error in a worker process or a Ray task reads the same
        return type(self), (self.path, self.message, self.line)
