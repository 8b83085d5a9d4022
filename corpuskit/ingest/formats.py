"""Converters from the formats users actually have to the canonical records.

Each converter takes one parsed input value and returns a `Record`, or a `Rejected` with a
reason code. Nothing is guessed: unknown roles, turns out of order and empty turns are rejected.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from corpuskit.records import PIECE, PRETRAIN, ROLES, SFT, Origin, Record, Rejected

# Role names seen in the wild, mapped to canonical roles.
ROLE_MAP = {
    "system": "system",
    "human": "user", "user": "user",
    "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "assistant": "assistant",
}

FORMATS = ("auto", "canonical", "sharegpt", "colossal", "alpaca", "llama2-chinese", "peoples-daily", "text",
           "hh", "ultrafeedback", "preference-flat")


# Zero-width and bidi formatting characters, soft hyphen, BOM, word joiners, variation selectors:
# a turn made only of these is empty (clean's normalisation strips them; see clean/normalize.py).
INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufe00-\ufe0f]")


# the first visible character ends the search: no copy of the text (a 1 KB record: 6 -> 0.3 µs)
_VISIBLE = re.compile(r"[^\s\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufe00-\ufe0f]")


def is_blank(text: str) -> bool:
    """Nothing visible: only whitespace and invisible characters."""
    return _VISIBLE.search(text) is None


class Reject(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def check_messages(messages: Any) -> None:
    """Raise `Reject` unless messages are: optional system, then user/assistant alternating,
    ending with assistant, every content a non-empty string. Shared by convert and validate."""
    if not isinstance(messages, list):
        raise Reject("wrong_type", f"'messages' must be a list, got {type(messages).__name__}")
    if not messages:
        raise Reject("empty_conversation", "conversation has no turns")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise Reject("wrong_type", f"turn {i} must be an object, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise Reject("unknown_role", f"turn {i} has unknown role {role!r} (expected system, user or assistant)")
        if not isinstance(content, str):
            raise Reject("wrong_type", f"turn {i} ({role}) content must be a string, got {type(content).__name__}")
        extra = set(m) - {"role", "content"}
        if extra:
            raise Reject("wrong_type", f"turn {i} has unexpected keys {sorted(extra)}")
    start = 1 if messages[0]["role"] == "system" else 0
    for i, m in enumerate(messages[start:], start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if m["role"] == "system":
            raise Reject("system_not_first", f"turn {i} is a system turn; only the first turn may be system")
        if m["role"] != expected:
            raise Reject("non_alternating", f"turn {i} is {m['role']}, expected {expected} "
                                            "(turns must alternate user/assistant, starting with user)")
    if len(messages) == start:
        raise Reject("empty_conversation", "conversation has a system turn but no user/assistant turns")
    if messages[-1]["role"] != "assistant":
        raise Reject("ends_with_user", "last turn is user; a conversation must end with an assistant turn")
    for i, m in enumerate(messages):
        if is_blank(m["content"]):
            what = "empty content" if not m["content"].strip() else "only invisible characters (e.g. U+200B)"
            raise Reject(f"empty_{m['role']}", f"turn {i} ({m['role']}) has {what}")


def _meta(value: dict) -> tuple[str | None, str | None]:
    cat, rid = value.get("category"), value.get("id")
    if cat is not None and not isinstance(cat, str):
        raise Reject("wrong_type", f"'category' must be a string, got {type(cat).__name__}")
    if rid is not None and (not isinstance(rid, (str, int)) or isinstance(rid, bool)):
        raise Reject("wrong_type", f"'id' must be a string, got {type(rid).__name__}")
    return cat, (str(rid) if rid is not None else None)


def _map_turns(turns: Any, role_key: str, content_key: str, fmt: str) -> list[dict]:
    if not isinstance(turns, list):
        raise Reject("wrong_type", f"{fmt}: turns must be a list, got {type(turns).__name__}")
    out = []
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise Reject("wrong_type", f"{fmt}: turn {i} must be an object")
        who = t.get(role_key)
        role = ROLE_MAP.get(who.lower() if isinstance(who, str) else who)
        if role is None:
            raise Reject("unknown_role", f"{fmt}: turn {i} has unknown role {who!r}")
        content = t.get(content_key)
        if not isinstance(content, str):
            raise Reject("wrong_type", f"{fmt}: turn {i} '{content_key}' must be a string")
        out.append({"role": role, "content": content})
    return out


REPAIRS = ("leading-assistant", "trailing-user")


def apply_repairs(messages: list[dict], repairs: frozenset) -> tuple[list[dict], tuple[str, ...]]:
    """Opt-in, reported fixes for two shapes common in real dumps (ShareGPT splits long chats, so
    a continuation starts with the assistant; a log may end on an unanswered user turn).
    Returns the messages and the names of the repairs that changed them."""
    done = []
    if "leading-assistant" in repairs and messages:
        start = 1 if messages[0].get("role") == "system" else 0
        end = start
        while end < len(messages) and messages[end].get("role") == "assistant":
            end += 1
        if end > start:
            messages = messages[:start] + messages[end:]
            done.append("leading-assistant")
    if "trailing-user" in repairs and messages and messages[-1].get("role") == "user":
        messages = messages[:-1]
        done.append("trailing-user")
    return messages, tuple(done)


# Keys of the canonical record forms: an input key of that name cannot travel as an extra key.
_CANONICAL_KEYS = {"messages", "text", "source", "target", "piece", "category", "id"}


def _sft(value: dict, messages: list[dict], origin: Origin, repairs: frozenset = frozenset(),
         consumed: tuple[str, ...] = ()) -> Record:
    """An SFT record from converted turns; the input's other keys (url, lang, model ...) travel
    along as extra keys, like a canonical record's."""
    done: tuple[str, ...] = ()
    if repairs:
        messages, done = apply_repairs(messages, repairs)
    check_messages(messages)
    cat, rid = _meta(value)
    extra = {k: v for k, v in value.items() if k not in _CANONICAL_KEYS and k not in consumed}
    return Record(SFT, origin, messages=messages, category=cat, id=rid, extra=extra, repairs=done)


# One of these decides what a record is; two at once is ambiguous. (`source` alone is not one:
# {"text", "source": "news"} is a text record with a provenance field.)
_KIND_KEYS = ("messages", "piece", "text", "target")


def from_canonical(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    if "chosen" in value or "rejected" in value:  # a preference record: its `messages` is the prompt
        from corpuskit.ingest.preference import from_canonical_preference
        return from_canonical_preference(value, origin)
    present = [k for k in _KIND_KEYS if k in value]
    if len(present) > 1:
        raise Reject("mixed_kinds", f"record has keys of more than one record kind or form: {present}")
    cat, rid = _meta(value)
    known = {"category", "id"}
    if "messages" in value:
        messages, done = value["messages"], ()
        if repairs and isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
            messages, done = apply_repairs(messages, repairs)
        check_messages(messages)
        extra = {k: v for k, v in value.items() if k not in known | {"messages"}}
        return Record(SFT, origin, messages=messages, category=cat, id=rid, extra=extra, repairs=done)
    if "piece" in value:
        p = value["piece"]
        if not isinstance(p, str) or not p:
            raise Reject("wrong_type", "'piece' must be a non-empty string")
        return Record(PIECE, origin, piece=p, extra={k: v for k, v in value.items() if k != "piece"})
    if "text" in value:
        t = value["text"]
        if not isinstance(t, str):
            raise Reject("wrong_type", f"'text' must be a string, got {type(t).__name__}")
        if is_blank(t):
            raise Reject("empty_text", "'text' is empty" if not t.strip() else "'text' has only invisible characters")
        extra = {k: v for k, v in value.items() if k not in known | {"text"}}
        return Record(PRETRAIN, origin, text=t, category=cat, id=rid, extra=extra)
    if "source" in value or "target" in value:
        s, t = value.get("source"), value.get("target")
        if not isinstance(s, str) or not isinstance(t, str):
            raise Reject("wrong_type", "'source' and 'target' must both be strings")
        if is_blank(t):
            raise Reject("empty_text", "'target' is empty (nothing to train on)")
        extra = {k: v for k, v in value.items() if k not in known | {"source", "target"}}
        return Record(PRETRAIN, origin, source=s, target=t, category=cat, id=rid, extra=extra)
    raise Reject("unknown_format", f"no 'text', 'source'/'target', 'messages' or 'piece' (keys: {sorted(value)})")


def from_sharegpt(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    if "conversations" not in value:
        raise Reject("unknown_format", "sharegpt: no 'conversations'")
    return _sft(value, _map_turns(value["conversations"], "from", "value", "sharegpt"), origin, repairs,
                ("conversations",))


def from_colossal(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    if "messages" not in value:
        raise Reject("unknown_format", "colossal: no 'messages'")
    return _sft(value, _map_turns(value["messages"], "from", "content", "colossal"), origin, repairs)


# How an Alpaca record's instruction and input become the user turn. newline is what
# Chinese-LLaMA-Alpaca-2 and LLaMA-Factory build; stanford keeps the original Alpaca section headers.
# (with an input, without one)
ALPACA_LAYOUTS = {
    "newline": ("{instruction}\n{input}", "{instruction}"),
    "blank-line": ("{instruction}\n\n{input}", "{instruction}"),
    "input-first": ("{input}\n{instruction}", "{instruction}"),
    "stanford": ("### Instruction:\n{instruction}\n\n### Input:\n{input}", "### Instruction:\n{instruction}"),
}


def from_alpaca(value: dict, origin: Origin, repairs: frozenset = frozenset(), layout: str = "newline") -> Record:
    ins, inp, out = value.get("instruction"), value.get("input", ""), value.get("output")
    if not isinstance(ins, str) or not isinstance(out, str) or not isinstance(inp, (str, type(None))):
        raise Reject("wrong_type", "alpaca: 'instruction' and 'output' must be strings ('input' optional)")
    messages = []
    system = value.get("system")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    for pair in value.get("history") or []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise Reject("wrong_type", "alpaca: 'history' must be a list of [user, assistant] string pairs")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    user = ALPACA_LAYOUTS[layout][0 if inp else 1].format(instruction=ins, input=inp)
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": out}]
    return _sft(value, messages, origin, repairs, ("instruction", "input", "output", "system", "history"))


_L2C_TURN = re.compile(r"<s>\s*(Human|Assistant|System)\s*[:：]\s?(.*?)\n?</s>", re.S)
_L2C_HINT = re.compile(r"^\s*<s>\s*(Human|System)\s*[:：]")


def is_llama2_chinese(value: Any) -> bool:
    """A `{"text": "<s>Human: ..."}` record (Llama2-Chinese/Atom CSV row): a conversation in a text field."""
    return isinstance(value, dict) and isinstance(value.get("text"), str) and bool(_L2C_HINT.match(value["text"]))


def from_llama2_chinese(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    text = value.get("text")
    if not isinstance(text, str):
        raise Reject("wrong_type", "llama2-chinese: 'text' must be a string")
    messages, pos = [], 0
    for m in _L2C_TURN.finditer(text):
        if text[pos:m.start()].strip():
            raise Reject("malformed_turns", f"llama2-chinese: unexpected text {text[pos:m.start()][:40]!r} between turns")
        messages.append({"role": {"Human": "user", "Assistant": "assistant", "System": "system"}[m.group(1)],
                         "content": m.group(2)})
        pos = m.end()
    if text[pos:].strip():
        raise Reject("malformed_turns", f"llama2-chinese: text after the last </s>: {text[pos:][:40]!r}")
    return _sft(value, messages, origin, repairs)


def _strip_pos_tag(token: str) -> str:
    token = token.lstrip("[")
    if "]" in token and "/" not in token.rsplit("]", 1)[1]:
        token = token.rsplit("]", 1)[0]  # [中央/n 人民/n]nt -> closing bracket with compound tag
    return token.rsplit("/", 1)[0] if "/" in token else token


def from_peoples_daily(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    """People's Daily 1998 corpus lines (`word/tag  word/tag`) as plain pretrain text."""
    text = value.get("text")
    if not isinstance(text, str):
        raise Reject("wrong_type", "peoples-daily: 'text' must be a string")
    words = [_strip_pos_tag(t) for t in text.split()]
    out = ""
    for w in words:
        if out and out[-1].isascii() and out[-1].isalnum() and w[:1].isascii() and w[:1].isalnum():
            out += " "
        out += w
    return from_canonical({**value, "text": out}, origin)


_PREFERENCE_KEYS = frozenset({"chosen", "rejected", "question", "pos_resp"})  # a key every preference shape has


def detect(value: dict) -> Callable[[dict, Origin], Record]:
    if not _PREFERENCE_KEYS.isdisjoint(value):
        from corpuskit.ingest.preference import detect_preference

        preference = detect_preference(value)
        if preference is not None:
            return preference
    if "conversations" in value:
        return from_sharegpt
    if "messages" in value:
        msgs = value["messages"]
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) and "from" in msgs[0] and "role" not in msgs[0]:
            return from_colossal
        return from_canonical
    if "instruction" in value and "output" in value:
        return from_alpaca
    if is_llama2_chinese(value):
        return from_llama2_chinese
    return from_canonical


CONVERTERS: dict[str, Callable[[dict, Origin], Record]] = {
    "canonical": from_canonical, "text": from_canonical, "sharegpt": from_sharegpt,
    "colossal": from_colossal, "alpaca": from_alpaca, "llama2-chinese": from_llama2_chinese,
    "peoples-daily": from_peoples_daily,
}


def _register_preference() -> None:
    from corpuskit.ingest.preference import CONVERTERS as PREFERENCE_CONVERTERS

    CONVERTERS.update(PREFERENCE_CONVERTERS)


_register_preference()


def convert_value(value: Any, origin: Origin, fmt: str = "auto", to: str | None = None,
                  repairs: frozenset = frozenset(), alpaca_layout: str = "newline") -> Record | Rejected:
    try:
        if not isinstance(value, dict):
            raise Reject("not_an_object", f"record must be a JSON object, got {type(value).__name__}")
        fn = detect(value) if fmt == "auto" else CONVERTERS[fmt]
        rec = fn(value, origin, repairs, alpaca_layout) if fn is from_alpaca else fn(value, origin, repairs)
        if to is not None and rec.kind != to:
            raise Reject("wrong_kind", f"record is {rec.kind}, expected {to}")
        return rec
    except Reject as r:
        return Rejected(r.reason, origin, r.message, raw=value)
