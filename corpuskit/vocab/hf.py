"""Write a Hugging Face tokenizer directory for a SentencePiece model.

Interim version: lets transformers convert the model. The vocabulary work replaces this with a
writer whose tokenizer.json ids equal the SentencePiece ids on any text.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def write_hf_tokenizer(model_path: str | Path, outdir: str | Path) -> Path:
    from transformers import AutoTokenizer

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(model_path, Path(tmp) / "tokenizer.model")
        tok = AutoTokenizer.from_pretrained(tmp)
        tok.save_pretrained(outdir)
    shutil.copy(model_path, outdir / "tokenizer.model")
    return outdir
