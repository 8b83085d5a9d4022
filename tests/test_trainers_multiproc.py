"""Two training processes on CPU (gloo) give the same training as one process accumulating two steps.

Data parallelism is only right if R ranks x grad-accum 1 reproduce 1 rank x grad-accum R: the same
rows per optimizer step, in the same (bucket) order, the gradient averaged over the same trained
tokens. These runs check exactly that, through the launchers a user types (`torchrun`,
`deepspeed`), on real data made by `corpuskit bucket/render/pack`: equal loss curves, equal final
weights, each rank's rows = its round-robin share of the one-rank order, and only rank 0 writing
the run's outputs. A tiny random LLaMA keeps each run to a few seconds of training.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest

from trainers_helpers import TINY_CONFIG, ck, details, losses, run_trainers


BIN = Path(sys.executable).parent
STEPS = 4


def torchrun(nproc: int = 2) -> list[str]:
    return [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(nproc)]


def deepspeed(nproc: int = 2) -> list[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(BIN / "deepspeed"), "--num_gpus", str(nproc), "--master_port", str(port)]


@pytest.fixture(scope="module")
def chat_buckets(data_dir, llama2_tokenizer_dir, tmp_path_factory) -> Path:
    """ShareGPT chats in 2 buckets, rendered and packed: 12 rows, bucket 0 = rows 0..6."""
    root = tmp_path_factory.mktemp("chat-buckets")
    ck("convert", data_dir / "sharegpt_sample.json", "-o", root / "chats.jsonl", "--to", "sft")
    ck("bucket", root / "chats.jsonl", "-o", root / "buckets", "-n", 2)
    ck("render", root / "buckets" / "bucket-00000.jsonl", root / "buckets" / "bucket-00001.jsonl",
       "--tokenizer", llama2_tokenizer_dir, "--template", "llama2", "--max-length", 256, "-o", root / "rendered")
    ck("pack", root / "rendered", "-o", root / "packed", "--seq-len", 256)
    groups = json.loads((root / "packed" / "manifest.json").read_text())["groups"]
    assert [(g["start"], g["end"]) for g in groups] == [(0, 7), (7, 12)]
    return root / "packed"


@pytest.fixture(scope="module")
def news_packed(data_dir, llama2_tokenizer_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("news")
    ck("convert", data_dir / "peoples_daily_199801_head.txt", "--from", "peoples-daily", "-o", root / "news.jsonl")
    ck("render", root / "news.jsonl", "--tokenizer", llama2_tokenizer_dir, "--mode", "pretrain",
       "--max-length", 128, "-o", root / "rendered")
    ck("pack", root / "rendered", "-o", root / "packed", "--seq-len", 256)
    return root / "packed"


def sampler_order(pdir: Path, seed: int = 42) -> list[int]:
    from trainers.data import GroupOrderedSampler

    manifest = json.loads((pdir / "manifest.json").read_text())
    return GroupOrderedSampler([(g["start"], g["end"]) for g in manifest["groups"]], seed=seed).order()


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(run_dir / "model" / "model.safetensors")


def max_diff(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def log_column(run_dir: Path, key: str) -> list:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [h[key] for h in state["log_history"] if "loss" in h]


def run_files(run_dir: Path) -> set[str]:
    """The run's own outputs: everything but checkpoint-N/ (where every rank writes its ZeRO shard
    and RNG state, as resuming needs) and ds_config.json, event files named without host/pid/time."""
    files = set()
    for p in run_dir.rglob("*"):
        rel = p.relative_to(run_dir).as_posix()
        if p.is_file() and not rel.startswith("checkpoint-") and rel != "ds_config.json":
            files.add(re.sub(r"tfevents\..*", "tfevents", rel))
    return files


def train(mode: str, pdir: Path, tokenizer: Path, out: Path, grad_accum: int, *extra, launcher=None) -> str:
    proc = run_trainers(mode, "--data", pdir, "--model", TINY_CONFIG, "--tokenizer", tokenizer, "--output", out,
                        "--max-steps", STEPS, "--lr", 1e-3, "--grad-accum", grad_accum, *extra, launcher=launcher)
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def sft_one_rank(chat_buckets, llama2_tokenizer_dir, tmp_path_factory) -> Path:
    """The reference: one process, ZeRO-2, accumulating 2 micro-batches per step."""
    out = tmp_path_factory.mktemp("sft-one-rank") / "run"
    train("sft", chat_buckets, llama2_tokenizer_dir, out, 2, "--deepspeed", "zero2")
    return out


def assert_same_training(one: Path, two: Path, output: str, pdir: Path) -> tuple[float, float]:
    from trainers.callbacks import rows_fingerprint
    from trainers.model import load_model

    # the same optimizer steps: loss curve and final weights
    assert len(losses(one)) == STEPS
    loss_diff = max(abs(a - b) for a, b in zip(losses(one), losses(two)))
    assert losses(two) == pytest.approx(losses(one), rel=1e-5, abs=1e-5)
    w1, w2 = weights(one), weights(two)
    init = {k: v for k, v in load_model(TINY_CONFIG, "sdpa", seed=42).state_dict().items() if k in w1}
    weight_diff = max_diff(w1, w2)
    assert max_diff(w1, init) > 1e-3  # the weights did move, so equal weights mean equal training
    assert weight_diff < 1e-5, weight_diff
    # the same rows in the same order: one rank trains order[:2*STEPS]; rank r its every 2nd row from r
    order = sampler_order(pdir)[:2 * STEPS]
    d1, d2 = details(one), details(two)
    assert d1["world_size"] == 1 and d2["world_size"] == 2
    assert [r["rows_sha256"] for r in d1["ranks"]] == [rows_fingerprint(order)]
    assert [r["rows_sha256"] for r in d2["ranks"]] == [rows_fingerprint(order[0::2]), rows_fingerprint(order[1::2])]
    assert [r["rows"] for r in d2["ranks"]] == [STEPS, STEPS]
    assert sum(r["tokens"] for r in d2["ranks"]) == d1["ranks"][0]["tokens"]
    assert log_column(two, "bucket") == log_column(one, "bucket")
    assert log_column(two, "tokens") == log_column(one, "tokens")
    # only rank 0 writes the run's outputs and speaks
    assert run_files(two) == run_files(one)
    assert len(list((two / "tensorboard").rglob("events.out.tfevents.*"))) == 1
    assert output.count(f"trained {STEPS} steps") == 1, output[-3000:]
    return loss_diff, weight_diff


@pytest.mark.slow
@pytest.mark.xdist_group("multiproc")
def test_torchrun_two_ranks_zero2_equal_one_rank_accumulating(chat_buckets, sft_one_rank, llama2_tokenizer_dir,
                                                              tmp_path):
    two = tmp_path / "two-ranks"
    output = train("sft", chat_buckets, llama2_tokenizer_dir, two, 1, "--deepspeed", "zero2", launcher=torchrun())
    assert details(two)["zero_stage"] == 2
    print("max |loss diff| %.3g, max |weight diff| %.3g" % assert_same_training(sft_one_rank, two, output,
                                                                                  chat_buckets))
    # bucket order kept across ranks: rows 0..6 are bucket 0, so step 4 (rows 6, 7) reaches bucket 1
    assert log_column(two, "bucket") == [0, 0, 0, 1]


@pytest.mark.slow
@pytest.mark.xdist_group("multiproc")
def test_torchrun_two_ranks_plain_ddp_equal_one_rank_accumulating(chat_buckets, sft_one_rank, llama2_tokenizer_dir,
                                                                  tmp_path):
    """Without --deepspeed the Trainer wraps the model in torch DDP; compared with the same ZeRO-2
    reference (ZeRO-2 partitions the optimizer state, the arithmetic of a step is the same)."""
    two = tmp_path / "two-ranks"
    output = train("sft", chat_buckets, llama2_tokenizer_dir, two, 1, launcher=torchrun())
    assert details(two)["deepspeed"] is None
    print("max |loss diff| %.3g, max |weight diff| %.3g" % assert_same_training(sft_one_rank, two, output,
                                                                                  chat_buckets))


@pytest.mark.slow
@pytest.mark.xdist_group("multiproc")
def test_deepspeed_launcher_two_ranks_zero3_pretrain_equal_one_rank_accumulating(news_packed, llama2_tokenizer_dir,
                                                                                  tmp_path):
    one, two = tmp_path / "one-rank", tmp_path / "two-ranks"
    train("pretrain", news_packed, llama2_tokenizer_dir, one, 2, "--deepspeed", "zero3")
    output = train("pretrain", news_packed, llama2_tokenizer_dir, two, 1, "--deepspeed", "zero3", launcher=deepspeed())
    assert details(two)["zero_stage"] == 3
    print("max |loss diff| %.3g, max |weight diff| %.3g" % assert_same_training(one, two, output, news_packed))


# --liger / --load-in-4bit: GPU-only options that must stop a CPU run with one line, before any loading.

def trainers_cli(tmp_path: Path, *args):
    from click.testing import CliRunner

    from trainers.cli import main

    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "tok").mkdir(exist_ok=True)
    return CliRunner().invoke(main, ["sft", "--data", str(tmp_path / "data"), "--model", str(TINY_CONFIG),
                                     "--tokenizer", str(tmp_path / "tok"), "--output", str(tmp_path / "run"),
                                     *map(str, args)])


def one_line_error(result) -> str:
    assert result.exit_code == 1, (result.output, result.exception)
    # (importing deepspeed may log its own "Setting accelerator to CPU" line first)
    lines = [line for line in result.output.splitlines() if "real_accelerator.py" not in line and line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output, result.output
    return lines[0]


cpu_only = pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks the CPU-only error")


@cpu_only
def test_liger_on_cpu_is_a_one_line_error(tmp_path):
    line = one_line_error(trainers_cli(tmp_path, "--liger", "--deepspeed", "zero2"))
    assert "--liger needs a CUDA GPU" in line
    assert not (tmp_path / "run").exists()  # stopped before touching the output folder


@cpu_only
@pytest.mark.parametrize("adapter", ["--lora", "--prefix-tuning"])
def test_load_in_4bit_on_cpu_is_a_one_line_error(tmp_path, adapter):
    line = one_line_error(trainers_cli(tmp_path, "--load-in-4bit", adapter, "--bf16"))
    assert "--load-in-4bit needs a CUDA GPU" in line


def test_load_in_4bit_needs_an_adapter(tmp_path):
    line = one_line_error(trainers_cli(tmp_path, "--load-in-4bit", "--bf16"))
    assert "needs --lora or --prefix-tuning" in line


@pytest.mark.parametrize("package, option", [("liger_kernel", "liger"), ("bitsandbytes", "load_in_4bit")])
def test_gpu_options_name_their_missing_package(package, option):
    """With a GPU but without the package, the message is the install line (checked only where the
    package is really absent; with it, the rules after the install check are exercised instead)."""
    import importlib.util

    from trainers.accel import AccelError, check

    kwargs = dict(liger=False, load_in_4bit=False, adapter=True, bf16=True, zero_stage=2, cuda=True)
    kwargs[option] = True
    if importlib.util.find_spec(package) is None:
        with pytest.raises(AccelError, match=f"pip install {package.replace('_', '-')}"):
            check(**kwargs)
    elif option == "load_in_4bit":
        with pytest.raises(AccelError, match="ZeRO-3"):
            check(**{**kwargs, "zero_stage": 3})
        with pytest.raises(AccelError, match="add --bf16"):
            check(**{**kwargs, "bf16": False})
    else:
        check(**kwargs)
