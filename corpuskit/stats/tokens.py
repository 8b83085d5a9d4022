"""Token counting with a local Hugging Face tokenizer directory (never remote code, never network)."""

from __future__ import annotations

import os
from pathlib import Path

import click


def set_tokenizer_threads(workers: int) -> None:
    """The Rust batch encoder runs on a rayon pool sized from the environment when it first starts:
    `--workers` threads, and none but the caller's with the default of 1 (TOKENIZERS_PARALLELISM
    is read at every call). Counts never depend on it."""
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"
    os.environ["RAYON_NUM_THREADS"] = str(workers)


def load_token_counter(tokenizer_dir: str, workers: int = 1):
    """A function texts -> token counts (no BOS/EOS), backed by the Rust batch encoder when available."""
    set_tokenizer_threads(workers)
    from transformers import AutoTokenizer  # imported only when --tokenizer is given

    if not Path(tokenizer_dir).is_dir():
        raise click.ClickException(f"{tokenizer_dir}: --tokenizer must be a Hugging Face tokenizer directory")
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise click.ClickException(f"{tokenizer_dir}: cannot load tokenizer: {e}") from e
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch_fast"):
        def count(texts: list[str]) -> list[int]:
            return [len(e) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    else:
        def count(texts: list[str]) -> list[int]:
            ids = tok(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
            return [len(x) for x in ids]
    return count


_COUNTERS: dict[tuple[str, str], object] = {}  # per process: (directory, fingerprint) -> counter


def cached_token_counter(tokenizer_dir: str, fingerprint: str, counter=None):
    """The counter for this tokenizer in this process, loaded once per worker process, not per task
    (`counter`: one the caller already loaded, kept for the tasks that run in its process)."""
    from corpuskit.render.tokenizer_dir import worker_cached

    return worker_cached(_COUNTERS, (os.path.realpath(tokenizer_dir), fingerprint),
                         lambda: counter if counter is not None else load_token_counter(tokenizer_dir, 1),
                         replace=counter is not None)
