"""`trainers generate`: answer prompts with a trained model, formatted exactly as in training.

Prompts are rendered by corpuskit's own chat templates (the same Jinja source and the same
tokenizer call as `corpuskit render`), ending in the template's generation prompt. The token that
closes an answer in training (the last token of a `{% generation %}` block: `</s>`, or `<|im_end|>`
for chatml) stops generation, and the template's text around an answer is stripped from the reply.
Works for full and merged models and for LoRA and prefix-tuning adapters (see trainers.inference).
Greedy unless --sample; sampling is seeded per batch, so the same inputs, seed and --batch-size
give the same output bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import click

from corpuskit.cli_util import warn
from corpuskit.records import Origin, Rejected
from trainers.cli import clear_errors, require_train_extra
from trainers.errors import TrainError

RAW = "none"  # --template none: continue the text itself (pretrained, not chat, models)
MARK = "\uE000REPLY\uE000"  # private-use marker, to find the template text around an answer


class GenerateError(TrainError):
    pass


@dataclass
class GenOptions:
    max_new_tokens: int = 256
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 42
    batch_size: int = 8


@dataclass
class Prompt:
    origin: Origin
    messages: list[dict] | None = None  # chat prompt, ending with a user turn
    text: str | None = None  # raw text prompt (--template none)
    reference: str | None = None  # the answer the input record had, when it had one
    keep: dict = field(default_factory=dict)  # id / category of the input record


# -- prompts from arguments and files ------------------------------------------------------------

def _prompt_of(value, origin: Origin, chat: bool) -> Prompt | Rejected:
    """A prompt from one input value: {"prompt"}, {"text"} (a .txt line), messages ending with a user
    turn, or any SFT record corpuskit reads (its last answer becomes the reference)."""
    from corpuskit.ingest import Reject, check_messages, convert_value

    if not isinstance(value, dict):
        return Rejected("wrong_type", origin, f"expected a JSON object, got {type(value).__name__}", raw=value)
    keep = {k: value[k] for k in ("id", "category") if k in value}
    text = value.get("prompt", value.get("text"))
    if isinstance(text, str) and "messages" not in value:
        if not text.strip():
            return Rejected("empty_prompt", origin, "the prompt is empty", raw=value)
        if chat:
            return Prompt(origin, messages=[{"role": "user", "content": text}], keep=keep)
        return Prompt(origin, text=text, keep=keep)
    if not chat:
        return Rejected("needs_chat_template", origin, "a conversation needs a chat template (not --template none)",
                        raw=value)
    messages = value.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict) and \
            messages[-1].get("role") == "user":
        try:
            check_messages(messages + [{"role": "assistant", "content": "-"}])
        except Reject as r:
            return Rejected(r.reason, origin, r.message, raw=value)
        return Prompt(origin, messages=messages, keep=keep)
    rec = convert_value(value, origin, "auto", "sft")
    if isinstance(rec, Rejected):
        return rec
    keep.update({k: v for k, v in (("id", rec.id), ("category", rec.category)) if v is not None})
    return Prompt(origin, messages=rec.messages[:-1], reference=rec.messages[-1]["content"], keep=keep)


def read_prompts(args: Iterable[str], files: Iterable[str], chat: bool, encoding: str = "utf-8"
                 ) -> Iterator[Prompt | Rejected]:
    from corpuskit.ingest import read_raw

    for i, text in enumerate(args, 1):
        yield _prompt_of({"prompt": text}, Origin("arg", i), chat)
    for item in read_raw(list(files), encoding):
        if item.error is not None:
            yield Rejected("parse_error", item.origin, item.error, raw=item.value)
        else:
            yield _prompt_of(item.value, item.origin, chat)


# -- the template around prompts and answers ------------------------------------------------------

class PromptFormat:
    """Prompt -> token ids as in training; generated ids -> the reply text and why it ended."""

    def __init__(self, tok, template):
        self.tok, self.template = tok, template
        self.specials = tok.special_tokens_map()
        self.bos_id, self.eos_id = tok.token_id(tok.bos_token), tok.token_id(tok.eos_token)
        self.before, self.after = "", tok.eos_token
        if template is not None:
            text, spans = template.render([{"role": "user", "content": "?"}, {"role": "assistant", "content": MARK}],
                                          self.specials)
            block = text[spans[-1][0]:spans[-1][1]]
            self.before, self.after = block.split(MARK)
        control = set(tok.special_tokens) | {tok.bos_token, tok.eos_token} | set(getattr(template, "special_tokens", ()))
        self.control = sorted(t for t in control if t)
        # the answer's closing token stops generation when it is a control token (never a plain piece
        # such as "#" that a custom template's end marker happens to end with)
        end = tok.tokenizer.encode(self.after, add_special_tokens=False).ids
        closing = end[-1] if end and tok.tokenizer.id_to_token(end[-1]) in self.control else self.eos_id
        self.stop_ids = sorted({closing, self.eos_id})
        self.space_added = template is not None and self._adds_word_start()

    def _adds_word_start(self) -> bool:
        """Does an answer decode with a space it never had? LLaMA's SentencePiece normaliser marks the
        start of every segment after a special token as a word start ("<s>I" -> "<s>", "▁I"), so
        after colossal's "Assistant: <s>" the answer "I ..." decodes as " I ..."."""
        probe = [{"role": "user", "content": "?"}, {"role": "assistant", "content": "probe"}]
        text, _ = self.template.render(probe, self.specials)
        prompt, _ = self.template.render(probe[:1], self.specials, add_generation_prompt=True)
        ids, head = (self.tok.tokenizer.encode(t, add_special_tokens=False).ids for t in (text, prompt))
        if ids[:len(head)] != head:
            return False
        return self._continuation(head, ids[len(head):]).startswith(" " + self.before + "probe")

    def _continuation(self, prompt_ids: list[int], new_ids: list[int]) -> str:
        decode = self.tok.tokenizer.decode
        head = decode(prompt_ids, skip_special_tokens=False)
        full = decode(prompt_ids + new_ids, skip_special_tokens=False)
        return full[len(head):] if full.startswith(head) else decode(new_ids, skip_special_tokens=False)

    def encode(self, p: Prompt) -> list[int]:
        from corpuskit.render.templates import TemplateError

        contents = [m["content"] for m in p.messages] if p.messages is not None else [p.text]
        for t in self.control:
            if any(t in c for c in contents):
                raise _Reject("control_token_in_content", f"the prompt contains the special token {t!r}")
        if p.messages is None:
            text = self.tok.bos_token + p.text
        else:
            try:
                text, _ = self.template.render(p.messages, self.specials, add_generation_prompt=True)
            except TemplateError as e:
                raise _Reject("template_error", f"{self.template.name}: {e}") from None
        return self.tok.tokenizer.encode(text, add_special_tokens=False).ids

    def reply(self, prompt_ids: list[int], new_ids: list[int]) -> tuple[str, str, list[int]]:
        finish = "length"
        for k, t in enumerate(new_ids):
            if t in self.stop_ids:
                new_ids, finish = new_ids[:k + 1], "stop"
                break
        decode = self.tok.tokenizer.decode
        text = self._continuation(prompt_ids, new_ids)
        if self.space_added and text.startswith(" "):
            text = text[1:]
        if self.before and text.startswith(self.before):
            text = text[len(self.before):]
        if finish == "stop":
            stop = decode(new_ids[-1:], skip_special_tokens=False)
            text = text.removesuffix(stop)
            tail = self.after.removesuffix(stop)
            text = text.removesuffix(tail) if tail else text
        return text, finish, new_ids


class _Reject(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


# -- running ------------------------------------------------------------------------------------

def generation_config(opts: GenOptions, fmt: PromptFormat, pad_id: int, max_new_tokens: int):
    """Every decoding value set here, so a model's generation_config.json (LLaMA-2-chat ships
    do_sample=true, temperature 0.6) never turns greedy decoding into sampling."""
    from transformers import GenerationConfig

    sampling = ({"temperature": opts.temperature, "top_p": opts.top_p, "top_k": opts.top_k} if opts.sample
                else {"temperature": 1.0, "top_p": 1.0, "top_k": 50})  # the neutral defaults: no warnings
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=opts.sample, num_beams=1,
                            repetition_penalty=opts.repetition_penalty, eos_token_id=fmt.stop_ids,
                            pad_token_id=pad_id, bos_token_id=fmt.bos_id, return_dict_in_generate=True, **sampling)


def generate_batch(lm, fmt: PromptFormat, prompts: list[list[int]], opts: GenOptions, seed: int,
                   max_positions: int | None = None) -> list[list[int]]:
    """New token ids for each prompt of one left-padded batch."""
    import torch

    pad_id = fmt.tok.token_id(fmt.tok.pad_token)
    pad_id = fmt.eos_id if pad_id is None else pad_id
    width = max(len(p) for p in prompts)
    budget = opts.max_new_tokens
    if max_positions:
        budget = max(0, min(budget, max_positions - lm.virtual_tokens - width))
    if budget == 0:
        return [[] for _ in prompts]
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], dtype=torch.long, device=lm.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long,
                        device=lm.device)
    torch.manual_seed(seed)
    out = lm.generate(ids, mask, generation_config(opts, fmt, pad_id, budget))
    return [row[width:].tolist() for row in out.sequences]


def run_generate(lm, fmt: PromptFormat, items: Iterable[Prompt | Rejected], opts: GenOptions, out, rejects,
                 report, max_positions: int | None, token_ids: bool = False) -> dict:
    """Answer every prompt, writing one JSON line per answer (input order) and per reject."""
    from corpuskit.outputs import dumps

    stats = {"prompt_tokens": 0, "new_tokens": 0, "finish": {"stop": 0, "length": 0}}
    batch: list[tuple[Prompt, list[int]]] = []
    index = 0

    def flush():
        nonlocal index
        if not batch:
            return
        news = generate_batch(lm, fmt, [ids for _, ids in batch], opts, opts.seed + index, max_positions)
        for (p, ids), new in zip(batch, news):
            reply, finish, new = fmt.reply(ids, new)
            rec = {"origin": str(p.origin), **p.keep}
            if p.messages is not None:
                rec["messages"] = p.messages + [{"role": "assistant", "content": reply}]
            else:
                rec["text"] = p.text
            rec.update({"reply": reply, "finish_reason": finish, "prompt_tokens": len(ids), "new_tokens": len(new)})
            if p.reference is not None:
                rec["reference"] = p.reference
            if token_ids:
                rec["token_ids"] = new
            out.write(dumps(rec) + "\n")
            report.keep()
            stats["prompt_tokens"] += len(ids)
            stats["new_tokens"] += len(new)
            stats["finish"][finish] += 1
        index += len(batch)
        batch.clear()

    for item in items:
        if isinstance(item, Prompt):
            try:
                ids = fmt.encode(item)
                if max_positions and len(ids) + lm.virtual_tokens >= max_positions:
                    raise _Reject("too_long", f"{len(ids)} prompt tokens leave no room below the model's "
                                              f"max_position_embeddings {max_positions}")
            except _Reject as r:
                item = Rejected(r.reason, item.origin, r.message)
            else:
                batch.append((item, ids))
                if len(batch) >= opts.batch_size:
                    flush()
                continue
        report.reject(item)
        rejects.append(item)
    flush()
    return stats


def pick_device_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    return device, getattr(torch, dtype)


def default_tokenizer(model: str, adapter: str | None) -> str:
    for d in (adapter, model):
        if d and (Path(d) / "tokenizer.json").is_file():
            return d
    raise GenerateError(f"no tokenizer.json in {adapter or model}; pass --tokenizer (the directory the data was "
                        "rendered with)")


def load_tokenizer_and_template(tokenizer: str, template_name: str | None):
    from corpuskit.render.cli import resolve_template
    from corpuskit.render.templates import TemplateError
    from corpuskit.render.tokenizer_dir import TokenizerDir, TokenizerDirError

    try:
        tok = TokenizerDir.load(tokenizer)
        template = None if template_name == RAW else resolve_template(template_name, tok, "sft")
    except (TemplateError, TokenizerDirError) as e:
        raise GenerateError(str(e)) from e
    return tok, template


def model_options(fn):
    options = [
        click.option("--model", required=True, type=click.Path(exists=True, file_okay=False),
                     help="Model directory: run/model of a full run, a merged model, the base of --adapter (or the "
                          "adapter folder itself, whose recorded base is then used)."),
        click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False),
                     help="model/ folder of a --lora or --prefix-tuning run."),
        click.option("--tokenizer", default=None, type=click.Path(exists=True, file_okay=False),
                     help="Tokenizer directory [default: the adapter's or model's own]."),
        click.option("--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda:N."),
        click.option("--dtype", default="auto", show_default=True,
                     type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
                     help="auto = bfloat16 on a GPU that has it, else float32."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("generate")
@click.argument("prompts", nargs=-1)
@click.option("--input", "-i", "inputs", multiple=True, type=click.Path(exists=True),
              help="Prompts: .txt (one per line), .jsonl/.json of {\"prompt\"} or conversations (messages ending "
                   "with a user turn; any SFT record: its last answer is kept as `reference`). Repeatable.")
@model_options
@click.option("--template", default=None,
              help="Chat template used in training: a built-in, a .jinja/.yaml file, or `none` (continue raw text) "
                   "[default: the tokenizer's chat_template].")
@click.option("-o", "--output", default=None, type=click.Path(dir_okay=False),
              help="Answers as JSON Lines (written atomically) [default: stdout].")
@click.option("--max-new-tokens", default=256, show_default=True, type=click.IntRange(1))
@click.option("--sample", is_flag=True, help="Sample instead of greedy decoding.")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(0), help="0 = off.")
@click.option("--repetition-penalty", default=1.0, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--seed", default=42, show_default=True, type=int, help="Seed for --sample (per batch).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
              help="Prompts per generate() call (left-padded).")
@click.option("--token-ids", is_flag=True, help="Also write the generated token ids.")
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of --input files.")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the report (counts, rejects by reason, tokens, timings) as JSON here.")
@clear_errors
def generate_cmd(prompts, inputs, model, adapter, tokenizer, device, dtype, template, output, max_new_tokens,
                 sample, temperature, top_p, top_k, repetition_penalty, seed, batch_size, token_ids, encoding,
                 report_path):
    """Answer prompts with a trained model, using the chat template it was trained with.

    \b
    Examples:
      trainers generate --model run/model "用一句话介绍长城。"
      trainers generate --model llama2-7b/ --adapter run-lora/model -i questions.txt -o answers.jsonl
      trainers generate --model chat-model/ --adapter run-pt2/model -i dev.jsonl -o answers.jsonl --sample --top-p 0.9
      trainers generate --model run-pretrain/model --template none "1998年1月1日，" --max-new-tokens 64
    """
    if not prompts and not inputs:
        raise click.UsageError("give prompts as arguments or --input FILE")
    require_train_extra()
    from corpuskit.outputs import atomic_file, dumps
    from corpuskit.report import StageReport
    from trainers import inference

    t0 = time.perf_counter()
    report = StageReport("trainers generate", inputs=[*(["(arguments)"] if prompts else []), *inputs])
    opts = GenOptions(max_new_tokens, sample, temperature, top_p, top_k, repetition_penalty, seed, batch_size)
    tok, tpl = load_tokenizer_and_template(tokenizer or default_tokenizer(model, adapter), template)
    fmt = PromptFormat(tok, tpl)
    device, torch_dtype = pick_device_dtype(device, dtype)
    lm = inference.load(model, adapter, dtype=torch_dtype, device=device)
    vocab = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab > lm.embedding_rows:
        raise GenerateError(f"tokenizer {tok.path} has {vocab} pieces but the model has {lm.embedding_rows} embedding "
                            "rows; pass the tokenizer the model was trained with")
    max_positions = getattr(lm.model.config, "max_position_embeddings", None)
    rejects: list[Rejected] = []
    items = read_prompts(prompts, inputs, chat=tpl is not None, encoding=encoding)
    if output:
        with atomic_file(output) as out:
            stats = run_generate(lm, fmt, items, opts, out, rejects, report, max_positions, token_ids)
    else:
        stats = run_generate(lm, fmt, items, opts, click.get_text_stream("stdout"), rejects, report, max_positions,
                             token_ids)
    for r in rejects[:20]:
        warn(f"{r.origin}: {r.message} [{r.reason}]")
    if output and rejects:
        p = Path(output)
        with atomic_file(p.with_name(p.name.removesuffix(".jsonl") + ".rejected.jsonl")) as fh:
            fh.writelines(dumps(r.to_json()) + "\n" for r in rejects)
    seconds = time.perf_counter() - t0
    report.time("generate", seconds)
    report.details.update({"model": model, "adapter": adapter, "kind": lm.kind, "template": tpl.name if tpl else RAW,
                           "decoding": "sample" if sample else "greedy", **stats})
    if report_path:
        from corpuskit.outputs import write_json

        write_json(report_path, report.to_json())
    click.echo(report.summary(), err=True)
    click.echo(f"{lm.kind} model, {'sampling' if sample else 'greedy'}: {stats['new_tokens']} new tokens "
               f"(stop {stats['finish']['stop']}, length {stats['finish']['length']}) in {seconds:.1f} s"
               + (f"; answers in {output}" if output else ""), err=True)
