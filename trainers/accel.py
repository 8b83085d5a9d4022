"""GPU-only speed and memory options: Liger-Kernel fused kernels (--liger) and 4-bit QLoRA (--load-in-4bit).

Both need CUDA; on any other machine they stop the run with one line before anything is loaded,
rather than failing deep inside Triton or bitsandbytes.
- --liger: Liger-Kernel's Triton kernels for RMSNorm, RoPE, SwiGLU and a fused linear + cross
  entropy that never materialises the vocabulary-wide logits; applied by the Hugging Face Trainer
  (`use_liger_kernel`) to the model's architecture (llama via `apply_liger_kernel_to_llama`).
- --load-in-4bit: the frozen base model in bitsandbytes NF4 with double quantisation and bf16
  compute, prepared for k-bit training (norms in fp32, input grads on), under --lora or
  --prefix-tuning (QLoRA; the ChatGLM2 P-Tuning v2 / llama-recipes `--quantization` workflow).
"""

from __future__ import annotations

import importlib.util

from trainers.errors import TrainError


class AccelError(TrainError):
    pass


def check(liger: bool, load_in_4bit: bool, adapter: bool, bf16: bool, zero_stage: int | None, cuda: bool) -> None:
    """One clear line for the first option this machine or these options cannot honour."""
    if liger:
        if not cuda:
            raise AccelError("--liger needs a CUDA GPU (Liger-Kernel's Triton kernels do not run on CPU); "
                             "drop --liger on this machine")
        if importlib.util.find_spec("liger_kernel") is None:
            raise AccelError("--liger needs the liger-kernel package: pip install liger-kernel")
    if load_in_4bit:
        if not adapter:
            raise AccelError("--load-in-4bit quantises the frozen base model, so it needs --lora or --prefix-tuning")
        if not cuda:
            raise AccelError("--load-in-4bit needs a CUDA GPU (bitsandbytes 4-bit kernels); drop it on this machine")
        if importlib.util.find_spec("bitsandbytes") is None:
            raise AccelError("--load-in-4bit needs the bitsandbytes package: pip install bitsandbytes")
        if not bf16:
            raise AccelError("--load-in-4bit computes in bfloat16: add --bf16")
        if zero_stage == 3:
            raise AccelError("--load-in-4bit is not supported with ZeRO-3 (its parameter partitioning cannot shard "
                             "4-bit weights); use --deepspeed zero2 or none")


def trainer_args(liger: bool) -> dict:
    """TrainingArguments for --liger (the Trainer patches the model's architecture in place)."""
    return {"use_liger_kernel": True} if liger else {}


def nf4_config():
    """QLoRA's quantisation: NF4 weights, double-quantised constants, bf16 matmuls."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def prepare_4bit(model, gradient_checkpointing: bool):
    """peft's k-bit preparation: fp32 norms/head for stable training, input grads for checkpointing."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
