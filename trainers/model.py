"""Model setup: load weights or build from a config, pick the attention kernel, grow the vocabulary.

New embedding rows (an extended Chinese vocabulary) start as the mean of the embeddings of the
base pieces their text splits into, as Colossal-LLaMA-2 and Chinese-LLaMA-2 do, instead of random
rows that make the first steps' loss explode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.errors import TrainError, read_json

SPIECE_SPACE = "\u2581"


class ModelError(TrainError):
    pass


def load_config(path: str | Path):
    from transformers import AutoConfig

    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: no config.json; --model is a saved model directory or a config JSON file")
        try:
            return AutoConfig.from_pretrained(path, trust_remote_code=False)
        except (OSError, ValueError, KeyError) as e:
            raise ModelError(f"{path}/config.json: cannot load the model config ({_first_line(e)})") from e
    if not path.is_file():
        raise ModelError(f"{path}: --model is neither a model directory nor a config JSON file")
    raw = read_json(path, "the model config", ModelError)
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise ModelError(f"{path}: config has no model_type (e.g. \"llama\")")
    try:
        return AutoConfig.for_model(**raw)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path}: cannot build a model config ({_first_line(e)})") from e


def _first_line(e: Exception) -> str:
    """transformers' messages can list every known model type; the first sentence is the point."""
    text = " ".join(str(e).split())
    return text.split(". Should contain one of")[0][:300]


def attention_implementation(device_type: str, requested: str = "auto") -> str:
    """auto: flash_attention_2 (varlen over position_ids) on CUDA when installed, else sdpa.

    All choices keep samples apart: flash via cu_seqlens, flex via a block-sparse document mask
    (skips the masked blocks), sdpa/eager via a dense block-diagonal causal mask.
    """
    from transformers.utils import is_flash_attn_2_available

    if requested == "flash_attention_2" and not (device_type == "cuda" and is_flash_attn_2_available()):
        raise ModelError("--attention flash_attention_2 needs a CUDA GPU and the flash-attn package")
    if requested != "auto":
        return requested
    return "flash_attention_2" if device_type == "cuda" and is_flash_attn_2_available() else "sdpa"


def load_model(path: str | Path, attn_implementation: str, dtype: torch.dtype = torch.float32, seed: int = 42,
               quantization_config=None):
    """A model directory is loaded (no remote code); a config file gives a seeded random init.

    A quantization_config (4-bit QLoRA) quantises the weights as they load, onto this rank's GPU."""
    from transformers import AutoModelForCausalLM

    config = load_config(path)
    if Path(path).is_dir():
        quantized = {} if quantization_config is None else {
            "quantization_config": quantization_config, "device_map": {"": int(os.environ.get("LOCAL_RANK", "0"))}}
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation,
                                                     trust_remote_code=False, **quantized)
    else:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation,
                                                 trust_remote_code=False)
    model.config.use_cache = False  # training: a cache would also disable the packed-sequence mask
    return model


@dataclass
class ResizeReport:
    old_rows: int
    new_rows: int
    from_pieces: int  # rows set to the mean of their base pieces
    from_mean: int  # rows whose text has no base piece: set to the mean of all base rows
    padding: int = 0  # rows past the tokenizer (--pad-to-multiple-of): mean of all base rows, never used

    def to_json(self) -> dict:
        return {"old_rows": self.old_rows, "new_rows": self.new_rows,
                "initialised_from_pieces": self.from_pieces, "initialised_from_mean": self.from_mean,
                **({"padding_rows": self.padding} if self.padding else {})}


def padded_rows(rows: int, multiple: int | None) -> int:
    return -(-rows // multiple) * multiple if multiple and multiple > 1 else rows


def base_piece_ids(piece: str, base_vocab: dict[str, int], longest: int | None = None) -> list[int]:
    """Split a new piece into base pieces by greedy longest match, falling back to <0xNN> bytes.

    `longest` (the longest base piece) is computed once by the caller for a whole vocabulary."""
    out: list[int] = []
    i = 0
    if longest is None:
        longest = max((len(p) for p in base_vocab), default=1)
    while i < len(piece):
        for j in range(min(len(piece), i + longest), i, -1):
            pid = base_vocab.get(piece[i:j])
            if pid is not None:
                out.append(pid)
                i = j
                break
        else:
            bytes_ids = [base_vocab.get(f"<0x{b:02X}>") for b in piece[i].encode("utf-8")]
            out.extend(b for b in bytes_ids if b is not None)
            i += 1
    return out


def piece_index(tokenizer, old_rows: int, new_rows: int) -> tuple[list[int], list[int], list[int]]:
    """(row, piece, new-row-without-pieces) lists mapping each new row to its base pieces."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(new_rows)))
    base_vocab = {p: i for i, p in enumerate(pieces[:old_rows]) if p is not None}
    longest = max((len(p) for p in base_vocab), default=1)
    rows, cols, empty = [], [], []
    for new_id in range(old_rows, new_rows):
        piece = pieces[new_id] or ""
        if piece.startswith(SPIECE_SPACE) and len(piece) > 1:
            piece = piece[1:]  # the word-start mark would dilute the mean of the piece's characters
        ids = base_piece_ids(piece, base_vocab, longest)
        if not ids:
            empty.append(new_id)
        rows.extend([new_id] * len(ids))
        cols.extend(ids)
    return rows, cols, empty


@torch.no_grad()
def _mean_fill(weight: torch.Tensor, old_rows: int, rows: list[int], cols: list[int], empty: list[int]) -> None:
    """weight[r] = mean(weight[pieces of r]) for all new rows at once (one index_add)."""
    if rows:  # on the weight's device: a 4-bit model is loaded straight onto its GPU
        r = torch.tensor(rows, dtype=torch.long, device=weight.device) - old_rows
        c = torch.tensor(cols, dtype=torch.long, device=weight.device)
        n_new = weight.shape[0] - old_rows
        sums = torch.zeros(n_new, weight.shape[1], dtype=torch.float32, device=weight.device)
        sums.index_add_(0, r, weight[c].float())
        counts = torch.bincount(r, minlength=n_new).clamp(min=1).unsqueeze(1)
        filled = torch.unique(r)
        weight[old_rows + filled] = (sums[filled] / counts[filled]).to(weight.dtype)
    if empty:
        weight[torch.tensor(empty, dtype=torch.long, device=weight.device)] = (
            weight[:old_rows].float().mean(0).to(weight.dtype))


def grow_vocabulary(model, tokenizer, new_rows: int, pad_to_multiple_of: int | None = None) -> ResizeReport:
    """Resize input/output embeddings to `new_rows` and mean-initialise the new rows.

    With `pad_to_multiple_of` (64 is common on GPUs) the rows are rounded up, as
    `resize_token_embeddings(pad_to_multiple_of=N)` does; rows past the tokenizer are padding."""
    old_rows = model.get_input_embeddings().weight.shape[0]
    target = padded_rows(new_rows, pad_to_multiple_of)
    if target <= old_rows:
        return ResizeReport(old_rows, old_rows, 0, 0)
    real = max(min(new_rows, target), old_rows)  # rows that are tokenizer pieces
    rows, cols, empty = piece_index(tokenizer, old_rows, real)
    padding = list(range(real, target))
    model.resize_token_embeddings(new_rows, mean_resizing=False, pad_to_multiple_of=pad_to_multiple_of)
    assert model.get_input_embeddings().weight.shape[0] == target
    _mean_fill(model.get_input_embeddings().weight, old_rows, rows, cols, empty + padding)
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        _mean_fill(out.weight, old_rows, rows, cols, empty + padding)
    return ResizeReport(old_rows, target, real - old_rows - len(empty), len(empty), len(padding))
