"""The one base class of the errors library code raises for a problem the user can fix (a bad input
file, an output that cannot be written, an engine that cannot start, a template or tokenizer folder
that does not fit): the CLI catches it once (`cli_util.handle_errors`) and prints its message as one
line, `Error: ...`, exit status 1. A leaf module, so every package can import it."""

from __future__ import annotations


class CorpusError(Exception):
    """A one-line, user-fixable problem; the message names the file (and line) when there is one."""
