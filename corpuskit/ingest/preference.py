"""Preference records (a prompt, a chosen and a rejected reply) and converters from the formats
preference data comes in.

Canonical form: `{"messages": [...prompt turns, ending with user], "chosen": reply, "rejected": reply}`
where a reply is a string (one assistant turn) or a list of turns that starts and ends with the
assistant (a multi-turn continuation, as HH transcripts that diverge early have). Converters:

- Anthropic HH (`chosen`/`rejected` full transcripts with `\\n\\nHuman:` / `\\n\\nAssistant:` turns):
  the turns both transcripts share, up to the last shared user turn, are the prompt;
- UltraFeedback-binarized (`chosen`/`rejected` message lists holding the whole conversation, plus
  `prompt` and `messages` copies that are dropped) and TRL's conversational form (`prompt` as a
  message list, `chosen`/`rejected` as assistant message lists);
- flat text: `prompt`/`chosen`/`rejected` (zhihu_rlhf), `question`/`response_j`/`response_k`
  (StackExchange-paired, j preferred), `prompt`/`pos_resp`/`neg_resp` (CValues-comparison).

Nothing is guessed: a transcript that does not parse, a prompt that ends with the assistant, an
empty reply or two identical replies are rejected with their reason.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from corpuskit.records import PREFERENCE, Origin, Record

# (prompt key, chosen key, rejected key) of the flat formats, tried in this order
FLAT_KEYS = (("prompt", "chosen", "rejected"), ("question", "response_j", "response_k"),
             ("prompt", "pos_resp", "neg_resp"))
PREFERENCE_FORMATS = ("hh", "ultrafeedback", "preference-flat")
_OTHER_KINDS = ("text", "target", "piece")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ \t]?")


def _reject(reason: str, message: str):
    from corpuskit.ingest.formats import Reject

    return Reject(reason, message)


def _check_turns(turns: Any, what: str) -> None:
    """Shape of every turn: an object with a known role and string content, no other keys."""
    if not isinstance(turns, list):
        raise _reject("wrong_type", f"{what} must be a list of turns, got {type(turns).__name__}")
    for i, m in enumerate(turns):
        if not isinstance(m, dict):
            raise _reject("wrong_type", f"{what} turn {i} must be an object, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant"):
            raise _reject("unknown_role", f"{what} turn {i} has unknown role {role!r} "
                                          "(expected system, user or assistant)")
        if not isinstance(content, str):
            raise _reject("wrong_type", f"{what} turn {i} ({role}) content must be a string, "
                                        f"got {type(content).__name__}")
        extra = set(m) - {"role", "content"}
        if extra:
            raise _reject("wrong_type", f"{what} turn {i} has unexpected keys {sorted(extra)}")


def check_prompt(messages: Any) -> None:
    """Optional system turn, then user/assistant alternating from user, ending with a user turn."""
    _check_turns(messages, "prompt")
    start = 1 if messages and messages[0]["role"] == "system" else 0
    if len(messages) == start:
        raise _reject("empty_prompt", "the prompt has no user turn")
    for i, m in enumerate(messages[start:], start):
        expected = "user" if (i - start) % 2 == 0 else "assistant"
        if m["role"] == "system":
            raise _reject("system_not_first", f"prompt turn {i} is a system turn; only the first turn may be system")
        if m["role"] != expected:
            raise _reject("non_alternating", f"prompt turn {i} is {m['role']}, expected {expected} "
                                             "(turns must alternate user/assistant, starting with user)")
    if messages[-1]["role"] != "user":
        raise _reject("prompt_ends_with_assistant",
                      "the prompt's last turn is assistant; a preference prompt ends with the user turn both "
                      "replies answer")
    for i, m in enumerate(messages):
        if not m["content"].strip():
            raise _reject(f"empty_{m['role']}", f"prompt turn {i} ({m['role']}) has empty content")


def reply_turns(reply: str | list[dict]) -> list[dict]:
    """A reply as turns: a string is one assistant turn."""
    return [{"role": "assistant", "content": reply}] if isinstance(reply, str) else reply


def check_reply(reply: Any, side: str) -> None:
    """A non-empty string, or turns alternating assistant/user that start and end with the assistant."""
    if isinstance(reply, str):
        if not reply.strip():
            raise _reject("empty_reply", f"the {side} reply is empty")
        return
    if not isinstance(reply, list):
        raise _reject("wrong_type", f"'{side}' must be a string or a list of turns, got {type(reply).__name__}")
    if not reply:
        raise _reject("empty_reply", f"the {side} reply has no turns")
    _check_turns(reply, side)
    for i, m in enumerate(reply):
        expected = "assistant" if i % 2 == 0 else "user"
        if m["role"] != expected:
            raise _reject("non_alternating", f"{side} turn {i} is {m['role']}, expected {expected} "
                                             "(a reply starts with the assistant and alternates)")
        if not m["content"].strip():
            raise _reject("empty_reply", f"{side} turn {i} ({m['role']}) has empty content")
    if reply[-1]["role"] != "assistant":
        raise _reject("reply_ends_with_user", f"the {side} reply ends with a user turn")


def _normal(reply: str | list[dict]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"].strip()) for m in reply_turns(reply)]


def check_preference(messages: Any, chosen: Any, rejected: Any) -> None:
    """Every rule a preference record must meet; shared by convert and validate."""
    check_prompt(messages)
    check_reply(chosen, "chosen")
    check_reply(rejected, "rejected")
    if _normal(chosen) == _normal(rejected):
        raise _reject("identical_replies", "chosen and rejected are the same reply: nothing to prefer")


def _meta(value: dict):
    from corpuskit.ingest.formats import _meta as meta

    return meta(value)


def _record(value: dict, origin: Origin, messages, chosen, rejected, consumed: tuple[str, ...]) -> Record:
    present = [k for k in _OTHER_KINDS if k in value]
    if present:
        raise _reject("mixed_kinds", f"preference record also has keys of another record kind: {present}")
    check_preference(messages, chosen, rejected)
    cat, rid = _meta(value)
    extra = {k: v for k, v in value.items() if k not in set(consumed) | {"category", "id"}}
    return Record(PREFERENCE, origin, messages=messages, chosen=chosen, rejected=rejected, category=cat, id=rid,
                  extra=extra)


def from_canonical_preference(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    missing = [k for k in ("messages", "chosen", "rejected") if k not in value]
    if missing:
        raise _reject("missing_field", f"preference record lacks {missing} (needs messages, chosen, rejected)")
    return _record(value, origin, value["messages"], value["chosen"], value["rejected"],
                   ("messages", "chosen", "rejected"))


def split_shared_prompt(a: list[dict], b: list[dict], what: str) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, reply a, reply b): the turns both conversations share, cut back to the last shared
    user turn, are the prompt; the rest of each is its reply."""
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    last_user = max((i for i in range(shared) if a[i].get("role") == "user"), default=None)
    if last_user is None:
        if a and b and a[0].get("role") == "user" and a[0] != b[0]:
            raise _reject("no_shared_prompt", f"{what}: the two conversations start with different user turns")
        raise _reject("no_shared_prompt", f"{what}: the two conversations share no user turn to use as the prompt")
    cut = last_user + 1
    return a[:cut], a[cut:], b[cut:]


def parse_hh(transcript: Any, side: str) -> list[dict]:
    """`\\n\\nHuman: ...\\n\\nAssistant: ...` -> turns; anything else is `malformed_transcript`."""
    if not isinstance(transcript, str):
        raise _reject("wrong_type", f"hh: '{side}' must be a transcript string, got {type(transcript).__name__}")
    marks = list(_HH_TURN.finditer(transcript))
    if not marks or transcript[:marks[0].start()].strip():
        raise _reject("malformed_transcript", f"hh: the {side} transcript does not start with '\\n\\nHuman:'")
    turns = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(transcript)
        role = "user" if m.group(1) == "Human" else "assistant"
        turns.append({"role": role, "content": transcript[m.end():end].strip()})
    for i, t in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if t["role"] != expected:
            raise _reject("malformed_transcript", f"hh: {side} turn {i} is {'Human' if t['role'] == 'user' else 'Assistant'}"
                                                  f", expected {'Human' if expected == 'user' else 'Assistant'} "
                                                  "(turns must alternate)")
    if turns[-1]["role"] != "assistant":
        raise _reject("malformed_transcript", f"hh: the {side} transcript ends with a Human turn (no answer to compare)")
    return turns


def _as_reply(turns: list[dict]) -> str | list[dict]:
    return turns[0]["content"] if len(turns) == 1 and turns[0]["role"] == "assistant" else turns


def from_hh(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    chosen, rejected = parse_hh(value.get("chosen"), "chosen"), parse_hh(value.get("rejected"), "rejected")
    prompt, a, b = split_shared_prompt(chosen, rejected, "hh")
    if not a or not b:
        raise _reject("identical_replies" if chosen == rejected else "empty_reply",
                      "hh: the transcripts are identical" if chosen == rejected
                      else "hh: one transcript is the other's prefix (no reply of its own)")
    return _record(value, origin, prompt, _as_reply(a), _as_reply(b), ("chosen", "rejected"))


def from_ultrafeedback(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    """Replies as message lists: whole conversations (UltraFeedback-binarized) or, with `prompt` a
    message list, the assistant turns only (TRL's conversational preference format)."""
    chosen, rejected, prompt = value.get("chosen"), value.get("rejected"), value.get("prompt")
    _check_turns(chosen, "chosen")
    _check_turns(rejected, "rejected")
    if isinstance(prompt, list):
        return _record(value, origin, prompt, _as_reply(chosen), _as_reply(rejected), ("prompt", "chosen", "rejected"))
    messages, a, b = split_shared_prompt(chosen, rejected, "ultrafeedback")
    if isinstance(prompt, str) and prompt.strip() != next(m["content"] for m in messages if m["role"] == "user").strip():
        raise _reject("prompt_mismatch", "ultrafeedback: 'prompt' is not the first user turn of the conversations")
    if not a or not b:
        raise _reject("identical_replies" if chosen == rejected else "empty_reply",
                      "ultrafeedback: chosen and rejected are the same conversation" if chosen == rejected
                      else "ultrafeedback: one conversation is the other's prefix (no reply of its own)")
    return _record(value, origin, messages, _as_reply(a), _as_reply(b), ("prompt", "chosen", "rejected", "messages"))


def flat_keys(value: dict) -> tuple[str, str, str] | None:
    return next((keys for keys in FLAT_KEYS if all(k in value for k in keys)), None)


def from_flat(value: dict, origin: Origin, repairs: frozenset = frozenset()) -> Record:
    keys = flat_keys(value)
    if keys is None:
        raise _reject("unknown_format", "preference-flat: expected prompt/chosen/rejected, question/response_j/"
                                        "response_k or prompt/pos_resp/neg_resp")
    p, c, r = (value[k] for k in keys)
    for k, v in zip(keys, (p, c, r)):
        if not isinstance(v, str):
            raise _reject("wrong_type", f"preference-flat: '{k}' must be a string, got {type(v).__name__}")
    if not p.strip():
        raise _reject("empty_prompt", f"preference-flat: '{keys[0]}' is empty")
    return _record(value, origin, [{"role": "user", "content": p}], c, r, keys)


def detect_preference(value: dict) -> Callable | None:
    """The preference converter for this record's shape, or None if it is not preference data."""
    if "chosen" in value or "rejected" in value:
        chosen = value.get("chosen")
        if "messages" in value and "prompt" not in value:
            return from_canonical_preference
        if isinstance(chosen, list):
            return from_ultrafeedback
        if isinstance(value.get("prompt"), str):
            return from_flat
        if "messages" not in value and "prompt" not in value and isinstance(chosen, str):
            return from_hh  # the one format whose replies are whole transcripts
        return from_canonical_preference
    if flat_keys(value):
        return from_flat
    return None


CONVERTERS = {"hh": from_hh, "ultrafeedback": from_ultrafeedback, "preference-flat": from_flat}
