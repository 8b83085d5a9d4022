"""Parameter-efficient training: LoRA (Chinese-LLaMA-2 style) and prefix tuning (P-Tuning v2).

With an extended vocabulary the new embedding rows start untrained, so LoRA runs also train and
save embed_tokens and lm_head in full (`modules_to_save`, one copy each), as Chinese-LLaMA-2 does.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
EMBEDDING_MODULES = ["embed_tokens", "lm_head"]


@dataclass
class LoraOptions:
    r: int = 8
    alpha: int = 32
    dropout: float = 0.05
    targets: str = DEFAULT_LORA_TARGETS


def apply_lora(model, opts: LoraOptions, train_embeddings: bool):
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                        target_modules=[t.strip() for t in opts.targets.split(",") if t.strip()],
                        modules_to_save=list(EMBEDDING_MODULES) if train_embeddings else None)
    peft_model = get_peft_model(model, config)
    if train_embeddings:
        save_embeddings_once(peft_model)
    return peft_model


def save_embeddings_once(peft_model) -> None:
    """Save the trained embed_tokens/lm_head once (as modules_to_save), not three times.

    PEFT's default `save_embedding_layers="auto"` sees the resized vocabulary and also saves each
    embedding layer whole, which for a `modules_to_save` layer is its trained copy again plus the
    frozen original: three copies (tiny LLaMA, 6 new pieces: a 49.2 MB adapter, 16.5 MB saved once). The
    `modules_to_save` copy alone is what loading needs. The Trainer calls `save_pretrained` for
    checkpoints and the final model, so the setting is bound on this model object.
    """
    import functools

    peft_model.save_pretrained = functools.partial(peft_model.save_pretrained, save_embedding_layers=False)


def apply_prefix_tuning(model, pre_seq_len: int, projection: bool = False):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    config = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=pre_seq_len,
                                prefix_projection=projection)
    return get_peft_model(model, config)


def trainable_summary(model) -> dict:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total}
