"""Put the tokenizer a model was trained with beside it: the same files, byte for byte.

`model/` outputs copy the files of the tokenizer directory given to trainers instead of
re-serialising a loaded tokenizer, so `tokenizer.json` keeps the sha256 recorded in the pack
manifest and the SentencePiece `tokenizer.model` (llama.cpp/GGUF conversion and older scripts
need it) travels too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "tokenizer.model")


def copy_tokenizer_files(src: str | Path, dest: str | Path) -> list[str]:
    """Copy every tokenizer file `src` has into `dest`; returns the names copied."""
    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
            copied.append(name)
    return copied
