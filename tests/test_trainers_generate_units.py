"""`trainers generate` prompt format, without a model: what it feeds and how it reads back equals training.

For every built-in chat template and real ShareGPT conversations (Chinese and English, one and two
turns), the generation prompt's tokens must be exactly the tokens that precede the last answer in
the sample `corpuskit render` trains on, and the trained answer tokens, read back as if generated,
must give the answer text and stop at the token that closes an answer.
"""

from __future__ import annotations

import json

import pytest

from corpuskit.records import SFT, Origin, Record
from corpuskit.render.export import export_template
from corpuskit.render.templates import BUILTINS, load_template
from corpuskit.render.tokenize import IGNORE, RenderOptions, Renderer
from corpuskit.render.tokenizer_dir import TokenizerDir
from trainers.generate import Prompt, PromptFormat


def conversations(data_dir) -> list[list[dict]]:
    records = json.loads((data_dir / "sharegpt_sample.json").read_text(encoding="utf-8"))
    role = {"human": "user", "gpt": "assistant"}
    picked = {"UNeC3Bc_0": 4, "idMLILF_14": 4, "wNBG8Gp_80": 2}  # record id -> turns (Chinese, English, code)
    out = []
    for rec in records:
        if rec["id"] in picked:
            turns = rec["conversations"][:picked[rec["id"]]]
            out.append([{"role": role[t["from"]], "content": t["value"]} for t in turns])
    assert len(out) == 3
    return out


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_prompt_is_the_training_prefix_and_the_answer_reads_back(name, llama2_tokenizer_dir, data_dir, tmp_path):
    template = load_template(name)
    export_template(template, llama2_tokenizer_dir, tmp_path / "tok")
    tok = TokenizerDir.load(tmp_path / "tok")
    fmt = PromptFormat(tok, template)
    renderer = Renderer(tok, template, RenderOptions(max_length=100_000))
    closing = "<|im_end|>" if name == "chatml" else tok.eos_token
    assert fmt.stop_ids == sorted({tok.token_id(closing), tok.token_id(tok.eos_token)})
    checked = 0
    for conv in conversations(data_dir):
        for end in range(2, len(conv) + 1, 2):  # every answer, with the turns before it
            messages = conv[:end]
            sample = renderer.render_one(Record(SFT, Origin("t", 1), messages=messages))
            prompt = fmt.encode(Prompt(Origin("t", 1), messages=messages[:-1]))
            ids = sample.ids.tolist()
            assert ids[:len(prompt)] == prompt, (name, end)
            labels = sample.labels[len(prompt):].tolist()
            n = labels.index(IGNORE) if IGNORE in labels else len(labels)
            assert n > 0 and all(lab == IGNORE for lab in labels[n:])  # the answer: all trained, then template text
            answer = ids[len(prompt):len(prompt) + n]
            reply, finish, used = fmt.reply(prompt, answer + [tok.token_id(tok.eos_token)] * 3)
            assert (reply, finish, used) == (messages[-1]["content"], "stop", answer), (name, end)
            checked += 1
    assert checked == 5
    cut, finish, _ = fmt.reply(prompt, answer[:5])
    assert finish == "length" and messages[-1]["content"].startswith(cut.strip()[:3])
