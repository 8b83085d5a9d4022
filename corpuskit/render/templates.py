"""Chat templates: one Jinja source used both to render training data and, exported into the
tokenizer directory as `chat_template.jinja`, by `tokenizer.apply_chat_template` at inference.

Every assistant answer sits inside `{% generation %}...{% endgeneration %}` (the transformers
convention behind `return_assistant_tokens_mask`); the renderer records the character span of
each such block, and those spans are exactly what the model is trained on.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2
import jinja2.ext
import yaml

from corpuskit.errors import CorpusError
from corpuskit.render.sandbox import BoundedSandbox, TemplateLimitExceeded, TemplateLimits

# name -> (what it is, tokens the tokenizer must know as special tokens)
BUILTINS: dict[str, tuple[str, tuple[str, ...]]] = {
    "llama2-chinese": ("Llama2-Chinese / Atom: <s>Human: ...\\n</s><s>Assistant: ...\\n</s>", ()),
    "colossal": ("Colossal-LLaMA-2: system prompt, Human: <s>...</s>Assistant: <s>...</s>", ()),
    "llama2": ("Meta LLaMA-2 chat: <s>[INST] <<SYS>>...<</SYS>> ... [/INST] ... </s>", ()),
    "chatglm2": ("ChatGLM2 rounds: [Round 1]\\n\\n问：...\\n\\n答：...</s>", ()),
    "chatml": ("ChatML: <|im_start|>role\\n...<|im_end|>\\n (adds two special tokens)",
               ("<|im_start|>", "<|im_end|>")),
}


class TemplateError(CorpusError):
    """A template cannot render this conversation (the message says why)."""


class TemplateLimitError(TemplateError):
    """Rendering this conversation went over a bound on output size, loops or time (see sandbox.py)."""


@dataclass
class ChatTemplate:
    name: str
    source: str
    special_tokens: tuple[str, ...] = ()
    description: str = ""
    _compiled: jinja2.Template | None = field(default=None, repr=False)

    def __getstate__(self):  # compiled Jinja code does not pickle; worker processes recompile
        return {**self.__dict__, "_compiled": None}

    def compiled(self) -> jinja2.Template:
        if self._compiled is None:
            self._compiled = compile_template(self.source)
        return self._compiled

    def render(self, messages: list[dict], special_tokens: dict[str, str], add_generation_prompt: bool = False,
               limits: TemplateLimits | None = None) -> tuple[str, list[tuple[int, int]]]:
        """The rendered text and the (start, end) character span of every generation block.

        Bounded by `limits` (TemplateLimitError); any other failure of the template, whatever
        Python exception it is (a template is code), is a TemplateError."""
        tpl = self.compiled()
        limits = limits or TemplateLimits()
        out = _Output(limits.max_output)
        spans: list[tuple[int, int]] = []
        try:
            with tpl.environment.track(out, spans), tpl.environment.bounded(limits):
                for piece in tpl.generate(messages=messages, add_generation_prompt=add_generation_prompt,
                                          **special_tokens):
                    out.add(piece)
        except TemplateLimitExceeded as e:
            raise TemplateLimitError(str(e)) from None
        except jinja2.TemplateError as e:
            raise TemplateError(str(e)) from e
        except Exception as e:  # TypeError, ZeroDivisionError, MemoryError, ...
            raise TemplateError(f"{type(e).__name__}: {e}") from None
        return "".join(out.pieces), spans


class _Output:
    """The rendered pieces so far and their length (which generation blocks need), bounded."""

    def __init__(self, limit: int):
        self.pieces: list[str] = []
        self.length, self.limit = 0, limit

    def add(self, piece: str) -> None:
        self.length += len(piece)
        if self.length > self.limit:
            raise TemplateLimitExceeded(f"the rendered text is longer than {self.limit} characters")
        self.pieces.append(piece)


class _GenerationTracker(jinja2.ext.Extension):
    """`{% generation %}` as in transformers: records where each block lands in the output."""

    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        environment.extend(track=self.track)
        self._out: _Output | None = None
        self._spans: list[tuple[int, int]] | None = None

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation"), [], [], body).set_lineno(lineno)

    def _generation(self, caller):
        text = caller()
        if self._spans is not None:
            start = self._out.length
            self._spans.append((start, start + len(text)))
        return text

    @contextmanager
    def track(self, out: "_Output", spans):
        self._out, self._spans = out, spans
        try:
            yield
        finally:
            self._out = self._spans = None


def _raise_exception(message):
    raise jinja2.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def compile_template(source: str) -> jinja2.Template:
    """Compile with the same sandbox settings transformers uses, so rendering is identical, plus
    the resource bounds of sandbox.BoundedSandbox."""
    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True,
                         extensions=[_GenerationTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    try:
        return env.compile_bounded(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"template syntax error at line {e.lineno}: {e.message}") from e
    except RecursionError:
        raise TemplateError("template is nested too deeply to compile") from None


def builtin_source(name: str) -> str:
    return resources.files("corpuskit").joinpath("templates", f"{name}.jinja").read_text(encoding="utf-8")


def load_template(name_or_path: str) -> ChatTemplate:
    """A built-in by name, or a user file: `.jinja` (the template) or `.yaml` (chat_template + special_tokens)."""
    if name_or_path in BUILTINS:
        desc, tokens = BUILTINS[name_or_path]
        return ChatTemplate(name_or_path, builtin_source(name_or_path), tokens, desc)
    path = Path(name_or_path)
    if not path.is_file():
        raise TemplateError(f"unknown template {name_or_path!r}: not a built-in "
                            f"({', '.join(BUILTINS)}) and no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise TemplateError(f"{path}: invalid YAML: {e}") from e
        if not isinstance(spec, dict) or not isinstance(spec.get("chat_template"), str):
            raise TemplateError(f"{path}: expected a mapping with a `chat_template` string "
                                "(and optional `name`, `special_tokens`, `description`)")
        tokens = spec.get("special_tokens") or []
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise TemplateError(f"{path}: `special_tokens` must be a list of strings")
        tpl = ChatTemplate(str(spec.get("name") or path.stem), spec["chat_template"], tuple(tokens),
                           str(spec.get("description") or ""))
    else:
        tpl = ChatTemplate(path.stem, text, (), f"from {path}")
    check_has_generation(tpl)
    tpl.compiled()  # syntax errors surface now, naming the file
    return tpl


def check_has_generation(tpl: ChatTemplate) -> None:
    if "generation" not in tpl.source or "endgeneration" not in tpl.source:
        raise TemplateError(f"template {tpl.name!r} has no {{% generation %}} block around assistant answers, "
                            "so it cannot say which tokens to train on")
