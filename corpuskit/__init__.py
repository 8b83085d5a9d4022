"""corpuskit: raw Chinese/English text and chat logs -> clean, deduplicated, mixed, packed training data.

The core never imports torch, deepspeed or peft; training lives in the separate `trainers` package.
"""

__version__ = "0.1.0"
