"""Load a trained model for inference - full, merged, LoRA or prefix-tuned - and run it as it was trained.

Prefix tuning (P-Tuning v2) needs care. Under transformers 5 `generate()` passes its own, empty
`cache` to the model, and PEFT 0.21 injects the prefix as the deprecated `past_key_values`, which
the model then ignores ("Both `past_key_values` and `cache` are set ... ignoring"): generation
silently runs the base model. Here the prefix is materialised as a transformers Cache
(`PeftModel.get_prompt`, a DynamicCache holding the virtual tokens' keys and values) and handed to
the base model as *the* cache, with the attention mask extended by the virtual tokens, for the
forward pass and for generation alike. That is exactly the training-time forward of PEFT: real
tokens at positions P..P+n-1, every one attending to the P prefix entries.

Positions are always passed explicitly (from the attention mask), so left-padded batches for
generation and right-padded batches for scoring give each sample the positions it had in training.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch

from trainers.errors import TrainError, read_json

KINDS = ("full", "lora", "prefix-tuning")


class InferenceError(TrainError):
    pass


def adapter_embedding_rows(adapter_dir: str | Path) -> int | None:
    """Rows of the embed_tokens an adapter carries (LoRA on an extended vocabulary), read from the header."""
    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key.endswith("embed_tokens.weight"):
                return int(f.get_slice(key).get_shape()[0])
    return None


def resolve_adapter(model_dir: str | Path, adapter_dir: str | Path | None) -> tuple[Path, Path | None]:
    """`--model run/model` of a LoRA/prefix run (an adapter folder) means: its recorded base + that adapter."""
    model_dir = Path(model_dir)
    if adapter_dir is None and (model_dir / "adapter_config.json").is_file():
        config = read_json(model_dir / "adapter_config.json", "the adapter config", InferenceError)
        base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
        if not base or not (Path(base) / "config.json").is_file():
            raise InferenceError(f"--model {model_dir} is an adapter whose base model ({base!r}) is not a local model "
                                 "directory; pass the base as --model and this folder as --adapter")
        return Path(base), model_dir
    return model_dir, Path(adapter_dir) if adapter_dir is not None else None


@dataclass
class LoadedModel:
    """What runs (`model`), what kind of model it is, and the PEFT wrapper when there is an adapter."""

    model: torch.nn.Module
    kind: str
    peft: torch.nn.Module | None = None
    virtual_tokens: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def embedding_rows(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[0])

    def _prefixed(self, attention_mask: torch.Tensor) -> dict:
        """attention_mask / position_ids / cache for a batch, the prefix (if any) in front."""
        batch = attention_mask.shape[0]
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0) + self.virtual_tokens
        if not self.virtual_tokens:
            return {"attention_mask": attention_mask, "position_ids": positions}
        ones = attention_mask.new_ones((batch, self.virtual_tokens))
        return {"attention_mask": torch.cat([ones, attention_mask], dim=1), "position_ids": positions,
                "cache": self.peft.get_prompt(batch_size=batch)}

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of every real token (the prefix, if any, attended to but not returned)."""
        out = self.model(input_ids=input_ids, **self._prefixed(attention_mask), use_cache=bool(self.virtual_tokens))
        return out.logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, generation_config, **kwargs):
        """`generate()` on left-padded prompts; returns what transformers returns (prompt + new tokens)."""
        return self.model.generate(input_ids=input_ids, **self._prefixed(attention_mask),
                                   generation_config=generation_config, **kwargs)


def _takes_cache(model) -> bool:
    return "cache" in inspect.signature(model.forward).parameters


def load(model_dir: str | Path, adapter_dir: str | Path | None = None, dtype: torch.dtype = torch.float32,
         device: str | torch.device = "cpu", attn_implementation: str = "sdpa") -> LoadedModel:
    """A model directory (full or merged), optionally with a LoRA or prefix-tuning adapter on top."""
    from transformers import AutoModelForCausalLM

    model_dir, adapter = resolve_adapter(model_dir, adapter_dir)
    if not (model_dir / "config.json").is_file():
        raise InferenceError(f"--model {model_dir}: no config.json; pass a saved model directory "
                             "(trainers' run/model, a merged model, or a Hugging Face model folder)")
    peft_type = None
    if adapter is not None:
        config = read_json(adapter / "adapter_config.json", "the adapter config", InferenceError) \
            if (adapter / "adapter_config.json").is_file() else None
        peft_type = config.get("peft_type") if isinstance(config, dict) else None
        if peft_type not in ("LORA", "PREFIX_TUNING"):
            raise InferenceError(f"--adapter {adapter}: " + ("no adapter_config.json (pass the model/ folder of a "
                                 "--lora or --prefix-tuning run)" if config is None else
                                 f"a {peft_type} adapter; trainers runs LORA and PREFIX_TUNING adapters"))
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn_implementation,
                                                trust_remote_code=False)
    if peft_type is None:
        return LoadedModel(base.to(device).eval(), "full")

    from peft import PeftModel

    if peft_type == "LORA":
        rows = adapter_embedding_rows(adapter)
        if rows is not None and rows != base.get_input_embeddings().weight.shape[0]:
            base.resize_token_embeddings(rows, mean_resizing=False)  # the rows come from the adapter
        peft = PeftModel.from_pretrained(base, str(adapter)).to(device).eval()
        return LoadedModel(peft, "lora", peft)
    peft = PeftModel.from_pretrained(base, str(adapter)).to(device).eval()
    virtual = int(peft.active_peft_config.num_virtual_tokens)
    if not _takes_cache(peft.get_base_model()):
        import transformers

        raise InferenceError(f"running a prefix-tuned model here needs transformers >= 5 (the model takes its "
                             f"prefix as `cache`); found transformers {transformers.__version__}")
    return LoadedModel(peft.get_base_model(), "prefix-tuning", peft, virtual)
