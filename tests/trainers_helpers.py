"""Helpers for the trainers tests (a plain module, not a test module): real `corpuskit` pipelines that
build the packed data the trainers read, and running `trainers` as a user runs it.

The data is always real `corpuskit convert -> bucket -> render -> pack` output from tests/data, so
the trainer tests break when the render/pack contract changes, not only when a copy of it does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
TINY_CONFIG = ROOT / "trainers" / "configs" / "tiny_llama.json"
TRAINERS = str(Path(sys.executable).parent / "trainers")


def ck(*args) -> str:
    """`corpuskit ARGS` in process; any failure shows its output."""
    from corpuskit.cli import main as corpuskit

    result = CliRunner().invoke(corpuskit, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


def sharegpt_chats(out: Path, category: str = "chat") -> Path:
    """The real ShareGPT sample as canonical sft records."""
    ck("convert", DATA / "sharegpt_sample.json", "-o", out, "--to", "sft", "--category", category)
    return out


def render_and_pack(inputs, tokenizer_dir: Path, root: Path, *, max_length: int = 96, seq_len: int = 256,
                    mode: str = "sft", template: str | None = "llama2", extra: tuple = ()) -> Path:
    """`corpuskit render INPUTS` then `corpuskit pack`; returns the pack folder (root/packed)."""
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    extra = [*(["--template", template] if mode == "sft" and template else []), *extra]
    ck("render", *inputs, "--tokenizer", tokenizer_dir, "--mode", mode, *extra, "--max-length", max_length,
       "--truncation", "right", "-o", root / "rendered")
    ck("pack", root / "rendered", "-o", root / "packed", "--seq-len", seq_len)
    return root / "packed"


def select_records(src: Path, dst: Path, keep) -> Path:
    """The lines of a jsonl file whose record satisfies keep(record), byte for byte."""
    lines = [line for line in src.read_text(encoding="utf-8").splitlines(keepends=True) if keep(json.loads(line))]
    assert lines, f"no record of {src} selected"
    dst.write_text("".join(lines), encoding="utf-8")
    return dst


def rendered_rows(packed: Path) -> list[dict]:
    """The render output rows a pack folder was built from (render writes into the sibling `rendered`)."""
    from datasets import load_from_disk

    return list(load_from_disk(str(packed.parent / "rendered")).with_format(None))


def run_trainers(*args, check=True, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """`trainers ARGS`, or `LAUNCHER... trainers ARGS` (the `deepspeed` launcher form of the README)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TENSORBOARD_LOGGING_DIR"):
        env.pop(key, None)
    cmd = [*(launcher or []), TRAINERS, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def deepspeed_launcher() -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "1", "--master_port", str(port)]


def losses(run_dir: Path) -> list[float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [h["loss"] for h in state["log_history"] if "loss" in h]


def details(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())["details"]


def tensorboard_tags(run_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (run_dir / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


def common(pdir, model, tokenizer, out) -> list:
    return ["--data", pdir, "--model", model, "--tokenizer", tokenizer, "--output", out]
