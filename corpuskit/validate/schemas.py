"""The shipped JSON Schemas (schemas/*.schema.json) and one fast checker per record kind.

Valid records, the common case, only run fastjsonschema's generated code. Only a record that
fails is re-checked with jsonschema's `iter_errors` + `best_match`, which is slower but names the
JSON path and the rule, so the message is worth reading. The rules JSON Schema cannot express
(turn order, final assistant turn) are checked in code by `check_messages`, the same function
`convert` uses, so the two commands never disagree about a conversation.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Callable

import fastjsonschema

from corpuskit.ingest import Reject, check_messages, is_llama2_chinese
from corpuskit.ingest.formats import from_llama2_chinese, is_blank
from corpuskit.records import KINDS, PIECE, PREFERENCE, PRETRAIN, SFT, Origin

SCHEMA_NAMES = KINDS  # pretrain, sft, piece, preference


@functools.cache
def load_schema(kind: str) -> dict:
    """The JSON Schema document for `kind` as shipped in corpuskit/schemas/."""
    if kind not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {kind!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    text = (resources.files("corpuskit") / "schemas" / f"{kind}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def kind_of(value: Any) -> str:
    """The schema `--schema auto` applies: chosen by the record's shape (a Llama2-Chinese
    `{"text": "<s>Human: ..."}` row is a conversation, as `convert` reads it)."""
    if isinstance(value, dict):
        if "chosen" in value or "rejected" in value:
            return PREFERENCE
        if "messages" in value:
            return SFT
        if "piece" in value:
            return PIECE
        if is_llama2_chinese(value):
            return SFT
    return "pretrain"


class KindChecker:
    """Checks one record against one kind's schema plus its code rules; returns an error message or None."""

    def __init__(self, kind: str):
        self.kind = kind
        self.schema = load_schema(kind)
        self._fast: Callable[[Any], Any] = fastjsonschema.compile(self.schema)
        self._precise = None  # jsonschema validator, built on the first invalid record

    def __call__(self, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"record must be a JSON object, got {_json_type(value)}"
        if self.kind == SFT and "messages" not in value and is_llama2_chinese(value):
            return _check_llama2_chinese(value)
        try:
            self._fast(value)
        except fastjsonschema.JsonSchemaValueException as fast_error:
            return self._explain(value, fast_error)
        if self.kind == SFT:
            try:
                check_messages(value["messages"])
            except Reject as r:
                return f"$.messages: {r.message} [{r.reason}]"
        if self.kind == PREFERENCE:
            from corpuskit.ingest.preference import check_preference
            try:
                check_preference(value["messages"], value["chosen"], value["rejected"])
            except Reject as r:
                return f"$: {r.message} [{r.reason}]"
        if self.kind == PRETRAIN:
            key = "text" if "text" in value else "target"
            if isinstance(value.get(key), str) and is_blank(value[key]):
                return f"$.{key}: has only invisible characters (e.g. U+200B) [empty_text]"
        return None

    def _explain(self, value: Any, fast_error: Exception) -> str:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match

        if self._precise is None:
            self._precise = Draft202012Validator(self.schema)
        error = best_match(self._precise.iter_errors(value))
        if error is None:  # the two implementations disagree; say so rather than hide it
            return f"{self.kind} schema: {fast_error}"
        return f"{error.json_path}: {_describe(error)}"


def _check_llama2_chinese(value: dict) -> str | None:
    """A Llama2-Chinese/Atom row is an SFT conversation in its `text`: parse the turns as
    `convert` would and apply the same turn rules."""
    try:
        from_llama2_chinese(value, _NO_ORIGIN)
    except Reject as r:
        return f"$.text (Llama2-Chinese turns): {r.message} [{r.reason}]"
    return None


_NO_ORIGIN = Origin("", 0)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "integer", float: "number"}.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(error) -> str:
    """A one-line message without dumping the whole record (jsonschema's default repeats it)."""
    kw, rule, inst = error.validator, error.validator_value, error.instance
    if kw == "type":
        return f"must be of type {rule}, got {_json_type(inst)}"
    if kw == "pattern" and rule == r"\S":
        return "must contain a non-whitespace character"
    if kw == "minLength":
        return f"must be at least {rule} character(s) long"
    if kw == "minItems":
        return f"must have at least {rule} items, has {len(inst)}"
    if kw == "enum":
        return f"{_short(inst)} is not one of {', '.join(map(json.dumps, rule))}"
    if kw == "not" and isinstance(inst, dict):
        branches = rule.get("anyOf", [rule])
        keys = [k for b in branches for k in b.get("required", ()) if k in inst]
        return f"must not have {', '.join(map(repr, keys))} (keys of another record kind or form)"
    if kw in ("anyOf", "oneOf"):
        forms = " | ".join(b.get("description", _short(b)) for b in rule)
        keys = sorted(inst) if isinstance(inst, dict) else _json_type(inst)
        return f"must be one of: {forms} (has keys {keys})"
    message = error.message
    return message if len(message) <= 200 else message[:200] + "..."
