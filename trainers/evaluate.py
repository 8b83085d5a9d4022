"""`trainers eval`: held-out loss and perplexity on the trained tokens only, overall and per category/bucket.

Reads `corpuskit pack` output (each packed row is split back into its samples) or `corpuskit
render` output (one sample per row). A token counts when its label is not -100, exactly the
tokens training takes its loss on; each sample is scored on its own, so nothing is attended
across samples (and a prefix-tuned model sees its prefix before every sample, as in training).
Samples are batched by length under a token budget; sums are kept in float64, so the numbers do
not depend on the batching beyond float rounding. report.json has the totals and a block per
category and per group (bucket file); report.md shows them as tables. Compare runs by their
`loss` on the same data.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

from trainers.cli import clear_errors, require_train_extra
from trainers.errors import TrainError
from trainers.generate import model_options, pick_device_dtype

IGNORE = -100


class EvalError(TrainError):
    pass


@dataclass
class Tally:
    samples: int = 0
    tokens: int = 0
    nll: float = 0.0
    correct: int = 0

    def add(self, tokens: int, nll: float, correct: int) -> None:
        self.samples += 1
        self.tokens += tokens
        self.nll += nll
        self.correct += correct

    def to_json(self) -> dict:
        loss = self.nll / self.tokens if self.tokens else None
        return {"samples": self.samples, "tokens": self.tokens,
                "loss": round(loss, 6) if loss is not None else None,
                "perplexity": round(math.exp(min(loss, 700)), 4) if loss is not None else None,
                "token_accuracy": round(self.correct / self.tokens, 6) if self.tokens else None}


@dataclass
class Scores:
    total: Tally = field(default_factory=Tally)
    by_category: dict[str, Tally] = field(default_factory=dict)
    by_group: dict[str, Tally] = field(default_factory=dict)

    def add(self, category: str, group: str, tokens: int, nll: float, correct: int) -> None:
        for tally in (self.total, self.by_category.setdefault(category, Tally()),
                      self.by_group.setdefault(group, Tally())):
            tally.add(tokens, nll, correct)

    def to_json(self) -> dict:
        return {**self.total.to_json(),
                "by_category": {k: v.to_json() for k, v in sorted(self.by_category.items())},
                "by_group": {k: v.to_json() for k, v in self.by_group.items()}}


def samples_of(rows) -> list[tuple[int, int, int, str, str, str]]:
    """(row, start, length, category, group, origin) of every sample, from the Arrow columns (no token lists)."""
    import pyarrow.compute as pc

    table = rows.table.data
    if "seq_lens" in table.column_names:  # pack output
        lengths, categories = table.column("seq_lens").to_pylist(), table.column("categories").to_pylist()
        origins = table.column("origins").to_pylist()
    else:  # render output: one sample per row
        lengths = [[n] for n in pc.list_value_length(table.column("input_ids")).to_pylist()]
        categories = [[c] for c in table.column("category").to_pylist()]
        origins = [[o] for o in table.column("origin").to_pylist()]
    out = []
    for (start, end), group in zip(rows.groups, rows.group_names):
        for r in range(start, end):
            at = 0
            for n, cat, origin in zip(lengths[r], categories[r], origins[r]):
                out.append((r, at, n, cat or "(none)", group, origin))
                at += n
    return out


def batches(samples: list, max_tokens: int) -> list[list[int]]:
    """Indices of samples, longest first, in batches whose padded size stays under max_tokens."""
    order = sorted(range(len(samples)), key=lambda i: (-samples[i][2], i))
    out, current = [], []
    for i in order:
        width = samples[current[0]][2] if current else samples[i][2]
        if current and width * (len(current) + 1) > max_tokens:
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


def score(lm, rows, pad_id: int, max_tokens: int, progress=lambda it: it) -> tuple[Scores, list[str]]:
    """Scores of every sample; returns them and the origins of samples with no trained token to score."""
    import torch

    from corpuskit.pack.packer import Column

    samples = samples_of(rows)
    scores = Scores()
    untrained: list[str] = []
    ids_col, labels_col = Column.of(rows.table.data, "input_ids"), Column.of(rows.table.data, "labels")
    for batch in progress(batches(samples, max_tokens)):
        ids, labels = [], []
        for i in batch:
            r, at, n = samples[i][:3]
            ids.append(ids_col.row(r)[at:at + n].tolist())
            labels.append(labels_col.row(r)[at:at + n].tolist())
        width = max(len(x) for x in ids)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=lm.device)
        input_ids = torch.tensor([x + [pad_id] * (width - len(x)) for x in ids], device=lm.device)
        target = torch.tensor([y[1:] + [IGNORE] * (width - len(y)) for y in labels], device=lm.device)
        logits = lm.logits(input_ids, mask)[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE,
                                                reduction="none").double()
        trained = target.ne(IGNORE)
        correct = (logits.argmax(-1).eq(target) & trained).sum(-1).tolist()
        for k, i in enumerate(batch):
            category, group, origin = samples[i][3:]
            n = int(trained[k].sum())
            if n == 0:
                untrained.append(origin)
                continue
            scores.add(category, group, n, float(nll[k].sum()), int(correct[k]))
    return scores, untrained


def markdown(report: dict) -> str:
    d = report["details"]
    lines = [f"# trainers eval report", "", f"- data: {d['data']}", f"- model: {d['model']}"
             + (f" + adapter {d['adapter']}" if d.get("adapter") else "") + f" ({d['kind']})",
             f"- samples scored: {report['counts']['kept']} of {report['counts']['input']}"
             + (f" ({report['counts']['rejected']})" if report["counts"]["rejected"] else ""),
             f"- trained tokens: {d['tokens']}", f"- loss: {d['loss']}, perplexity: {d['perplexity']}, "
             f"token accuracy: {d['token_accuracy']}", ""]
    for title, key in (("By category", "by_category"), ("By group (bucket)", "by_group")):
        lines += [f"## {title}", "", "| name | samples | tokens | loss | perplexity | token accuracy |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name, t in d[key].items():
            lines.append(f"| {name.replace('|', '/')} | {t['samples']} | {t['tokens']} | {t['loss']} | "
                         f"{t['perplexity']} | {t['token_accuracy']} |")
        lines.append("")
    lines += ["## Timings (s)", ""] + [f"- {k}: {v}" for k, v in report["timings"].items()]
    return "\n".join(lines) + "\n"


def evaluate(data: str, model: str, adapter: str | None, tokenizer: str | None, output: str, device: str = "cpu",
             dtype: str = "float32", max_tokens: int = 8192, echo=print) -> dict:
    from transformers import AutoTokenizer

    from corpuskit.outputs import atomic_dir, atomic_file, write_json
    from corpuskit.records import Origin, Rejected
    from corpuskit.report import StageReport
    from trainers import checks, inference, rendered
    from trainers.generate import default_tokenizer

    t0 = time.perf_counter()
    report = StageReport("trainers eval", inputs=[data])
    rows = rendered.open_rows(data, allow_unpacked=True)
    tokenizer = tokenizer or default_tokenizer(model, adapter)
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a corrupt file
        raise EvalError(f"--tokenizer {tokenizer}: cannot load a tokenizer ({' '.join(str(e).split())})") from e
    torch_device, torch_dtype = pick_device_dtype(device, dtype)
    lm = inference.load(model, adapter, dtype=torch_dtype, device=torch_device)
    stats = checks.data_stats(rows.table)
    pre = checks.Preflight(data, tokenizer)
    pre.check_tokenizer(rows.manifest, tok)
    pre.check_data(stats, lm.embedding_rows)
    limit = getattr(lm.model.config, "max_position_embeddings", None)
    longest = max(s[2] for s in samples_of(rows)) if len(rows) else 0
    pre.require(limit is None or longest + lm.virtual_tokens <= limit,
                f"the longest sample has {longest} tokens (+{lm.virtual_tokens} virtual) > the model's "
                f"max_position_embeddings {limit}")
    pre.raise_if_any()
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    scores, untrained = score(lm, rows, pad_id, max_tokens)
    report.keep(scores.total.samples)
    for where in untrained:
        path, _, line = where.rpartition(":")
        report.reject(Rejected("no_trained_tokens", Origin(path, int(line) if line.isdigit() else 0),
                               "no trained token after the first, nothing to score"))
    report.details.update({"data": str(data), "model": str(model), "adapter": str(adapter) if adapter else None,
                           "kind": lm.kind, "tokenizer": str(tokenizer), **scores.to_json()})
    report.time("eval", time.perf_counter() - t0)
    as_json = report.to_json()
    with atomic_dir(output) as tmp:
        write_json(Path(tmp) / "report.json", as_json)
        with atomic_file(Path(tmp) / "report.md") as fh:
            fh.write(markdown(as_json))
    echo(f"eval: {scores.total.samples} samples, {scores.total.tokens} trained tokens: loss "
         f"{as_json['details']['loss']}, perplexity {as_json['details']['perplexity']} ({lm.kind} model); "
         f"report in {Path(output) / 'report.json'}")
    return as_json


@click.command("eval")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Held-out `corpuskit pack` or `corpuskit render` output (rendered with the model's tokenizer).")
@model_options
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder for report.json and report.md.")
@click.option("--max-batch-tokens", default=8192, show_default=True, type=click.IntRange(1),
              help="Padded tokens per forward pass (samples are batched longest first).")
@clear_errors
def eval_cmd(data, model, adapter, tokenizer, device, dtype, output, max_batch_tokens):
    """Held-out loss and perplexity on trained tokens (labels != -100), per category and bucket.

    \b
    Examples:
      trainers eval --data packed-dev/ --model run/model -o eval-run/
      trainers eval --data rendered-dev/ --model llama2-7b/ --adapter run-lora/model -o eval-lora/
    """
    require_train_extra()
    evaluate(data, model, adapter, tokenizer, output, device, dtype, max_batch_tokens,
             echo=lambda m: click.echo(m, err=True))
