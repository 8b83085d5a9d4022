"""Checkpoints and --resume: a checkpoint is visible only when complete, --resume takes the newest
complete one (naming what it skipped), continues exactly, and never runs code planted in a checkpoint.

Each run trains the tiny LLaMA on the real ShareGPT pack (conftest.packed_dir) for 4 steps with a
checkpoint every 2; the tests copy that run folder and break the copy the way kills and attackers do.
"""

from __future__ import annotations

import hashlib
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

from trainers import checkpoints
from trainers.checkpoints import MANIFEST, STAGING
from trainers.cli import main as trainers_main
from trainers_helpers import TINY_CONFIG, TRAINERS, common, losses, run_trainers

STEPS = ["--max-steps", 4, "--save-steps", 2]
pytestmark = pytest.mark.xdist_group("trainers-resume")  # one worker trains the shared runs once


class Payload:
    """Unpickling this runs code: it writes `marker` (what a planted checkpoint file would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code from a checkpoint ran')",)


def plant(path: Path, marker: Path) -> None:
    import torch

    torch.save({"module": Payload(marker), "global_steps": 4}, path)


def bless(ckpt: Path, rel: str) -> None:
    """Rewrite the manifest entry of rel to match its new content, as a careful attacker would."""
    manifest = json.loads((ckpt / MANIFEST).read_text())
    data = (ckpt / rel).read_bytes()
    manifest["files"][rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / MANIFEST).write_text(json.dumps(manifest))


def invoke(monkeypatch, *args):
    """`trainers ARGS` in process (for refusals that stop before training); env changes are undone."""
    monkeypatch.setenv("RANK", os.environ.get("RANK", "0"))  # --deepspeed would otherwise set them for good
    monkeypatch.setenv("WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    result = CliRunner().invoke(trainers_main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_error_line(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    errors = re.findall(r"Error: .*", result.output)  # a progress bar may share the line
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def train_run(tmp_path_factory, packed_dir, tokenizer_dir, name: str, *extra) -> tuple[Path, list[float]]:
    out = tmp_path_factory.mktemp(name) / "run"
    run_trainers("sft", *common(packed_dir, TINY_CONFIG, tokenizer_dir, out), *STEPS, *extra)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-2",
                                                                                         "checkpoint-4"]
    assert not (out / STAGING).exists()
    return out, losses(out)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, packed_dir, llama2_tokenizer_dir):
    return train_run(tmp_path_factory, packed_dir, llama2_tokenizer_dir, "plain")


@pytest.fixture(scope="module")
def zero2_run(tmp_path_factory, packed_dir, llama2_tokenizer_dir):
    return train_run(tmp_path_factory, packed_dir, llama2_tokenizer_dir, "zero2", "--deepspeed", "zero2")


def copy_run(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


# --- saving: manifest last, then one rename -------------------------------------------------------

@pytest.mark.slow
def test_every_saved_checkpoint_is_complete_with_a_digest_of_every_file(plain_run, zero2_run):
    for run, ds_files in ((plain_run[0], set()),
                          (zero2_run[0], {"latest", "global_step4/mp_rank_00_model_states.pt",
                                          "global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt"})):
        ckpt = run / "checkpoint-4"
        manifest = json.loads((ckpt / MANIFEST).read_text())
        on_disk = {p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*") if p.is_file()} - {MANIFEST}
        assert set(manifest["files"]) == on_disk and manifest["step"] == 4
        assert {"trainer_state.json", "model.safetensors", "rng_state.pth", "scheduler.pt"} | ds_files <= on_disk
        for rel, entry in manifest["files"].items():
            assert hashlib.sha256((ckpt / rel).read_bytes()).hexdigest() == entry["sha256"], rel
        assert checkpoints.verify(ckpt) is None


@pytest.mark.slow
def test_kill_during_a_checkpoint_save_then_resume_continues_exactly(plain_run, packed_dir, llama2_tokenizer_dir,
                                                                     tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([TRAINERS, "sft", *map(str, common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out)),
                             "--max-steps", "4", "--save-steps", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staged = out / STAGING
    try:  # SIGKILL as soon as the second checkpoint is being written
        deadline = time.monotonic() + 300
        while not (out / "checkpoint-1").is_dir() or not staged.is_dir():
            assert proc.poll() is None, "the run ended before a second checkpoint save was seen"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    visible = sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-"))
    assert visible and all(checkpoints.verify(out / name) is None for name in visible), visible
    resumed = run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), "--max-steps", 4,
                           "--save-steps", 1, "--resume")
    assert f"resuming from {out / visible[-1]}" in resumed.stderr
    assert losses(out) == pytest.approx(plain_run[1], abs=1e-6)  # same 4 steps as the run never killed
    assert not staged.exists()


# --- resuming: the newest complete checkpoint, exactly ---------------------------------------------

@pytest.mark.slow
def test_resume_skips_incomplete_checkpoints_and_continues_exactly(plain_run, packed_dir, llama2_tokenizer_dir,
                                                                   tmp_path):
    run, straight = plain_run
    out = copy_run(run, tmp_path)
    # what kills and interrupted copies leave: an empty folder, a missing file, a truncated file,
    # and a half-written save in the staging folder
    (out / "checkpoint-5").mkdir()
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-3")
    (out / "checkpoint-3" / "trainer_state.json").unlink()
    optimizer = out / "checkpoint-4" / "optimizer.pt"
    size = optimizer.stat().st_size
    with open(optimizer, "r+b") as fh:
        fh.truncate(size // 2)
    (out / STAGING / "checkpoint-6").mkdir(parents=True)
    (out / STAGING / "checkpoint-6" / "model.safetensors").write_bytes(b"\0" * 100)

    proc = run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), *STEPS, "--resume")
    assert "Traceback" not in proc.stderr
    assert f"skipping {out / 'checkpoint-5'}: no {MANIFEST}" in proc.stderr
    assert f"skipping {out / 'checkpoint-4'}: optimizer.pt has {size // 2} bytes, {size} were saved" in proc.stderr
    assert f"skipping {out / 'checkpoint-3'}: trainer_state.json is missing" in proc.stderr
    assert f"resuming from {out / 'checkpoint-2'}" in proc.stderr
    assert losses(out) == pytest.approx(straight, abs=1e-6)  # 2 steps + resume + 2 steps == 4 steps
    assert checkpoints.verify(out / "checkpoint-4") is None  # saved again, whole
    assert not (out / STAGING).exists()


@pytest.mark.slow
def test_resume_with_only_incomplete_checkpoints_is_one_line(plain_run, packed_dir, llama2_tokenizer_dir, tmp_path,
                                                            monkeypatch):
    out = copy_run(plain_run[0], tmp_path)
    (out / "checkpoint-2" / MANIFEST).unlink()
    (out / "checkpoint-4" / "trainer_state.json").unlink()
    result = invoke(monkeypatch, "sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), "--resume")
    one_error_line(result, f"no complete checkpoint in {out}", "checkpoint-4, checkpoint-2")
    assert "skipping" in result.output
    result = invoke(monkeypatch, "sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), "--resume",
                    out / "checkpoint-4")
    one_error_line(result, "not a complete trainers checkpoint: trainer_state.json is missing")


@pytest.mark.slow
def test_zero2_resume_continues_exactly(zero2_run, packed_dir, llama2_tokenizer_dir, tmp_path):
    run, straight = zero2_run
    out = copy_run(run, tmp_path)
    # every torch.load is weights_only here: DeepSpeed's model and ZeRO optimizer states must still load
    proc = run_trainers("sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), *STEPS,
                        "--deepspeed", "zero2", "--resume", out / "checkpoint-2")
    assert f"resuming from {out / 'checkpoint-2'}" in proc.stderr
    assert losses(out) == pytest.approx(straight, abs=1e-6)
    assert checkpoints.verify(out / "checkpoint-4") is None


# --- resuming never runs code from a checkpoint ----------------------------------------------------

@pytest.mark.slow
def test_planted_pickle_in_a_deepspeed_checkpoint_is_refused(zero2_run, packed_dir, llama2_tokenizer_dir, tmp_path,
                                                             monkeypatch):
    out = copy_run(zero2_run[0], tmp_path)
    marker = tmp_path / "pwned"
    ckpt = out / "checkpoint-4"
    rel = "global_step4/mp_rank_00_model_states.pt"
    plant(ckpt / rel, marker)
    args = ["sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), *STEPS, "--deepspeed", "zero2"]
    # the file no longer matches what trainers recorded when saving it
    one_error_line(invoke(monkeypatch, *args, "--resume", ckpt), f"--resume {ckpt}: not a complete trainers "
                   f"checkpoint: {rel} has")
    # an attacker who also rewrites the manifest: the pickle scan names the code it would run
    bless(ckpt, rel)
    for resume in (["--resume", ckpt], ["--resume"]):
        one_error_line(invoke(monkeypatch, *args, *resume), rel, "builtins.exec", "refusing to resume")
    assert not marker.exists()


@pytest.mark.slow
def test_planted_pickles_in_a_plain_checkpoint_are_refused(plain_run, packed_dir, llama2_tokenizer_dir, tmp_path,
                                                           monkeypatch):
    out = copy_run(plain_run[0], tmp_path)
    marker = tmp_path / "pwned"
    ckpt = out / "checkpoint-4"
    args = ["sft", *common(packed_dir, TINY_CONFIG, llama2_tokenizer_dir, out), *STEPS, "--resume", ckpt]
    for rel in ("optimizer.pt", "scheduler.pt"):
        pristine = (ckpt / rel).read_bytes()
        plant(ckpt / rel, marker)
        bless(ckpt, rel)
        one_error_line(invoke(monkeypatch, *args), rel, "builtins.exec")
        (ckpt / rel).write_bytes(pristine)
        bless(ckpt, rel)
    # second wall: with the scan out of the way, weights-only loading still refuses (rng_state.pth is
    # read by transformers' own torch.load once training starts)
    plant(ckpt / "rng_state.pth", marker)
    bless(ckpt, "rng_state.pth")
    monkeypatch.setattr(checkpoints, "unsafe_pickles", lambda folder: [])
    one_error_line(invoke(monkeypatch, *args), "refusing to unpickle", "names exec")
    assert not marker.exists()


def test_deepspeed_loader_runs_planted_code_unless_weights_only_is_forced(tmp_path):
    """The hole itself: DeepSpeed loads with weights_only=False. Inside weights_only_loading() (all of
    `trainers pretrain/sft`) the same call refuses, and the code never runs."""
    import pickle

    pytest.importorskip("deepspeed")
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    evil = tmp_path / "mp_rank_00_model_states.pt"
    marker = tmp_path / "pwned"
    plant(evil, marker)
    before = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    with checkpoints.weights_only_loading():
        with pytest.raises(pickle.UnpicklingError, match="GLOBAL exec"):
            TorchCheckpointEngine().load(str(evil), map_location="cpu")
    assert not marker.exists()
    assert os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD") == before  # the process is left as it was
    TorchCheckpointEngine().load(str(evil), map_location="cpu")  # unguarded: the planted code runs
    assert marker.read_text() == "code from a checkpoint ran"


# --- the file-level promises, without training -------------------------------------------------------

def test_publish_moves_a_replaced_checkpoint_aside_and_a_kill_between_renames_keeps_one(tmp_path):
    run = tmp_path / "run"
    old = run / "checkpoint-4"
    old.mkdir(parents=True)
    (old / "trainer_state.json").write_text('{"global_step": 4, "attempt": 1}')
    checkpoints.write_manifest(old, 4)
    # a kill after the old checkpoint was moved aside and before the new one was renamed in
    staging = run / STAGING
    staging.mkdir()
    os.replace(old, staging / "checkpoint-4.replaced")
    (staging / "checkpoint-4").mkdir()
    (staging / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4, "attempt": 2}')
    checkpoints.clean_staging(run)
    assert sorted(os.listdir(run)) == ["checkpoint-4"] and checkpoints.verify(old) is None
    assert json.loads((old / "trainer_state.json").read_text())["attempt"] == 1
    # a save that completes replaces it whole
    new = staging / "checkpoint-4"
    new.mkdir(parents=True)
    (new / "trainer_state.json").write_text('{"global_step": 4, "attempt": 3}')
    checkpoints.publish(new, run, 4)
    checkpoints.tidy(run)
    assert sorted(os.listdir(run)) == ["checkpoint-4"] and checkpoints.verify(old) is None
    assert json.loads((old / "trainer_state.json").read_text())["attempt"] == 3


def test_links_and_extra_files_make_a_checkpoint_unusable(tmp_path):
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text("{}")
    checkpoints.write_manifest(ckpt, 2)
    (ckpt / "global_step2").mkdir()
    (ckpt / "global_step2" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"x")
    assert "global_step2/zero_pp_rank_1_mp_rank_00_optim_states.pt was not part of" in checkpoints.verify(ckpt)
    shutil.rmtree(ckpt / "global_step2")
    assert checkpoints.verify(ckpt) is None
    (ckpt / "trainer_state.json").write_text("[]")  # same size, other bytes
    assert checkpoints.verify(ckpt) == "trainer_state.json does not match the sha256 recorded when it was saved " \
                                       "(changed or corrupted since)"
    assert checkpoints.verify(ckpt, digests=False) is None
    (ckpt / "trainer_state.json").unlink()
    (ckpt / "trainer_state.json").symlink_to(tmp_path / "elsewhere.json")
    assert "link or special file" in checkpoints.verify(ckpt)


def test_a_torch_file_the_scan_cannot_read_is_refused(tmp_path):
    import torch

    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text("{}")
    torch.save({"step": torch.tensor(2)}, ckpt / "scheduler.pt", _use_new_zipfile_serialization=False)
    checkpoints.write_manifest(ckpt, 2)
    with pytest.raises(checkpoints.CheckpointError, match="scheduler.pt is not a torch checkpoint trainers can "
                                                          "inspect.*refusing to resume"):
        checkpoints.resolve_resume(str(ckpt), tmp_path)
    torch.save({"step": torch.tensor(2)}, ckpt / "scheduler.pt")  # the zip format every torch.save writes
    checkpoints.write_manifest(ckpt, 2)
    assert checkpoints.resolve_resume(str(ckpt), tmp_path) == str(ckpt)
