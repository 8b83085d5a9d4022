"""Shared fixtures: real sample data (see tests/data/README.md) and the LLaMA-2 tokenizer."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
LLAMA2_MODEL = Path(os.environ.get("CORPUSKIT_LLAMA2_MODEL", ROOT.parent / "shared" / "tokenizers" / "llama2" / "tokenizer.model"))
# DeepSpeed JIT-builds a small CPU comm op into TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions),
# keyed by name only: venvs sharing that folder rebuild it for each other (minutes each), and a build
# killed half-way leaves a lock every later run waits on. The test runs keep this venv's own build.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def llama2_model() -> Path:
    if not LLAMA2_MODEL.exists():
        pytest.fail(f"LLaMA-2 tokenizer not found at {LLAMA2_MODEL} (expected ../shared beside the repo)")
    return LLAMA2_MODEL


@pytest.fixture(scope="session")
def llama2_tokenizer_dir(tmp_path_factory, llama2_model) -> Path:
    """A Hugging Face tokenizer directory for the base LLaMA-2 tokenizer (built once per worker)."""
    from corpuskit.vocab.hf import write_hf_tokenizer

    out = tmp_path_factory.mktemp("llama2-hf")
    write_hf_tokenizer(llama2_model, out)
    return out


# --- trainers: real `corpuskit` output to train on (helpers in trainers_helpers.py) ---

@pytest.fixture(scope="session")
def chats_jsonl(tmp_path_factory) -> Path:
    from trainers_helpers import sharegpt_chats

    return sharegpt_chats(tmp_path_factory.mktemp("chats") / "chats.jsonl")


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory, llama2_tokenizer_dir, chats_jsonl) -> Path:
    """The ShareGPT sample bucketed in two, rendered (llama2 template, <= 96 tokens) and packed into
    rows of 256 tokens by the real commands: 15 rows, groups bucket-00000 / bucket-00001."""
    from trainers_helpers import ck, render_and_pack

    root = tmp_path_factory.mktemp("packed")
    ck("bucket", chats_jsonl, "-o", root / "buckets", "-n", 2)
    return render_and_pack(root / "buckets", llama2_tokenizer_dir, root)


@pytest.fixture(scope="session")
def sft_samples(packed_dir) -> list[dict]:
    """The rendered samples packed_dir was packed from (input_ids, labels, origin, category)."""
    from trainers_helpers import rendered_rows

    return rendered_rows(packed_dir)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved random tiny LLaMA (the shipped config), as a base for LoRA / prefix tuning / merging."""
    import json

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from trainers_helpers import TINY_CONFIG

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**json.loads(TINY_CONFIG.read_text())))
    out = tmp_path_factory.mktemp("tiny-llama") / "model"
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def near_threshold_copies(data_dir) -> tuple[list[str], list[str]]:
    """40 real reviews and a copy of each with 1-8 characters changed (seeded): the copies land on
    both sides of a 0.8 Jaccard threshold, many of them within MinHash's margin."""
    import random

    rng = random.Random(3)
    lines = (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines()
    real = [t for t in lines if 150 <= len(t) <= 400][:40]
    copies = []
    for k, text in enumerate(real):
        chars = list(text)
        for _ in range(1 + k % 8):
            chars[rng.randrange(len(chars))] = "某"
        copies.append("".join(chars))
    return real, copies


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-node Ray cluster on 127.0.0.1 for one test module (the engine tests' Ray runs)."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    yield cluster
    if ray.is_initialized():
        ray.shutdown()
    cluster.shutdown()


def _die_once(job):
    """Runs fn(task), except that the first time it gets the victim split it kills its own worker
    process (a marker file remembers), so Ray has to retry the task elsewhere."""
    fn, task, marker, victim = job
    if task.split.start == victim and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return fn(task)


@pytest.fixture
def ray_map_killing_a_worker(ray_cluster, tmp_path):
    """map(fn, tasks) on the two-node cluster with the worker that runs the middle byte-range split
    killed once; checks a worker really died. Returns the results in task order."""
    import ray
    from ray import cloudpickle

    from corpuskit.engine.executor import RayExecutor

    def run(fn, tasks):
        byte_range = [t for t in tasks if getattr(t, "items", None) is None and not t.split.whole]
        victim = byte_range[len(byte_range) // 2].split.start
        marker = str(tmp_path / "killed")
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        ray.init(address=ray_cluster.address, include_dashboard=False, log_to_driver=False)
        try:
            with RayExecutor() as ex:
                got = list(ex.map(_die_once, [(fn, t, marker, victim) for t in tasks]))
        finally:
            ray.shutdown()
        assert os.path.exists(marker), "no worker was killed"
        return got

    return run
