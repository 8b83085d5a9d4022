"""Several training processes on CPU: the process group that accelerate does not set up by itself.

`torchrun`/`deepspeed` start N processes and tell each its RANK/WORLD_SIZE/LOCAL_RANK. On CUDA,
accelerate then picks NCCL and everything follows. On CPU it picks a backend only when told
`cpu=True`, which also turns DeepSpeed off; without it, it sees no backend and reports world
size 1, so every process believes it is rank 0 and DeepSpeed's batch check (train_batch_size =
micro x accum x world) fails. Here the state is built once, before TrainingArguments, with a CPU
backend given explicitly (gloo, or the DeepSpeed CPU accelerator's own, e.g. oneCCL), and the
Trainer is told to use it.

Data sharding is then the usual one: accelerate deals the batches of our sampler out round-robin,
so with R ranks global batch k is the R consecutive micro-batches that one rank with R-step
gradient accumulation would train on, in the same order, and the Trainer averages the loss over
the trained tokens of the whole global batch.
"""

from __future__ import annotations

import os
from datetime import timedelta


def world_size() -> int:
    """How many processes the launcher (torchrun, deepspeed, accelerate) started in all."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_process_group(deepspeed: bool, timeout_s: int = 1800) -> dict:
    """Set up the process group for a multi-process CPU run; returns extra TrainingArguments.

    Nothing to do for one process or on CUDA (accelerate handles both). For several CPU
    processes, accelerate's shared state is created here and TrainingArguments reuses it
    (`use_configured_state`)."""
    import torch
    from accelerate import PartialState

    if world_size() <= 1 or torch.cuda.is_available():
        return {}
    if PartialState._shared_state == {}:
        timeout = timedelta(seconds=timeout_s)
        if deepspeed:
            from deepspeed.accelerator import get_accelerator

            # the same switch transformers flips: accelerate then starts the group through deepspeed.comm
            os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
            try:
                PartialState(backend=get_accelerator().communication_backend_name(), timeout=timeout)
            finally:
                del os.environ["ACCELERATE_USE_DEEPSPEED"]
        else:
            PartialState(cpu=True, backend="gloo", timeout=timeout)
    return {"accelerator_config": {"use_configured_state": True}, "ddp_timeout": timeout_s}


def gather_from_ranks(obj: dict) -> list[dict]:
    """Every rank's `obj`, in rank order (a collective: all ranks must call it); [obj] alone."""
    from accelerate.utils import gather_object

    return gather_object([obj])
