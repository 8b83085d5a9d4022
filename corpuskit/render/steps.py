"""render's step: records -> token rows (template, tokenize, label mask) on the engine's workers.

The tokenizer and the compiled template are loaded once per worker process and kept for its later
tasks (keyed by tokenizer folder + fingerprint, template and options), not rebuilt per task."""

from __future__ import annotations

import os
from dataclasses import astuple, dataclass

from corpuskit.ingest.steps import ParseStep
from corpuskit.records import Rejected
from corpuskit.render.templates import ChatTemplate
from corpuskit.render.tokenize import RenderOptions, Renderer
from corpuskit.render.tokenizer_dir import TokenizerDir, worker_cached
from corpuskit.step import Step, StepOutput, register_step

_TOKENIZERS: dict = {}  # per process: (folder, fingerprint) -> TokenizerDir
_RENDERERS: dict = {}  # per process: (folder, fingerprint, template, options) -> Renderer


def cached_tokenizer(path: str, fingerprint: str, tok: TokenizerDir | None = None) -> TokenizerDir:
    """The TokenizerDir of `path` in this process (`tok`: one the caller loaded, kept for its tasks)."""
    return worker_cached(_TOKENIZERS, (os.path.realpath(path), fingerprint),
                         lambda: tok if tok is not None else TokenizerDir.load(path), replace=tok is not None)


@register_step("render")
@dataclass(frozen=True)
class RenderStep(Step):
    """Records -> tokenize.Row (preference.PairRow for the pair modes) kept, or a reject with its
    reason (template refused, too long, ...)."""

    tokenizer: str
    fingerprint: str
    template: ChatTemplate | None
    opts: RenderOptions  # or preference.PairOptions

    def renderer(self) -> Renderer:
        tpl = self.template
        key = (os.path.realpath(self.tokenizer), self.fingerprint, tpl and (tpl.name, tpl.source, tpl.special_tokens),
               astuple(self.opts))
        return worker_cached(_RENDERERS, key, self._new_renderer)

    def _new_renderer(self):
        tok = cached_tokenizer(self.tokenizer, self.fingerprint)
        if not isinstance(self.opts, RenderOptions):
            from corpuskit.render.preference import PairRenderer  # it imports the pipeline, which imports us

            return PairRenderer(tok, self.template, self.opts)
        return Renderer(tok, self.template, self.opts)

    def process(self, batch) -> StepOutput:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the workers are the parallelism
        out = StepOutput()
        for r in self.renderer().process(batch):
            (out.rejected if isinstance(r, Rejected) else out.kept).append(r)
        return out


@dataclass(frozen=True)
class RenderSteps:
    """Picklable recipe for a task's steps (engine.tasks.RecordTask.build_steps)."""

    fmt: str
    to: str | None  # the record kind parsing converts to (None: as read)
    render: RenderStep

    def __call__(self) -> list[Step]:
        return [ParseStep(self.fmt, self.to), self.render]
