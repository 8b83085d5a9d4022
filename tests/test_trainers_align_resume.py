"""Exact --resume for `trainers rm`, `dpo` and `rlhf`: the same checkpoint machinery as `trainers sft`
(checkpoints.py: staged saves with a digest manifest, incomplete checkpoints skipped, pickles scanned
and loaded weights-only), and a run resumed from its mid checkpoint ends bit-identical to one never
stopped.

Each straight run (A) trains a tiny LLaMA for 4 steps with a checkpoint every 2 on pairs/prompts
rendered from the real text in tests/data (preference_data.review_offtopic_pairs). A resumed run (B)
starts from a copy of A's folder as a kill during the step-4 save leaves it, or from a real SIGKILL.
RLHF samples its replies: RLOO draws them from torch's global generator, which the checkpoint saves
(rng_state.pth) and the resume restores before the next step, so B samples the same replies as A.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from preference_data import review_offtopic_pairs, write_jsonl
from trainers import checkpoints
from trainers.checkpoints import MANIFEST, STAGING
from trainers.cli import main as trainers_main
from trainers_helpers import TINY_CONFIG, TRAINERS, ck, run_trainers

pytestmark = pytest.mark.xdist_group("align-resume")  # one worker trains the straight runs once

COMMANDS = ("rm", "dpo", "rlhf")
STEPS = ["--max-steps", 4, "--save-steps", 2, "--logging-steps", 1, "--seed", 7]
OWN = {  # large learning rates, so every step moves the weights visibly
    "rm": ["--batch-size", 4, "--lr", 3e-3, "--eval-fraction", 0.2],
    "dpo": ["--batch-size", 2, "--lr", 3e-3, "--eval-fraction", 0.2],
    "rlhf": ["--batch-size", 4, "--num-generations", 2, "--max-completion-length", 8, "--lr", 3e-3,
             "--temperature", 1.0],
}
# what each recipe logs per step besides the loss: all must come back the same after a resume
LOGGED = {"rm": ("loss", "accuracy", "margin", "grad_norm", "learning_rate"),
          "dpo": ("loss", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected", "grad_norm"),
          "rlhf": ("loss", "reward", "reward_std", "kl", "completions/mean_length", "grad_norm")}


@pytest.fixture(scope="module")
def data(tmp_path_factory, llama2_tokenizer_dir) -> Path:
    """40 real review/ShareGPT pairs rendered as pairs (rm, dpo) and as prompts (rlhf)."""
    w = tmp_path_factory.mktemp("align-resume")
    shutil.copytree(llama2_tokenizer_dir, w / "tok")
    ck("template", "export", "llama2-chinese", "--tokenizer", w / "tok")
    write_jsonl(w / "pairs.jsonl", review_offtopic_pairs(40))
    ck("render", w / "pairs.jsonl", "--tokenizer", w / "tok", "--mode", "preference", "--max-length", 192,
       "-o", w / "pairs")
    ck("render", w / "pairs.jsonl", "--tokenizer", w / "tok", "--mode", "prompt", "--max-length", 96,
       "-o", w / "prompts")
    return w


@pytest.fixture(scope="module")
def argv(data, tiny_model_dir):
    """argv(command, out): the command line of run A (and of its resume). rlhf scores with run A of rm."""
    def make(command: str, out: Path, reward_model: Path | None = None) -> list:
        if command == "rlhf":
            base = ["--data", data / "prompts", "--model", tiny_model_dir, "--reward-model", reward_model]
        else:
            base = ["--data", data / "pairs", "--model", TINY_CONFIG]
        return [command, *base, "--tokenizer", data / "tok", "--output", out, *STEPS, *OWN[command]]
    return make


@pytest.fixture(scope="module")
def straight(data, argv):
    """straight(command): the folder of run A, trained once per module."""
    runs: dict[str, Path] = {}

    def get(command: str) -> Path:
        if command not in runs:
            out = data / f"{command}-A"
            reward_model = get("rm") / "model" if command == "rlhf" else None
            run_trainers(*argv(command, out, reward_model))
            runs[command] = out
        return runs[command]
    return get


def cli_args(argv, straight, command: str, out: Path) -> list:
    return argv(command, out, straight("rm") / "model" if command == "rlhf" else None)


def logged(run: Path, command: str) -> list[dict]:
    state = json.loads((run / "trainer_state.json").read_text())
    return [{k: h[k] for k in LOGGED[command] if k in h} for h in state["log_history"] if "loss" in h]


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def assert_same_run(a: Path, b: Path, command: str) -> None:
    """B ends where A ended: every logged number and every final weight bit for bit."""
    import torch

    log_a, log_b = logged(a, command), logged(b, command)
    assert len(log_a) == 4 and all(set(h) == set(LOGGED[command]) for h in log_a), log_a
    assert log_b == log_a
    wa, wb = weights(a / "model"), weights(b / "model")
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    mid = weights(a / "checkpoint-2")
    assert any(not torch.equal(mid[k], wa[k]) for k in wa if k in mid)  # steps 3-4 did change them


def killed_during_the_last_save(a: Path, dst: Path) -> Path:
    """A's folder as a kill while checkpoint-4 was being written leaves it: run.json, tensorboard/,
    checkpoint-2, half of checkpoint-4 in the staging folder; plus a checkpoint-4 without a manifest
    (what a trainers before checkpoint manifests, or an interrupted copy, leaves)."""
    dst.mkdir()
    for name in ("run.json", "tensorboard", "checkpoint-2"):
        (shutil.copytree if (a / name).is_dir() else shutil.copy2)(a / name, dst / name)
    shutil.copytree(a / "checkpoint-4", dst / STAGING / "checkpoint-4")
    (dst / STAGING / "checkpoint-4" / "optimizer.pt").unlink()
    shutil.copytree(a / "checkpoint-4", dst / "checkpoint-4")
    (dst / "checkpoint-4" / MANIFEST).unlink()
    return dst


def invoke(monkeypatch, tmp_path, *args):
    """`trainers ARGS` in process (refusals that stop before or at the start of training)."""
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))  # the recipes set it for the process
    result = CliRunner().invoke(trainers_main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_error_line(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = re.findall(r"Error: .*", result.output)
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


# --- saving: the sft machinery -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_checkpoints_are_published_whole_with_a_manifest(command, straight):
    run = straight(command)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-2",
                                                                                        "checkpoint-4"]
    assert not (run / STAGING).exists()
    for step in (2, 4):
        ckpt = run / f"checkpoint-{step}"
        assert checkpoints.verify(ckpt) is None and json.loads((ckpt / MANIFEST).read_text())["step"] == step
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
                "trainer_state.json"} <= set(json.loads((ckpt / MANIFEST).read_text())["files"])


# --- resuming: exactly -------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_resume_from_the_mid_checkpoint_ends_bit_identical(command, straight, argv, tmp_path):
    a = straight(command)
    b = killed_during_the_last_save(a, tmp_path / "run")
    proc = run_trainers(*cli_args(argv, straight, command, b), "--resume")
    assert "Traceback" not in proc.stderr
    assert f"skipping {b / 'checkpoint-4'}: no {MANIFEST}" in proc.stderr
    assert f"resuming from {b / 'checkpoint-2'}" in proc.stderr
    assert_same_run(a, b, command)
    assert checkpoints.verify(b / "checkpoint-4") is None and not (b / STAGING).exists()


@pytest.mark.slow
def test_rlhf_killed_during_a_checkpoint_save_resumes_exactly(straight, argv, tmp_path):
    """A real SIGKILL while RLOO's checkpoint-2 is being staged (checkpoint-1 published): the resume
    restarts at step 1 and samples, scores and trains steps 2-4 as the straight run did."""
    a = straight("rlhf")
    out = tmp_path / "run"
    args = [str(x) for x in cli_args(argv, straight, "rlhf", out)]
    args[args.index("--save-steps") + 1] = "1"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    env.pop("TENSORBOARD_LOGGING_DIR", None)
    proc = subprocess.Popen([TRAINERS, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint-1").is_dir() or not (out / STAGING).is_dir():
            assert proc.poll() is None, "the run ended before a second checkpoint save was seen"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    visible = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
    assert visible and all(checkpoints.verify(out / name) is None for name in visible), visible
    resumed = run_trainers(*args, "--resume")
    assert f"resuming from {out / visible[-1]}" in resumed.stderr
    assert_same_run(a, out, "rlhf")


# --- resuming: refusals ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_resume_with_only_incomplete_checkpoints_is_one_line(command, straight, argv, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(straight(command), out)
    (out / "checkpoint-2" / MANIFEST).unlink()
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    args = cli_args(argv, straight, command, out)
    result = invoke(monkeypatch, tmp_path, *args, "--resume")
    one_error_line(result, f"--resume: no complete checkpoint in {out}", "checkpoint-4, checkpoint-2")
    assert f"skipping {out / 'checkpoint-4'}: trainer_state.json is missing" in result.output
    one_error_line(invoke(monkeypatch, tmp_path, *args, "--resume", out / "checkpoint-4"),
                   f"--resume {out / 'checkpoint-4'}: not a complete trainers checkpoint: "
                   "trainer_state.json is missing")
    shutil.rmtree(out / "checkpoint-2")
    shutil.rmtree(out / "checkpoint-4")
    one_error_line(invoke(monkeypatch, tmp_path, *args, "--resume"), f"no checkpoint-N folder in {out}")


class Payload:
    """Unpickling this runs code: it writes `marker` (what a planted checkpoint file would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code from a checkpoint ran')",)


def plant_and_bless(ckpt: Path, rel: str, marker: Path) -> None:
    """Replace rel with a pickle that runs code and rewrite its manifest entry, as a careful attacker would."""
    import hashlib

    import torch

    torch.save({"python": Payload(marker)}, ckpt / rel)
    manifest = json.loads((ckpt / MANIFEST).read_text())
    blob = (ckpt / rel).read_bytes()
    manifest["files"][rel] = {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    (ckpt / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.slow
def test_planted_pickles_in_a_dpo_checkpoint_never_run(straight, argv, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(straight("dpo"), out)
    marker = tmp_path / "pwned"
    ckpt = out / "checkpoint-4"
    args = [*cli_args(argv, straight, "dpo", out), "--resume", ckpt]
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    plant_and_bless(ckpt, "rng_state.pth", marker)
    # first wall: the pickle scan, before anything is loaded
    one_error_line(invoke(monkeypatch, tmp_path, *args), "rng_state.pth", "builtins.exec", "refusing to resume")
    # second wall: with the scan out of the way, the training loop's own torch.load is weights-only
    monkeypatch.setattr(checkpoints, "unsafe_pickles", lambda folder: [])
    one_error_line(invoke(monkeypatch, tmp_path, *args), "refusing to unpickle", "names exec")
    assert not marker.exists()
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") == before  # the process is left as it was
