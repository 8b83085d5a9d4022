"""trainers: DeepSpeed/PEFT training on `corpuskit pack` output (install with the [train] extra)."""

__version__ = "0.1.0"
