"""`corpuskit train-vocab` and `corpuskit merge-vocab`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from corpuskit.cli_util import (FloatRange, encoding_option, engine_options, from_option, handle_errors,
                                inputs_argument, max_record_option, progress, seed_option, workers_option)
from corpuskit.engine import make_executor
from corpuskit.ingest import expand_inputs
from corpuskit.outputs import atomic_dir, atomic_file, dumps
from corpuskit.overlap import check_paths
from corpuskit.report import StageReport

MAX_VOCAB = 1_000_000  # SentencePiece ids are int32; larger vocabularies are typos
MAX_SENTENCES = 100_000_000  # held in memory for training (~1 kB each at most)


@click.command("train-vocab")
@inputs_argument
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder to write tokenizer.model, tokenizer.vocab and report.json/.md into.")
@click.option("--vocab-size", type=click.IntRange(300, MAX_VOCAB), default=20000, show_default=True,
              help="Pieces in the model, including <unk>, <s>, </s> and the 256 byte pieces.")
@click.option("--model-type", type=click.Choice(["bpe", "unigram"]), default="bpe", show_default=True,
              help="bpe can be merged into LLaMA-2 with merge-vocab; unigram pieces can be too.")
@click.option("--pre-tokenize", type=click.Choice(["none", "jieba"]), default="none", show_default=True,
              help="jieba: segment Chinese first so pieces follow word boundaries.")
@click.option("--character-coverage", type=FloatRange(0.98, 1.0), default=0.9995, show_default=True,
              help="Share of characters the vocabulary must cover; the rarest go to byte fallback.")
@click.option("--normalization", type=click.Choice(["identity", "nmt_nfkc"]), default="identity",
              show_default=True, help="identity matches LLaMA-2 (needed for pieces that match raw text).")
@click.option("--max-sentences", type=click.IntRange(1, MAX_SENTENCES), default=2_000_000, show_default=True,
              help="Lines sampled (seeded reservoir sampling) for training.")
@from_option
@encoding_option
@max_record_option
@workers_option
@seed_option
@engine_options
@handle_errors
def train_vocab_cmd(inputs, outdir, vocab_size, model_type, pre_tokenize, character_coverage, normalization,
                    max_sentences, fmt, encoding, max_record_bytes, workers, seed, engine, ray_address, split_bytes):
    """Train a SentencePiece vocabulary on records or plain text (.txt: one document per line).

    \b
    Example:
      corpuskit train-vocab news.jsonl reviews.txt -o zh-vocab --vocab-size 20000 --pre-tokenize jieba
      corpuskit merge-vocab --base llama2/tokenizer.model --add zh-vocab/tokenizer.model -o merged

    About 1 line in 50 is held back (never trained on) to measure tokens per character and
    coverage. Same inputs, seed and settings give a byte-identical model for any --workers,
    --engine or --split-size (records are read, in byte-range splits of big .jsonl/.txt files, and
    jieba runs, on the engine; sampling and training stay here).
    """
    from corpuskit.vocab import train

    check_paths({"input": inputs}, dirs={"-o": outdir})
    files = expand_inputs(inputs)
    report = StageReport("train-vocab", inputs=files)
    with make_executor(engine, workers, ray_address) as ex:  # reading and jieba run on the engine
        t0 = time.perf_counter()
        texts = train.read_texts(files, ex, fmt, encoding, max_record_bytes, split_bytes)
        sample = train.reservoir_sample(progress(texts, "read"), train.Sample(), max_sentences, seed, report)
        report.time("read_and_sample", time.perf_counter() - t0)
        if not sample.sentences:
            raise click.ClickException(f"no text to train on in {', '.join(files)} ({report.summary()})")
        sentences, delimiter = sample.sentences, None
        if pre_tokenize == "jieba":
            t0 = time.perf_counter()
            sentences, delimiter = train.jieba_segment_all(sample.sentences, ex, progress), train.DELIMITER
            report.time("jieba", time.perf_counter() - t0)
    t0 = time.perf_counter()
    click.echo(f"training a {vocab_size}-piece {model_type} model on {len(sentences)} lines ...", err=True)
    with atomic_dir(outdir, "train-vocab") as tmp:  # SentencePiece's scratch files live inside it too
        try:
            model, vocab = train.train_sentencepiece(sentences, vocab_size, model_type, character_coverage,
                                                     normalization, workers, seed, delimiter, workdir=tmp)
        except train.TrainingFailed as e:
            raise click.ClickException(f"SentencePiece training failed: {e}") from e
        report.time("train", time.perf_counter() - t0)
        report.details.update({
            "vocab_size": vocab_size, "model_type": model_type, "pre_tokenize": pre_tokenize,
            "normalization": normalization, "character_coverage_setting": character_coverage, "seed": seed,
            "lines_seen": sample.lines_seen, "lines_trained": len(sentences),
            "lines_cut_at_1000_chars": sample.long_lines_cut,
            **train.held_back_metrics(model, sample.held_back)})
        (tmp / "tokenizer.model").write_bytes(model)
        (tmp / "tokenizer.vocab").write_text(vocab, encoding="utf-8")
        report.write(tmp)
    d = report.details
    click.echo(report.summary(), err=True)
    click.echo(f"wrote {outdir}/tokenizer.model: held-back tokens/char {d['tokens_per_char']}, "
               f"char coverage {d['char_coverage']}", err=True)


@click.command("merge-vocab")
@click.option("--base", required=True, type=click.Path(dir_okay=False),
              help="Base SentencePiece BPE model, e.g. LLaMA-2's tokenizer.model.")
@click.option("--add", "adds", required=True, multiple=True, type=click.Path(),
              help='SentencePiece .model or {"piece": ...} .jsonl to add (repeatable; order = priority).')
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for tokenizer.model, the HF tokenizer files, added_pieces.jsonl and the reports.")
@click.option("--only", type=click.Choice(["cjk", "all"]), default="cjk", show_default=True,
              help="cjk: add only pieces holding a CJK character (English/code ids stay identical).")
@click.option("--eval", "evals", multiple=True, type=click.Path(),
              help="Extra text/records to measure on: files, folders or a corpuskit stage's output folder "
                   "(repeatable); built-in zh/en/code samples always run.")
@click.option("--pad-to-multiple-of", "pad_multiple", type=click.IntRange(1), default=None, metavar="N",
              help="Append never-produced <unused_k> pieces until the vocabulary size is a multiple of N "
                   "(64 is common for GPU efficiency); ids of every text stay the same.")
@encoding_option
@max_record_option
@handle_errors
def merge_vocab_cmd(base, adds, outdir, only, evals, pad_multiple, encoding, max_record_bytes):
    """Append new pieces to a SentencePiece model (e.g. Chinese to LLaMA-2) without changing how
    it tokenizes anything the base already covered.

    \b
    Example:
      corpuskit merge-vocab --base llama2/tokenizer.model --add zh-vocab/tokenizer.model \\
          --add extra_pieces.jsonl -o llama2-zh --eval news.jsonl

    Base pieces keep ids and scores; new pieces get ids from the base size on and scores below
    every base piece. Skipped pieces are listed in skipped_pieces.jsonl with their reason.
    Loads with AutoTokenizer.from_pretrained(OUTDIR); it has no pad token (set one to batch).
    """
    from corpuskit.vocab import merge
    from corpuskit.vocab.evaluate import BUILTIN_SAMPLES, Evaluator, builtin_lines, file_lines
    from corpuskit.vocab.hf import write_hf_tokenizer

    check_paths({"--base": base, "--add": adds, "--eval": evals}, dirs={"-o": outdir})
    t0 = time.perf_counter()
    base_proto = merge.read_base(base)
    report = StageReport("merge-vocab", inputs=[str(base), *adds])
    added, skipped = merge.plan_merge(base_proto, merge.iter_candidates(adds, encoding, max_record_bytes), only, report)
    merged = merge.apply_merge(base_proto, added)
    padding = merge.pad_to_multiple(merged, pad_multiple) if pad_multiple else []
    report.time("merge", time.perf_counter() - t0)
    evals_files = expand_inputs(evals) if evals else []
    with atomic_dir(outdir, "merge-vocab") as tmp:
        t0 = time.perf_counter()
        (tmp / "tokenizer.model").write_bytes(merged.SerializeToString())
        write_hf_tokenizer(tmp / "tokenizer.model", tmp)
        report.time("write", time.perf_counter() - t0)
        with atomic_file(tmp / "added_pieces.jsonl") as fh:
            for a in added:
                fh.write(dumps(a.to_json()) + "\n")
        with atomic_file(tmp / "skipped_pieces.jsonl") as fh:
            for s in skipped:
                fh.write(dumps({"piece": s.raw if isinstance(s.raw, str) else None, "reason": s.reason,
                                "message": s.message, "from": str(s.origin)}) + "\n")
        t0 = time.perf_counter()
        ev = Evaluator(base, tmp / "tokenizer.model", tmp / "tokenizer.json")
        results = {name: ev.evaluate(builtin_lines(name)) for name in BUILTIN_SAMPLES}
        for path in evals_files:
            lines, rejected = file_lines(path, encoding, max_record_bytes)
            results[path] = {**ev.evaluate(lines), "records_rejected": rejected}
        report.time("eval", time.perf_counter() - t0)
        report.details.update({"base_size": len(base_proto.pieces), "merged_size": len(merged.pieces),
                               "added": len(added), "only": only,
                               **({"pad_to_multiple_of": pad_multiple, "padding_pieces": len(padding)}
                                  if pad_multiple else {}),
                               "skipped_by_reason": dict(sorted(report.rejected.items())),
                               "eval": results})
        report.write(tmp, "merge-report")
        report.write(tmp)  # the shared report name, beside merge-report.*
    click.echo(report.summary(), err=True)
    for name, r in results.items():
        click.echo(f"  {name}: tokens/char {r['tokens_per_char_base']} -> {r['tokens_per_char_merged']}, "
                   f"ids unchanged {r['ids_unchanged']}, slow/fast agree {r['slow_fast_agree']}, "
                   f"round-trip {r['round_trip']}", err=True)
    pad = f", {len(padding)} padding pieces to a multiple of {pad_multiple}" if pad_multiple else ""
    click.echo(f"wrote {outdir}: {len(merged.pieces)} pieces ({len(added)} added{pad})", err=True)


@click.group("tokenizer")
def tokenizer_group():
    """Tokenizer files for other tools."""


@tokenizer_group.command("export")
@click.option("--model", "model", required=True, type=click.Path(dir_okay=False),
              help="A SentencePiece BPE model, e.g. LLaMA-2's tokenizer.model.")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for tokenizer.json, tokenizer_config.json, special_tokens_map.json, tokenizer.model "
                   "and report.json/.md.")
@click.option("--eval", "evals", multiple=True, type=click.Path(),
              help="Extra text/records to check slow/fast agreement on (files or stage folders, repeatable).")
@encoding_option
@handle_errors
def tokenizer_export_cmd(model, outdir, evals, encoding):
    """A Hugging Face tokenizer folder from a bare SentencePiece model, with the same exact
    ids as SentencePiece (the writer merge-vocab uses; transformers' own conversion of a bare
    LLaMA .model drops the dummy prefix and ranks merges differently).

    \b
    Example:
      corpuskit tokenizer export --model llama2/tokenizer.model -o llama2-hf
      python -c "from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('llama2-hf')"

    The built-in zh/en/code samples (and --eval files) are encoded both ways; report.json gives
    the share of lines on which the two agree.
    """
    from corpuskit.vocab import merge
    from corpuskit.vocab.evaluate import BUILTIN_SAMPLES, Evaluator, builtin_lines, file_lines
    from corpuskit.vocab.hf import write_hf_tokenizer

    proto = merge.read_base(model)
    report = StageReport("tokenizer-export", inputs=[str(model)])
    evals_files = expand_inputs(evals) if evals else []
    with atomic_dir(outdir) as tmp:
        t0 = time.perf_counter()
        (tmp / "tokenizer.model").write_bytes(Path(model).read_bytes())
        write_hf_tokenizer(tmp / "tokenizer.model", tmp)
        report.time("write", time.perf_counter() - t0)
        t0 = time.perf_counter()
        ev = Evaluator(tmp / "tokenizer.model", tmp / "tokenizer.model", tmp / "tokenizer.json")
        results = {name: ev.evaluate(builtin_lines(name)) for name in BUILTIN_SAMPLES}
        for path in evals_files:
            lines, rejected = file_lines(path, encoding)
            results[path] = {**ev.evaluate(lines), "records_rejected": rejected}
        report.time("eval", time.perf_counter() - t0)
        report.details.update({"pieces": len(proto.pieces), "eval": {
            name: {k: r[k] for k in ("lines", "tokens_per_char_merged", "slow_fast_agree", "round_trip")}
            for name, r in results.items()}})
        report.write(tmp)
    for name, r in results.items():
        click.echo(f"  {name}: {r['lines']} lines, slow/fast agree {r['slow_fast_agree']}, "
                   f"round-trip {r['round_trip']}", err=True)
    click.echo(f"wrote {outdir}: HF tokenizer for {len(proto.pieces)} pieces", err=True)
