"""Checkpoints that are either complete or invisible, and resumes that never run code from them.

Saving: the Trainer (and DeepSpeed) write checkpoint-N into a hidden staging folder; once every rank
is done, rank 0 writes `trainers-checkpoint.json` (size and sha256 of every file) last and renames the
folder into place. A kill at any moment leaves no checkpoint-N or a complete one; the next run removes
what a killed one left in the staging folder.

Resuming: a checkpoint counts only if its manifest lists exactly the files present, with their sizes
and digests (`--resume` alone takes the newest such one and names those it skipped). Every pickle in it
is then scanned without unpickling, and refused if it names anything but tensors, containers and the
few DeepSpeed/NumPy classes a checkpoint holds. While training, every `torch.load` of the process runs
with weights_only=True (TORCH_FORCE_WEIGHTS_ONLY_LOAD overrides DeepSpeed's explicit weights_only=False),
so even a pickle the scan missed cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from trainers.errors import TrainError

MANIFEST = "trainers-checkpoint.json"
FORMAT = "trainers.checkpoint/1"
STAGING = ".checkpoints-staging"  # hidden: HF's checkpoint-N pattern and our scans never see it
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# torch.save files trainers' resume reads; training_args.bin (a pickled TrainingArguments, never loaded
# on resume) is covered by the digests but not by the pickle scan
PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
NOT_LOADED = {"training_args.bin"}
# globals a checkpoint may name beyond torch's own weights-only set: NumPy RNG state (HF's rng_state.pth)
# and the ZeRO optimizer state DeepSpeed saves
ALLOWED_GLOBALS = (
    "numpy.ndarray", "numpy.dtype", "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
    "numpy.dtypes.UInt32DType",
    "deepspeed.utils.tensor_fragment.fragment_address", "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler", "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
)


class CheckpointError(TrainError):
    pass


def step_of(path: Path) -> int | None:
    m = CHECKPOINT_RE.match(path.name)
    return int(m.group(1)) if m else None


def _files(folder: Path) -> Iterator[Path]:
    """Every entry under folder (sorted); symlinks and special files are reported, not followed."""
    for root, dirs, names in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            yield Path(root) / name


def _digest(path: Path, sync: bool = False) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
        if sync:
            os.fsync(fh.fileno())  # on disk before the rename publishes it
    return h.hexdigest()


def _digests(paths: list[Path], sync: bool = False) -> list[str]:
    # hashlib releases the GIL: a few threads read the shards of a large checkpoint in parallel
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda p: _digest(p, sync), paths))


def write_manifest(folder: Path, step: int) -> None:
    paths = [p for p in _files(folder) if p.name != MANIFEST or p.parent != folder]
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": d}
             for p, d in zip(paths, _digests(paths, sync=True))}
    tmp = folder / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"format": FORMAT, "step": step, "files": files}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST)


def verify(folder: Path, digests: bool = True) -> str | None:
    """None when folder is a complete checkpoint as trainers saved it, else why not (one phrase).
    digests=False checks only the file list and sizes (cheap: for rotation, not for resuming)."""
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        return "not a folder"
    if not manifest_path.is_file():
        return f"no {MANIFEST} (its save never finished, or a trainers without checkpoint manifests wrote it)"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    files = manifest.get("files") if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        return f"{MANIFEST} is unreadable or not a {FORMAT} manifest"
    present = {}
    for p in _files(folder):
        rel = p.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        if p.is_symlink() or not p.is_file():
            return f"{rel} is a link or special file, which trainers never saves"
        present[rel] = p
    if missing := sorted(set(files) - set(present)):
        return f"{missing[0]} is missing" + (f" (and {len(missing) - 1} more files)" if len(missing) > 1 else "")
    if extra := sorted(set(present) - set(files)):
        return f"{extra[0]} was not part of the checkpoint trainers saved"
    for rel, p in present.items():
        if p.stat().st_size != files[rel].get("bytes"):
            return f"{rel} has {p.stat().st_size} bytes, {files[rel].get('bytes')} were saved (truncated or changed)"
    names = sorted(present) if digests else []
    for rel, digest in zip(names, _digests([present[n] for n in names])):
        if digest != files[rel].get("sha256"):
            return f"{rel} does not match the sha256 recorded when it was saved (changed or corrupted since)"
    return None


def unsafe_pickles(folder: Path) -> list[tuple[str, str]]:
    """(file, problem) for every torch file the resume loads that names a global outside the allow-list
    (read from the pickle opcodes, nothing is unpickled) or cannot be read that way."""
    import torch

    found = []
    for p in _files(folder):
        if p.suffix not in PICKLE_SUFFIXES or p.name in NOT_LOADED:
            continue
        rel = p.relative_to(folder).as_posix()
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
        except Exception as e:  # noqa: BLE001 - not a torch zip file, or a pickle that does not parse
            found.append((rel, f"is not a torch checkpoint trainers can inspect ({' '.join(str(e).split())[:120]})"))
            continue
        if bad := [n for n in names if n not in ALLOWED_GLOBALS]:
            found.append((rel, f"names {', '.join(bad[:3])}, which unpickling would call"))
    return found


def find_latest(run_dir: Path) -> tuple[Path | None, list[tuple[str, str]]]:
    """The newest complete checkpoint-N of run_dir, and (name, reason) of each newer one skipped."""
    candidates = sorted((p for p in run_dir.iterdir() if step_of(p) is not None and p.is_dir()),
                        key=step_of, reverse=True) if run_dir.is_dir() else []
    skipped = []
    for ckpt in candidates:
        reason = verify(ckpt)
        if reason is None:
            return ckpt, skipped
        skipped.append((ckpt.name, reason))
    return None, skipped


def resolve_resume(resume: str | None, run_dir: Path, echo: Callable[[str], None] = print) -> str | None:
    """The checkpoint folder to resume from (checked), or None; every problem is one CheckpointError line."""
    if not resume:
        return None
    if resume == "latest":
        ckpt, skipped = find_latest(run_dir)
        for name, reason in skipped:
            echo(f"--resume: skipping {run_dir / name}: {reason}")
        if ckpt is None:
            if skipped:
                raise CheckpointError(f"--resume: no complete checkpoint in {run_dir} to resume from "
                                      f"(skipped {', '.join(n for n, _ in skipped)})")
            raise CheckpointError(f"--resume: no checkpoint-N folder in {run_dir} to resume from")
    else:
        ckpt = Path(resume)
        if not ckpt.is_dir():
            raise CheckpointError(f"--resume {resume}: no such checkpoint folder")
        if reason := verify(ckpt):
            raise CheckpointError(f"--resume {resume}: not a complete trainers checkpoint: {reason}")
    if bad := unsafe_pickles(ckpt):
        rel, problem = bad[0]
        raise CheckpointError(f"--resume {ckpt}: {rel} {problem}; refusing to resume from it (a checkpoint "
                              "may hold only tensors, containers and the classes trainers allows)")
    return str(ckpt)


def unpickling_refused(resume: str | None, error: Exception) -> CheckpointError:
    """The one line for a torch.load that weights-only loading refused (an object the scan let pass)."""
    what = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    return CheckpointError(f"--resume {resume}: refusing to unpickle a checkpoint file that names "
                           f"{what.group(1) if what else 'a non-tensor object'}, which could run code")


@contextlib.contextmanager
def weights_only_loading() -> Iterator[None]:
    """Every torch.load in this block is weights_only=True, with ALLOWED_GLOBALS allow-listed."""
    import importlib

    import torch

    objects = []
    for name in ALLOWED_GLOBALS:
        module, _, attr = name.rpartition(".")
        try:
            objects.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # numpy 1 vs 2 names; deepspeed not installed
            continue
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        with torch.serialization.safe_globals(objects):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def clean_staging(run_dir: Path) -> None:
    """Remove what a killed save left; a checkpoint it had moved aside to replace comes back."""
    staging = run_dir / STAGING
    if not staging.is_dir():
        return
    for old in staging.glob("*.replaced"):
        final = run_dir / old.name[: -len(".replaced")]
        if not final.exists():
            os.replace(old, final)
    shutil.rmtree(staging, ignore_errors=True)


def staging_dir(run_dir: Path) -> Path:
    return run_dir / STAGING


def publish(staged: Path, run_dir: Path, step: int) -> Path:
    """Write the manifest last, then rename the staged checkpoint into place (replacing one of the same
    step from an earlier attempt, which is moved aside first so a kill keeps one of the two)."""
    write_manifest(staged, step)
    final = run_dir / staged.name
    aside = staged.parent / f"{staged.name}.replaced"
    if final.exists():
        if aside.exists():
            shutil.rmtree(aside)
        os.replace(final, aside)
    os.replace(staged, final)
    _fsync_dir(run_dir)
    if aside.exists():
        shutil.rmtree(aside)
    return final


def rotate(run_dir: Path, keep: int | None) -> None:
    """Keep the newest `keep` complete checkpoints; older ones are moved out of sight before they are
    deleted. Incomplete folders (not ours to judge: an older version or a copy left them) stay."""
    if not keep or keep <= 0:
        return
    ckpts = sorted((p for p in run_dir.iterdir() if step_of(p) is not None and p.is_dir()
                    and verify(p, digests=False) is None), key=step_of)
    for old in ckpts[:-keep]:
        doomed = staging_dir(run_dir) / f"{old.name}.deleted"
        doomed.parent.mkdir(exist_ok=True)
        if doomed.exists():
            shutil.rmtree(doomed)
        os.replace(old, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def tidy(run_dir: Path) -> None:
    """Drop the staging folder once nothing is left in it."""
    with contextlib.suppress(OSError):
        staging_dir(run_dir).rmdir()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
