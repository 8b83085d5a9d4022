"""Line numbers across input splits: a split's reader numbers lines from 1, and the runner adds the
line counts of the earlier splits of the same file, which it sees first because results come in
order. So no extra pass over the data is needed, and every error names the file's own line."""

from __future__ import annotations

from corpuskit.engine.splits import Split


class LineNumbers:
    def __init__(self) -> None:
        self._offset: dict[str, int] = {}

    def offset(self, split: Split, n_lines: int) -> int:
        """Lines in the earlier splits of `split`'s file; call once per split, in split order."""
        off = 0 if split.index == 0 else self._offset[split.path]
        self._offset[split.path] = off + n_lines
        return off
