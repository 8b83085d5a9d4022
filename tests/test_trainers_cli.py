"""trainers command line: help, and every pre-flight error is one clear line with exit status 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from trainers.cli import main
from trainers_helpers import TINY_CONFIG


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def sft(pdir, tokenizer, out, model=TINY_CONFIG, *extra):
    return invoke("sft", "--data", pdir, "--model", model, "--tokenizer", tokenizer, "--output", out, *extra)


@pytest.mark.parametrize("command", ["pretrain", "sft", "merge-lora"])
def test_every_command_has_help_with_an_example(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Example" in result.output and "trainers " + command in result.output


def test_tokenizer_mismatch_is_caught_before_training(packed_dir, llama2_tokenizer_dir, tmp_path):
    from transformers import AddedToken, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    tok.add_tokens([AddedToken("中国", normalized=False)])
    tok.save_pretrained(tmp_path / "tok")
    result = sft(packed_dir, tmp_path / "tok", tmp_path / "run")
    assert result.exit_code == 1
    assert "32000-piece tokenizer" in result.output and "32001 pieces" in result.output
    assert "sha256" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_all_masked_labels_are_refused(packed_dir, llama2_tokenizer_dir, tmp_path):
    # real pack output whose labels were all masked afterwards (render itself never writes such rows)
    from datasets import load_from_disk

    pdir = tmp_path / "pdir"
    table = load_from_disk(str(packed_dir)).map(lambda r: {"labels": [-100] * len(r["labels"])})
    table.save_to_disk(str(pdir))
    shutil.copy(packed_dir / "manifest.json", pdir / "manifest.json")
    result = sft(pdir, llama2_tokenizer_dir, tmp_path / "run")
    assert result.exit_code == 1 and "all labels are masked" in result.output


def test_sequence_length_above_model_maximum_is_refused(packed_dir, llama2_tokenizer_dir, tmp_path):
    config = json.loads(TINY_CONFIG.read_text())
    config["max_position_embeddings"] = 128
    (tmp_path / "short.json").write_text(json.dumps(config))
    result = sft(packed_dir, llama2_tokenizer_dir, tmp_path / "run", tmp_path / "short.json")
    assert result.exit_code == 1
    assert "sequence length 256" in result.output and "max_position_embeddings 128" in result.output


def test_mode_adapter_and_config_problems_are_listed_together(packed_dir, llama2_tokenizer_dir, tmp_path):
    result = invoke("pretrain", "--data", packed_dir, "--model", TINY_CONFIG, "--tokenizer", llama2_tokenizer_dir,
                    "--output", tmp_path / "run", "--lora", "--prefix-tuning")
    assert result.exit_code == 1
    assert "holds sft data" in result.output and "use `trainers sft`" in result.output
    assert "cannot be combined" in result.output and "must be a model directory" in result.output


def test_unknown_deepspeed_config_and_render_output_are_refused(packed_dir, llama2_tokenizer_dir, tmp_path):
    result = sft(packed_dir, llama2_tokenizer_dir, tmp_path / "run", TINY_CONFIG, "--deepspeed", "zero9")
    assert result.exit_code == 1 and "zero9" in result.output and "zero2, zero3, zero3-offload" in result.output
    render_like = tmp_path / "rdir"
    shutil.copytree(packed_dir, render_like)
    manifest = json.loads((render_like / "manifest.json").read_text())
    (render_like / "manifest.json").write_text(json.dumps(manifest["render"]))
    result = sft(render_like, llama2_tokenizer_dir, tmp_path / "run")
    assert result.exit_code == 1 and "corpuskit.render/1" in result.output and "corpuskit pack" in result.output


def test_output_folder_is_never_clobbered(packed_dir, llama2_tokenizer_dir, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = sft(packed_dir, llama2_tokenizer_dir, foreign)
    assert result.exit_code == 1 and "not written by trainers" in result.output
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "run.json").write_text("{}")
    result = sft(packed_dir, llama2_tokenizer_dir, earlier)
    assert result.exit_code == 1 and "pass --resume" in result.output
    result = sft(packed_dir, llama2_tokenizer_dir, earlier, TINY_CONFIG, "--resume")
    assert result.exit_code == 1 and "no checkpoint-N folder" in result.output
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_missing_train_extra_names_the_install_command(packed_dir, llama2_tokenizer_dir, tmp_path):
    # a Python where torch cannot be imported, as after `pip install corpuskit` without [train]
    code = ("import sys; sys.modules['torch'] = None\n"
            "from trainers.cli import main\n"
            "main(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", code, "sft", "--data", str(packed_dir), "--model", str(TINY_CONFIG),
                           "--tokenizer", str(llama2_tokenizer_dir), "--output", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "pip install corpuskit[train]" in proc.stderr and "cannot import torch" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_trainers_cli_module_does_not_import_torch():
    code = "import sys, trainers.cli, trainers.errors; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr


def test_malformed_inputs_are_one_line_errors_naming_the_file(packed_dir, llama2_tokenizer_dir, tmp_path):
    broken_pack = tmp_path / "pack"
    shutil.copytree(packed_dir, broken_pack)
    (broken_pack / "manifest.json").write_text('{"format":\n  "corpuskit.pack/1",,}')
    (tmp_path / "config.json").write_text('{"model_type": "llama",\n')
    (tmp_path / "unknown.json").write_text('{"model_type": "no-such-model"}')
    (tmp_path / "ds.json").write_text("[1\n")
    bad_tok = tmp_path / "tok"
    shutil.copytree(llama2_tokenizer_dir, bad_tok)
    (bad_tok / "tokenizer.json").write_text('{"x\n')
    no_tok = tmp_path / "no-tok"
    no_tok.mkdir()
    cases = [
        (sft(broken_pack, llama2_tokenizer_dir, tmp_path / "r"), f"{broken_pack}/manifest.json:2:"),
        (sft(packed_dir, llama2_tokenizer_dir, tmp_path / "r", tmp_path / "config.json"), f"{tmp_path}/config.json:2:"),
        (sft(packed_dir, llama2_tokenizer_dir, tmp_path / "r", tmp_path / "unknown.json"), "no-such-model"),
        (sft(packed_dir, llama2_tokenizer_dir, tmp_path / "r", TINY_CONFIG, "--deepspeed", tmp_path / "ds.json"),
         f"{tmp_path}/ds.json:2:"),
        (sft(packed_dir, bad_tok, tmp_path / "r"), f"--tokenizer {bad_tok}: cannot load a tokenizer"),
        (sft(packed_dir, no_tok, tmp_path / "r"), f"--tokenizer {no_tok}: no tokenizer.json"),
        (sft(packed_dir, llama2_tokenizer_dir, tmp_path / "r", no_tok), f"{no_tok}: no config.json"),
    ]
    for result, where in cases:
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and where in lines[0], result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_zero_max_steps_is_refused(packed_dir, llama2_tokenizer_dir, tmp_path):
    result = sft(packed_dir, llama2_tokenizer_dir, tmp_path / "r", TINY_CONFIG, "--max-steps", 0)
    assert result.exit_code == 2 and "0 is not a step count" in result.output


def test_deepspeed_launcher_rank_option_before_the_subcommand_is_accepted():
    # `deepspeed ... $(which trainers) sft ...` runs `trainers --local_rank=0 sft ...`
    result = invoke("--local_rank=0", "sft", "--help")
    assert result.exit_code == 0 and "--local_rank" not in result.output


def test_only_rank_zero_judges_the_output_folder(tmp_path):
    from trainers.run import RunError, RunOptions, prepare_output

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}")  # rank 0 of this very run got here first
    opts = RunOptions(mode="sft", data="d", model="m", tokenizer="t", output=str(out))
    assert prepare_output(opts, rank0=False) == out
    with pytest.raises(RunError, match="holds an earlier run"):
        prepare_output(opts, rank0=True)
