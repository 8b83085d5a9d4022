"""`trainers generate | eval | init-model` and the inference fixes behind them (issue 13), on real data.

Everything starts from the real ShareGPT sample, converted, rendered (llama2-chinese template) and
packed through the corpuskit CLI, a tiny LLaMA from `trainers init-model`, and adapters from real
`trainers sft` runs. Reference numbers come from PEFT's own forward pass (the training forward)
and from transformers' loss, not from the code under test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from corpuskit.cli import main as corpuskit
from trainers_helpers import TRAINERS, run_trainers
from trainers.cli import main as trainers

pytestmark = pytest.mark.slow
CJK_WORDS = ["猫山王", "榴莲", "狸花猫", "橘猫", "我们", "可以"]
SHORT_QA = ("UNeC3Bc_0", 0)  # 猫山王是什么意思 -> a 120-character answer (real ShareGPT turn)


def ck(*args):
    result = CliRunner().invoke(corpuskit, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def tr(*args, ok=True):
    result = CliRunner().invoke(trainers, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def run_loud(*args) -> subprocess.CompletedProcess:
    """`trainers ARGS` with Python's default warning filters (run_trainers ignores all warnings)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                            "MASTER_ADDR", "MASTER_PORT", "TENSORBOARD_LOGGING_DIR")}
    proc = subprocess.run([TRAINERS, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**env, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def work(tmp_path_factory, data_dir, llama2_tokenizer_dir):
    """tok/ (LLaMA-2 + llama2-chinese template), chats.jsonl, rendered/, packed/, base/ (init-model, seed 0)."""
    w = tmp_path_factory.mktemp("gen")
    ck("template", "export", "llama2-chinese", "--tokenizer", llama2_tokenizer_dir, "-o", w / "tok")
    ck("convert", data_dir / "sharegpt_sample.json", "-o", w / "chats.jsonl", "--to", "sft",
       "--repair", "leading-assistant")
    ck("render", w / "chats.jsonl", "--tokenizer", w / "tok", "-o", w / "rendered", "--max-length", 192)
    ck("pack", w / "rendered", "-o", w / "packed", "--seq-len", 384)
    tr("init-model", "--config", "tiny_llama", "--tokenizer", w / "tok", "-o", w / "base", "--seed", 0)
    return w


@pytest.fixture(scope="module")
def prefix_run(work):
    out = work / "run-prefix"
    proc = run_loud("sft", "--data", work / "packed", "--model", work / "base", "--tokenizer", work / "tok",
                    "-o", out, "--prefix-tuning", "--pre-seq-len", 8, "--max-steps", 2)
    return out / "model", proc


def prompt_ids(tok_dir: Path, question: str) -> list[int]:
    from corpuskit.render.templates import load_template
    from corpuskit.render.tokenizer_dir import TokenizerDir

    tok = TokenizerDir.load(tok_dir)
    text, _ = load_template("llama2-chinese").render([{"role": "user", "content": question}],
                                                    tok.special_tokens_map(), add_generation_prompt=True)
    return tok.tokenizer.encode(text, add_special_tokens=False).ids


def peft_reference(base: Path, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).eval()


# -- section 1: a prefix-tuned model generates with its prefix ------------------------------------

def test_prefix_tuned_generation_uses_the_prefix(work, prefix_run):
    import torch
    from transformers import AutoModelForCausalLM

    from trainers import inference
    from trainers.generate import GenOptions, PromptFormat, generation_config, load_tokenizer_and_template

    adapter, proc = prefix_run
    ref = peft_reference(work / "base", adapter)
    base = AutoModelForCausalLM.from_pretrained(work / "base").eval()
    lm = inference.load(work / "base", adapter)
    assert lm.kind == "prefix-tuning" and lm.virtual_tokens == 8
    ids = torch.tensor([prompt_ids(work / "tok", "猫山王是什么意思")])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).logits  # PEFT's forward: the one training used
        plain = base(input_ids=ids, attention_mask=mask).logits
    assert (want - plain).abs().max() > 0.1  # the prefix matters
    assert torch.allclose(lm.logits(ids, mask), want, atol=1e-5)
    tok, tpl = load_tokenizer_and_template(str(work / "tok"), None)
    fmt = PromptFormat(tok, tpl)
    cfg = generation_config(GenOptions(max_new_tokens=4), fmt, fmt.eos_id, 4)
    cfg.output_logits = True
    first = lm.generate(ids, mask, cfg).logits[0]
    assert torch.allclose(first, want[:, -1], atol=1e-4)  # before the fix: equal to the base model's to 1e-7
    assert (first - plain[:, -1]).abs().max() > 0.1
    # training noise the user cannot act on is gone (PEFT imported DeepSpeed; prefix tuning ran PEFT's forward)
    text = proc.stdout + proc.stderr
    assert "Setting accelerator to CPU" not in text and "FutureWarning" not in text and "trained 2 steps" in text


def test_generate_cli_with_prefix_adapter_follows_the_prefixed_forward_pass(work, prefix_run):
    import torch

    adapter, _ = prefix_run
    (work / "q.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "橘猫是狸花猫吗"}]},
                                             ensure_ascii=False) + "\n", encoding="utf-8")
    out = work / "prefix-answers.jsonl"
    tr("generate", "--model", work / "base", "--adapter", adapter, "猫山王是什么意思", "-i", work / "q.jsonl",
       "-o", out, "--max-new-tokens", 12, "--token-ids", "--batch-size", 2)
    got = jsonl(out)
    assert [g["origin"] for g in got] == ["arg:1", f"{work / 'q.jsonl'}:1"]
    assert got[0]["prompt_tokens"] != got[1]["prompt_tokens"]  # a left-padded batch
    ref = peft_reference(work / "base", adapter)
    for g, q in zip(got, ["猫山王是什么意思", "橘猫是狸花猫吗"]):
        prompt = prompt_ids(work / "tok", q)
        seq = torch.tensor([prompt + g["token_ids"]])
        with torch.no_grad():
            logits = ref(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[0]
        # greedy: every generated token is the argmax of the prefixed forward pass before it
        assert logits[len(prompt) - 1:-1].argmax(-1).tolist() == g["token_ids"]
    plain = work / "plain-answers.jsonl"
    tr("generate", "--model", work / "base", "--tokenizer", work / "tok", "猫山王是什么意思", "-o", plain,
       "--max-new-tokens", 12, "--token-ids")
    assert jsonl(plain)[0]["token_ids"] != got[0]["token_ids"]
    # `--model run/model` of an adapter run: its recorded base model is used
    again = work / "again.jsonl"
    tr("generate", "--model", adapter, "猫山王是什么意思", "-o", again, "--max-new-tokens", 12, "--token-ids")
    assert jsonl(again)[0]["token_ids"] == got[0]["token_ids"]


# -- LoRA with an extended, padded vocabulary: saved once, generates like its merged model ----------

@pytest.fixture(scope="module")
def lora_run(work):
    from transformers import AddedToken, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(work / "tok")
    tok.add_tokens([AddedToken(w, normalized=False) for w in CJK_WORDS])
    tok.save_pretrained(work / "tokx")
    # the SentencePiece model beside the added words, as in HF's slow-tokenizer layout: model/ must carry it
    (work / "tokx" / "tokenizer.model").write_bytes((work / "tok" / "tokenizer.model").read_bytes())
    ck("render", work / "chats.jsonl", "--tokenizer", work / "tokx", "-o", work / "rendered-x", "--max-length", 192)
    ck("pack", work / "rendered-x", "-o", work / "packed-x", "--seq-len", 384)
    out = work / "run-lora"
    run_trainers("sft", "--data", work / "packed-x", "--model", work / "base", "--tokenizer", work / "tokx", "-o", out,
                 "--lora", "--lora-r", 4, "--pad-to-multiple-of", 64, "--max-steps", 3, "--lr", 1e-2)
    run_trainers("merge-lora", "--adapter", out / "model", "--base", work / "base", "-o", work / "merged")
    return out


def test_lora_saves_trained_embeddings_once_and_pads_rows(work, lora_run):
    from safetensors import safe_open

    details = json.loads((lora_run / "report.json").read_text())["details"]
    assert details["embedding_resize"] == {"old_rows": 32000, "new_rows": 32064, "initialised_from_pieces": 6,
                                           "initialised_from_mean": 0, "padding_rows": 58}
    path = lora_run / "model" / "adapter_model.safetensors"
    with safe_open(str(path), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    embedding = {k: s for k, s in shapes.items() if s[0] == 32064}
    assert sorted(embedding) == ["base_model.model.lm_head.weight", "base_model.model.model.embed_tokens.weight"]
    assert not any("original_module" in k or "modules_to_save" in k for k in shapes)
    tensor_bytes = sum(4 * math.prod(s) for s in shapes.values())
    one_matrix = 4 * 32064 * 64
    # PEFT's default saved each embedding three times (6 matrices): 49 MB here; now 2 matrices + LoRA
    assert path.stat().st_size < tensor_bytes + 64_000 and tensor_bytes < 2.1 * one_matrix
    for d in (lora_run / "model", work / "merged"):
        assert (d / "tokenizer.model").read_bytes() == (work / "tokx" / "tokenizer.model").read_bytes()
        assert (d / "tokenizer.json").read_bytes() == (work / "tokx" / "tokenizer.json").read_bytes()


def test_lora_generation_equals_merged_model_and_differs_from_base(work, lora_run):
    import torch
    from transformers import AutoModelForCausalLM

    from trainers import inference

    questions = ["猫山王是什么意思", "橘猫是狸花猫吗", "ok, thank you"]
    runs = {}
    for name, args in {"lora": ["--model", work / "base", "--adapter", lora_run / "model"],
                       "merged": ["--model", work / "merged"]}.items():
        out = work / f"{name}.jsonl"
        tr("generate", *args, *questions, "-o", out, "--max-new-tokens", 16, "--token-ids")
        runs[name] = jsonl(out)
    assert [r["token_ids"] for r in runs["lora"]] == [r["token_ids"] for r in runs["merged"]]
    assert [r["reply"] for r in runs["lora"]] == [r["reply"] for r in runs["merged"]]
    lm = inference.load(work / "base", lora_run / "model")
    assert lm.kind == "lora" and lm.embedding_rows == 32064
    ids = torch.tensor([prompt_ids(work / "tokx", questions[2])])
    assert int(ids.max()) < 32000  # a prompt the base model can read too
    base = AutoModelForCausalLM.from_pretrained(work / "base").eval()
    with torch.no_grad():
        plain = base(input_ids=ids).logits[0, -1]
    assert (lm.logits(ids, torch.ones_like(ids))[0, -1, :32000] - plain).abs().max() > 1e-2


# -- generate after SFT answers in the training format ---------------------------------------------

def test_generate_after_sft_reproduces_a_memorised_answer(work):
    records = [json.loads(line) for line in (work / "chats.jsonl").read_text(encoding="utf-8").splitlines()]
    rec = next(r for r in records if r.get("id") == SHORT_QA[0])
    one = {"messages": rec["messages"][:2], "id": rec["id"]}
    (work / "one.jsonl").write_text(json.dumps(one, ensure_ascii=False) + "\n", encoding="utf-8")
    ck("render", work / "one.jsonl", "--tokenizer", work / "tok", "-o", work / "r-one")
    ck("pack", work / "r-one", "-o", work / "p-one", "--seq-len", 256)
    out = work / "run-one"
    run_trainers("sft", "--data", work / "p-one", "--model", work / "base", "--tokenizer", work / "tok", "-o", out,
                 "--max-steps", 60, "--lr", 1e-2, "--lr-scheduler", "constant", "--logging-steps", 10)
    answers = work / "one-answers.jsonl"
    tr("generate", "--model", out / "model", "-i", work / "one.jsonl", "-o", answers, "--max-new-tokens", 200)
    got, = jsonl(answers)
    assert got["reference"] == rec["messages"][1]["content"]
    assert got["reply"] == got["reference"] and got["finish_reason"] == "stop"
    assert got["messages"] == rec["messages"][:2] and got["id"] == rec["id"]
    assert (out / "model" / "tokenizer.model").is_file()
    result = tr("eval", "--data", work / "p-one", "--model", out / "model", "-o", work / "eval-one")
    assert json.loads((work / "eval-one" / "report.json").read_text())["details"]["loss"] < 0.1, result.output


# -- eval -------------------------------------------------------------------------------------------

def reference_loss(model, rendered_dir: Path) -> tuple[float, int]:
    """Token-weighted mean of transformers' own per-sample loss over a render folder."""
    import torch
    from datasets import load_from_disk

    nll, tokens = 0.0, 0
    for row in load_from_disk(str(rendered_dir)):
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
        n = int((labels[0, 1:] != -100).sum())
        with torch.no_grad():
            nll += float(model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss) * n
        tokens += n
    return nll / tokens, tokens


def test_eval_matches_transformers_loss_on_packed_and_rendered_data(work):
    from transformers import AutoModelForCausalLM

    manifest = json.loads((work / "packed" / "manifest.json").read_text())
    want, tokens = reference_loss(AutoModelForCausalLM.from_pretrained(work / "base").eval(), work / "rendered")
    assert tokens == manifest["trained_tokens"]
    reports = {}
    for name in ("packed", "rendered"):
        result = tr("eval", "--data", work / name, "--model", work / "base", "-o", work / f"eval-{name}",
                    "--max-batch-tokens", 1024)
        reports[name] = json.loads((work / f"eval-{name}" / "report.json").read_text())
        assert "perplexity" in result.output
    for r in reports.values():
        d = r["details"]
        assert d["tokens"] == tokens and d["loss"] == pytest.approx(want, abs=1e-4)
        assert d["perplexity"] == pytest.approx(math.exp(d["loss"]), rel=1e-4)
        assert r["counts"] == {"input": manifest["samples"], "kept": manifest["samples"], "rejected": {}}
        assert sum(c["tokens"] for c in d["by_category"].values()) == tokens
        assert sum(g["tokens"] for g in d["by_group"].values()) == tokens
    assert list(reports["packed"]["details"]["by_group"]) == [g["name"] for g in manifest["groups"]]
    md = (work / "eval-packed" / "report.md").read_text()
    assert "| name | samples | tokens | loss | perplexity | token accuracy |" in md


def test_eval_of_a_prefix_adapter_matches_peft_forward(work, prefix_run):
    import torch
    from datasets import load_from_disk

    adapter, _ = prefix_run
    ref = peft_reference(work / "base", adapter)
    nll, tokens = 0.0, 0
    for row in load_from_disk(str(work / "rendered")):
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
        n = int((labels[0, 1:] != -100).sum())
        with torch.no_grad():
            nll += float(ref(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss) * n
        tokens += n
    tr("eval", "--data", work / "packed", "--model", work / "base", "--adapter", adapter, "-o", work / "eval-prefix")
    d = json.loads((work / "eval-prefix" / "report.json").read_text())["details"]
    assert d["kind"] == "prefix-tuning" and d["tokens"] == tokens
    assert d["loss"] == pytest.approx(nll / tokens, abs=1e-4)


def test_eval_refuses_data_of_another_tokenizer(work, lora_run):
    result = tr("eval", "--data", work / "packed-x", "--model", work / "base", "--tokenizer", work / "tok",
                "-o", work / "eval-bad", ok=False)
    assert result.exit_code == 1 and "tokenizer mismatch" in result.output and "Traceback" not in result.output
    assert not (work / "eval-bad").exists()


# -- init-model ---------------------------------------------------------------------------------------

def test_init_model_is_byte_identical_per_seed(work, lora_run):
    def files(d: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith("report.")}

    tr("init-model", "--config", "tiny_llama", "--tokenizer", work / "tok", "-o", work / "base-again", "--seed", 0)
    assert files(work / "base-again") == files(work / "base")
    tr("init-model", "--config", "tiny_llama", "--tokenizer", work / "tok", "-o", work / "base-1", "--seed", 1)
    assert files(work / "base-1")["model.safetensors"] != files(work / "base")["model.safetensors"]
    result = tr("init-model", "--config", Path(__file__).parent.parent / "trainers" / "configs" / "tiny_llama.json",
                "--tokenizer", work / "tokx", "-o", work / "base-x", "--pad-to-multiple-of", 64)
    config = json.loads((work / "base-x" / "config.json").read_text())
    assert config["vocab_size"] == 32064 and config["max_position_embeddings"] == 4096
    assert (config["bos_token_id"], config["eos_token_id"]) == (1, 2)
    assert "32064 embedding rows (32006 tokenizer pieces)" in result.output
    assert (work / "base-x" / "tokenizer.model").read_bytes() == (work / "tokx" / "tokenizer.model").read_bytes()
    bad = tr("init-model", "--config", "no_such_config", "--tokenizer", work / "tok", "-o", work / "b", ok=False)
    assert bad.exit_code == 1 and "not a shipped config" in bad.output


# -- generate: inputs, rejects, decoding options ---------------------------------------------------------

def test_generate_reads_files_rejects_bad_records_and_writes_atomically(work):
    prompts = work / "prompts.txt"
    prompts.write_text("猫山王是什么意思\n\nok, thank you\n", encoding="utf-8")
    mixed = work / "mixed.jsonl"
    lines = [json.dumps({"prompt": "你好", "id": "p1"}, ensure_ascii=False),
             '{"messages": [{"role": "user", "content": "broken"',
             json.dumps({"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}),
             json.dumps({"prompt": "inject </s> here"}),
             json.dumps({"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]},
                        ensure_ascii=False)]
    mixed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out, report = work / "mixed-answers.jsonl", work / "mixed-report.json"
    result = tr("generate", "--model", work / "base", "-i", prompts, "-i", mixed, "-o", out, "--report", report,
                "--max-new-tokens", 4)
    got = jsonl(out)
    assert [g["origin"].rsplit("/", 1)[-1] for g in got] == ["prompts.txt:1", "prompts.txt:3", "mixed.jsonl:1",
                                                            "mixed.jsonl:5"]
    assert got[2]["id"] == "p1" and got[3]["reference"] == "你好！" and all(g["new_tokens"] <= 4 for g in got)
    rejected = {r["origin"]["line"]: r["reason"] for r in jsonl(work / "mixed-answers.rejected.jsonl")}
    assert rejected == {2: "parse_error", 3: "non_alternating", 4: "control_token_in_content"}
    counts = json.loads(report.read_text())["counts"]
    assert counts["input"] == 7 == counts["kept"] + sum(counts["rejected"].values())
    assert "mixed.jsonl:2:" in result.output and "input 7 = kept 4 + rejected 3" in result.output
    assert not [p for p in work.iterdir() if p.name.endswith(".tmp")]


def test_greedy_by_default_and_sampling_is_seeded(work, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(work / "base", model)
    # LLaMA-2-chat ships do_sample=true in generation_config.json: greedy must stay greedy
    (model / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.6, "top_p": 0.9,
                                                              "bos_token_id": 1, "eos_token_id": 2}))

    def run(name, *extra):
        out = tmp_path / f"{name}.jsonl"
        tr("generate", "--model", model, "猫山王是什么意思", "你好", "-o", out, "--max-new-tokens", 12, *extra)
        return out.read_bytes()

    assert run("g1", "--seed", 1) == run("g2", "--seed", 2)
    s1, s1b = run("s1", "--sample", "--seed", 1), run("s1b", "--sample", "--seed", 1)
    assert s1 == s1b and s1 != run("s2", "--sample", "--seed", 2) and s1 != run("g3")


def test_raw_continuation_template_none(work):
    out = work / "raw.jsonl"
    (work / "raw-in.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    result = tr("generate", "--model", work / "base", "--template", "none", "1998年1月1日，", "-i",
                work / "raw-in.jsonl", "-o", out, "--max-new-tokens", 5)
    got, = jsonl(out)
    assert got["text"] == "1998年1月1日，" and "messages" not in got and got["new_tokens"] == 5
    assert "needs_chat_template" in result.output


def test_generate_usage_errors_are_one_line(work):
    result = tr("generate", "--model", work / "base", ok=False)
    assert result.exit_code == 2 and "give prompts" in result.output
    bad_adapter = work / "not-an-adapter"
    bad_adapter.mkdir(exist_ok=True)
    result = tr("generate", "--model", work / "base", "--adapter", bad_adapter, "--tokenizer", work / "tok", "hi",
                ok=False)
    assert result.exit_code == 1 and "no adapter_config.json" in result.output
    result = tr("generate", "--model", work / "base", "--template", "nope", "hi", ok=False)
    assert result.exit_code == 1 and "unknown template" in result.output


# -- section 4: pretrain straight from render --group-texts -----------------------------------------------

def test_pretrain_accepts_render_group_texts_output(work, data_dir):
    ck("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", work / "news.jsonl")
    ck("render", work / "news.jsonl", "--tokenizer", work / "tok", "--mode", "pretrain", "--group-texts", 128,
       "-o", work / "grouped")
    out = work / "run-grouped"
    run_trainers("pretrain", "--data", work / "grouped", "--model", work / "base", "--tokenizer", work / "tok",
                 "-o", out, "--max-steps", 2, "--batch-size", 2)
    report = json.loads((out / "report.json").read_text())
    rows = json.loads((work / "grouped" / "manifest.json").read_text())["records"]
    assert report["details"]["steps"] == 2 and report["counts"]["kept"] == rows
    unpacked = tr("pretrain", "--data", work / "rendered", "--model", work / "base", "--tokenizer", work / "tok",
                  "-o", work / "run-unpacked", ok=False)
    assert unpacked.exit_code == 1 and "pack it first" in unpacked.output


# -- section 5: noise filters keep what is actionable -------------------------------------------------------

def test_quiet_drops_library_noise_only(tmp_path):
    code = (
        "import socket, warnings\n"
        "from trainers import quiet\n"
        "quiet.install()\n"
        "import deepspeed, torch, torch.distributed as dist\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
        "dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)\n"
        "out = torch.zeros(2)\n"
        "dist.all_gather_into_tensor(out, torch.ones(2))\n"
        "warnings.warn('an actionable FutureWarning', FutureWarning)\n"
        "dist.destroy_process_group()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "Setting accelerator to CPU" not in text and "all_gather_into_tensor" not in text
    assert "an actionable FutureWarning" in text
