"""`make demo` is one of the two commands a newcomer runs: keep the whole script green."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_script_runs_the_whole_pipeline(tmp_path, llama2_model):
    out = tmp_path / "demo"
    env = {**os.environ, "DEMO_OUT": str(out), "DEMO_QUICK": "1", "LLAMA2_MODEL": str(llama2_model),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for report in ["clean-pretrain", "clean-chats", "buckets", "rendered", "packed", "pt-packed", "llama2-zh",
                   "pairs-rendered", "run-rm", "run-dpo"]:
        counts = json.loads((out / report / "report.json").read_text(encoding="utf-8"))["counts"]
        assert counts["input"] == counts["kept"] + sum(counts["rejected"].values()), report
    for run in ["run-pretrain", "run-sft", "merged", "run-rm", "run-dpo"]:
        assert (out / run / ("" if run == "merged" else "model") / "config.json").is_file(), run
    text = res.stdout + res.stderr
    # DEMO_QUICK: 2 pretrain steps, 2 SFT steps, 1 LoRA step (tests/test_trainers_e2e.py covers longer runs)
    assert text.count("trained 2 steps") == 2 and "trained 1 step" in text
    assert (out / "lengths.png").stat().st_size > 1000
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [a["messages"][0]["content"] for a in answers] == ["猫山王是什么意思", "What is the capital of France?"]
    evals = [json.loads((out / d / "report.json").read_text())["details"]["loss"] for d in ("eval-pretrain", "eval-sft")]
    assert evals[1] < evals[0]  # SFT lowers the loss on the chats it trained on
