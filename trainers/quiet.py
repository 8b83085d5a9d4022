"""Silence library noise a trainers user cannot act on; leave every other warning alone.

Each filter names one message (module and text), so a new or actionable warning still shows:
- DeepSpeed's "Setting accelerator to CPU" on machines without a GPU (trainers prints the device
  it trains on itself);
- FutureWarnings raised inside the libraries on every step: torch.distributed's renamed
  collectives called by DeepSpeed ZeRO (`reduce_scatter_tensor`, `all_gather_into_tensor`, dozens
  per ZeRO-3 step), `past_key_values` -> `cache` passed by PEFT prefix tuning, and
  `is_gradient_checkpointing` queried by PEFT. ("Both `past_key_values` and `cache` are set" is
  kept: it means a prefix was dropped.)

Installed once, before torch/DeepSpeed are imported (the DeepSpeed message is logged at import).
"""

from __future__ import annotations

import logging
import warnings

# (category, message regex, module regex) for warnings.filterwarnings
LIBRARY_WARNINGS = (
    (FutureWarning, r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor|_all_gather_base|"
                    r"_reduce_scatter_base)` is ", r"torch\.distributed"),
    (FutureWarning, r"`past_key_values` is deprecated and will be removed", r"torch\.nn\.modules\.module"),
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils"),
)
DEEPSPEED_NOISE = ("Setting accelerator to CPU",)


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    for category, message, module in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    # DeepSpeed's logger object is created on import by logging.getLogger("DeepSpeed"): a filter added
    # now is on that same object when the accelerator message is logged
    logging.getLogger("DeepSpeed").addFilter(_DropMessages(DEEPSPEED_NOISE))
