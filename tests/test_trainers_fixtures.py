"""Helpers shared by the trainers tests: packed-data folders in the render/pack contract format.

Built from the real ShareGPT sample, tokenized with the real LLaMA-2 tokenizer in the LLaMA-2
chat layout (`<s>[INST] question [/INST] answer </s>`, only answers trained), and greedily packed
into rows; each input group becomes a manifest group. Until `corpuskit render`/`pack` are used
end to end (test_trainers_e2e.py), this is the stand-in that writes exactly their output format.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parent.parent
TINY_CONFIG = ROOT / "trainers" / "configs" / "tiny_llama.json"
IGNORE = -100


def sharegpt_pairs(limit: int, every_turn: bool = False) -> list[tuple[str, str, str]]:
    """(question, answer, origin) from human->gpt turns of the real ShareGPT sample (first turn only
    unless every_turn)."""
    records = json.loads((DATA / "sharegpt_sample.json").read_text(encoding="utf-8"))
    out = []
    for rec in records:
        turns = rec.get("conversations", [])
        for i in range(len(turns) - 1 if every_turn else min(1, len(turns) - 1)):
            if turns[i]["from"] == "human" and turns[i + 1]["from"] == "gpt":
                out.append((turns[i]["value"], turns[i + 1]["value"], f"sharegpt_sample.json:{rec['id']}:{i}"))
            if len(out) == limit:
                return out
    return out


def render_samples(tokenizer, pairs, max_len: int) -> list[dict]:
    samples = []
    for question, answer, origin in pairs:
        prompt = [tokenizer.bos_token_id] + tokenizer.encode(f"[INST] {question} [/INST]", add_special_tokens=False)
        reply = tokenizer.encode(f" {answer}", add_special_tokens=False) + [tokenizer.eos_token_id]
        prompt = prompt[: max_len // 2]
        reply = reply[: max_len - len(prompt)]
        samples.append({"input_ids": prompt + reply, "labels": [IGNORE] * len(prompt) + reply,
                        "origin": origin, "category": "chat"})
    return samples


def tokenizer_block(tokenizer, tokenizer_dir: Path) -> dict:
    return {"path": str(tokenizer_dir), "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
            "sha256": hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()}


def write_packed_dir(pdir: Path, tokenizer_dir: Path, groups: dict[str, list[dict]], seq_len: int,
                     mode: str = "sft") -> Path:
    """Greedy-pack each group's samples into rows of <= seq_len and save them with a manifest."""
    from datasets import Dataset, Features, Sequence, Value
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    cols = {k: [] for k in ("input_ids", "labels", "position_ids", "seq_lens", "origins", "categories")}
    manifest_groups = []

    def flush(row):
        if row:
            cols["input_ids"].append([t for s in row for t in s["input_ids"]])
            cols["labels"].append([t for s in row for t in s["labels"]])
            cols["position_ids"].append([p for s in row for p in range(len(s["input_ids"]))])
            cols["seq_lens"].append([len(s["input_ids"]) for s in row])
            cols["origins"].append([s["origin"] for s in row])
            cols["categories"].append([s["category"] for s in row])

    for name, samples in groups.items():
        start = len(cols["input_ids"])
        row, used = [], 0
        for s in samples:
            if used + len(s["input_ids"]) > seq_len:
                flush(row)
                row, used = [], 0
            row.append(s)
            used += len(s["input_ids"])
        flush(row)
        manifest_groups.append({"name": name, "start": start, "end": len(cols["input_ids"]), "samples": len(samples),
                                "tokens": sum(len(s["input_ids"]) for s in samples)})
    ints = Sequence(Value("int32"))
    features = Features({"input_ids": ints, "labels": ints, "position_ids": ints, "seq_lens": ints,
                         "origins": Sequence(Value("string")), "categories": Sequence(Value("string"))})
    Dataset.from_dict(cols, features=features).save_to_disk(str(pdir))
    tokens = sum(len(r) for r in cols["input_ids"])
    trained = sum(1 for r in cols["labels"] for t in r if t != IGNORE)
    tok = tokenizer_block(tokenizer, Path(tokenizer_dir))
    render = {"format": "corpuskit.render/1", "mode": mode, "template": "llama2", "max_length": seq_len,
              "truncation": "right", "tokenizer": tok, "records": sum(len(g) for g in groups.values()),
              "tokens": tokens, "trained_tokens": trained}
    manifest = {"format": "corpuskit.pack/1", "seq_len": seq_len, "strategy": "greedy", "seed": 0, "tokenizer": tok,
                "sequences": len(cols["input_ids"]), "samples": render["records"], "tokens": tokens,
                "trained_tokens": trained, "fill_ratio": tokens / (seq_len * len(cols["input_ids"])),
                "groups": manifest_groups, "render": render}
    (pdir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (pdir / "report.json").write_text(json.dumps({"command": "test fixture"}), encoding="utf-8")
    return pdir


@pytest.fixture(scope="session")
def sft_samples(llama2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    return render_samples(tokenizer, sharegpt_pairs(24), max_len=96)


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory, llama2_tokenizer_dir, sft_samples):
    """Two buckets of real ShareGPT samples, packed into rows of 256 tokens."""
    pdir = tmp_path_factory.mktemp("packed") / "pdir"
    return write_packed_dir(pdir, llama2_tokenizer_dir, {"bucket-00000.jsonl": sft_samples[:12],
                                                         "bucket-00001.jsonl": sft_samples[12:]}, seq_len=256)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved random tiny LLaMA (the shipped config), as a base for LoRA / prefix tuning / merging."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    raw = json.loads(TINY_CONFIG.read_text())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**raw))
    out = tmp_path_factory.mktemp("tiny-llama") / "model"
    model.save_pretrained(out)
    return out
