"""Shared fixtures: real sample data (see tests/data/README.md) and the LLaMA-2 tokenizer."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
LLAMA2_MODEL = Path(os.environ.get("CORPUSKIT_LLAMA2_MODEL", ROOT.parent / "shared" / "tokenizers" / "llama2" / "tokenizer.model"))
# DeepSpeed JIT-builds a small CPU comm op into TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions),
# keyed by name only: venvs sharing that folder rebuild it for each other (minutes each), and a build
# killed half-way leaves a lock every later run waits on. The test runs keep this venv's own build.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def llama2_model() -> Path:
    if not LLAMA2_MODEL.exists():
        pytest.fail(f"LLaMA-2 tokenizer not found at {LLAMA2_MODEL} (expected ../shared beside the repo)")
    return LLAMA2_MODEL


@pytest.fixture(scope="session")
def llama2_tokenizer_dir(tmp_path_factory, llama2_model) -> Path:
    """A Hugging Face tokenizer directory for the base LLaMA-2 tokenizer (built once per worker)."""
    from corpuskit.vocab.hf import write_hf_tokenizer

    out = tmp_path_factory.mktemp("llama2-hf")
    write_hf_tokenizer(llama2_model, out)
    return out
