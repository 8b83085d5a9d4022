"""Put a chat template into a tokenizer directory, so inference formats prompts exactly as training did.

Writes `chat_template.jinja` (what transformers 5 reads for `apply_chat_template`) and, for
templates with their own markers (chatml), adds those markers as special tokens to
tokenizer.json, so they are single tokens instead of a dozen pieces of text. Either every changed
file is published or none is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tokenizers import AddedToken

from corpuskit.outputs import MARKER, AtomicFiles, atomic_dir, atomic_files
from corpuskit.render.templates import ChatTemplate
from corpuskit.render.tokenizer_dir import CHAT_TEMPLATE_FILE, TokenizerDir


def missing_special_tokens(tok: TokenizerDir, template: ChatTemplate) -> list[str]:
    return [t for t in template.special_tokens if t not in tok.special_tokens]


def export_template(template: ChatTemplate, tokenizer_dir: str | Path, outdir: str | Path | None = None) -> dict:
    """Write the template (and its special tokens) into `outdir` (default: the tokenizer dir itself).

    In place, the changed files are published together (`atomic_files`); into `outdir`, the copy is
    built in a temp folder and renamed into place whole (`atomic_dir`)."""
    src = Path(tokenizer_dir)
    TokenizerDir.load(src)  # validates the directory first
    if outdir is None or Path(outdir).resolve() == src.resolve():
        with atomic_files() as files:
            return _export_into(template, src, src, files)
    with atomic_dir(outdir, "template export") as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(MARKER))
        with atomic_files() as files:
            info = _export_into(template, tmp, Path(outdir), files)
    return info


def _export_into(template: ChatTemplate, dest: Path, shown: Path, files: AtomicFiles) -> dict:
    tok = TokenizerDir.load(dest)
    before = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    added = missing_special_tokens(tok, template)
    if added:
        tok.tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
        files.open(dest / "tokenizer.json").write(tok.tokenizer.to_str(pretty=True))
    cfg_path = dest / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    changed = cfg.pop("chat_template", None) is not None  # the .jinja file is the one source
    if added:
        extra = cfg.get("extra_special_tokens")
        if isinstance(extra, list):
            cfg["extra_special_tokens"] = extra + [t for t in added if t not in extra]
            changed = True
    if changed:
        fh = files.open(cfg_path)
        json.dump(cfg, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    files.open(dest / CHAT_TEMPLATE_FILE).write(template.source)
    after = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    return {"template": template.name, "dir": str(shown), "added_tokens": added,
            "vocab_size_before": before, "vocab_size": after}
