"""Read a Hugging Face tokenizer directory with the `tokenizers` library alone.

`import transformers` pulls in torch; render and pack must stay light, so the special tokens and
the chat template are read from the directory's files, the same files `AutoTokenizer` reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

from corpuskit.errors import CorpusError
from corpuskit.outputs import settle

CHAT_TEMPLATE_FILE = "chat_template.jinja"


class TokenizerDirError(CorpusError):
    pass


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class TokenizerDir:
    path: Path
    tokenizer: Tokenizer
    bos_token: str
    eos_token: str
    pad_token: str | None
    unk_token: str | None
    chat_template: str | None
    special_tokens: set[str] = field(default_factory=set)  # every added special token's text

    @classmethod
    def load(cls, path: str | Path) -> "TokenizerDir":
        path = Path(path)
        tj, cfg_path = path / "tokenizer.json", path / "tokenizer_config.json"
        for f in (tj, cfg_path, path / CHAT_TEMPLATE_FILE):
            settle(f)  # a `template export` killed mid-commit: finish it before reading
        if not tj.is_file():
            raise TokenizerDirError(f"{path}: no tokenizer.json (need a Hugging Face fast-tokenizer directory)")
        cfg = {}
        if cfg_path.is_file():
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise TokenizerDirError(f"{cfg_path}:{e.lineno}: invalid JSON: {e.msg}") from e
        try:
            tok = Tokenizer.from_file(str(tj))
        except Exception as e:  # the Rust error names what is wrong with the file
            raise TokenizerDirError(f"{tj}: cannot load: {e}") from e
        bos, eos = _token_text(cfg.get("bos_token")), _token_text(cfg.get("eos_token"))
        if not bos or not eos:
            raise TokenizerDirError(f"{cfg_path}: bos_token and eos_token must be set")
        for t in (bos, eos):
            if tok.token_to_id(t) is None:
                raise TokenizerDirError(f"{tj}: special token {t!r} is not in the vocabulary")
        template = None
        if (path / CHAT_TEMPLATE_FILE).is_file():
            template = (path / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
        elif isinstance(cfg.get("chat_template"), str):
            template = cfg["chat_template"]
        specials = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
        return cls(path, tok, bos, eos, _token_text(cfg.get("pad_token")), _token_text(cfg.get("unk_token")),
                   template, specials)

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    def special_tokens_map(self) -> dict[str, str]:
        """What a chat template sees, as in `tokenizer.special_tokens_map` of transformers."""
        out = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        if self.unk_token:
            out["unk_token"] = self.unk_token
        if self.pad_token:
            out["pad_token"] = self.pad_token
        return out

    def manifest(self) -> dict:
        return {"path": str(self.path), "vocab_size": self.tokenizer.get_vocab_size(with_added_tokens=True),
                "bos_token_id": self.token_id(self.bos_token), "eos_token_id": self.token_id(self.eos_token),
                "pad_token_id": self.token_id(self.pad_token),
                "sha256": sha256_file(self.path / "tokenizer.json")}


def tokenizer_fingerprint(tokenizer_dir: str) -> str:
    """sha256 of the directory's files (names and bytes): a tokenizer rewritten in place is a new key."""
    h = hashlib.sha256()
    root = Path(tokenizer_dir)
    for p in sorted(root.iterdir()):
        if p.is_file():
            h.update(p.name.encode("utf-8") + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


WORKER_CACHE_SIZE = 4  # tokenizers kept per worker process (a Ray worker may serve several commands)


def worker_cached(cache: dict, key, load, replace: bool = False):
    """cache[key], loaded on first use in this process and kept for its later tasks (at most
    WORKER_CACHE_SIZE entries, least recently used dropped); `replace`: store load() anyway."""
    if replace or key not in cache:
        value = load()
        cache.pop(key, None)
        while len(cache) >= WORKER_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = value
    else:
        cache[key] = cache.pop(key)  # most recently used last
    return cache[key]
