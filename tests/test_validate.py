"""`corpuskit validate` through the CLI: exact counts, lines and messages on real records, each bad
input from the issue, the JSON output, the shipped schemas, the pre-commit hook and the CI example."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import fastjsonschema
import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from corpuskit.cli import main
from corpuskit.validate import KindChecker, load_schema

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def validate(*args):
    return CliRunner().invoke(main, ["validate", *map(str, args)], catch_exceptions=False)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chats(tmp_path_factory, data_dir) -> Path:
    """Canonical SFT records made from the real ShareGPT sample by `corpuskit convert`."""
    out = tmp_path_factory.mktemp("validate") / "chats.jsonl"
    res = CliRunner().invoke(main, ["convert", str(data_dir / "sharegpt_sample.json"), "-o", str(out), "--to", "sft"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def chat_records(chats) -> list[dict]:
    return [json.loads(line) for line in chats.read_text(encoding="utf-8").split("\n")[:-1]]


def test_converted_sample_is_valid(chats):
    res = validate(chats, "--schema", "sft")
    assert res.exit_code == 0
    assert res.output == f"{chats}: OK: 45 records, 45 valid, 0 invalid\n"


def test_bad_sft_records_exact_lines_and_messages(tmp_path, chat_records):
    r = chat_records[0]
    user, assistant = r["messages"][0], r["messages"][1]
    path = write_jsonl(tmp_path / "bad.jsonl", [
        r,                                                                        # 1 ok
        {**r, "messages": [user, {"role": "bot", "content": assistant["content"]}]},   # 2 unknown role
        {**r, "messages": [user, user, assistant]},                               # 3 non-alternating
        {**r, "messages": [user, {"role": "assistant", "content": " \n"}]},       # 4 empty assistant
        {**r, "messages": [user, {"role": "assistant", "content": 7}]},           # 5 wrong type
        {**r, "id": 12},                                                          # 6 wrong type
        {**r, "messages": [assistant, user]},                                     # 7 starts with assistant
        {**r, "messages": [user, assistant, user]},                               # 8 ends with user
        {"text": user["content"]},                                                # 9 other kind
    ])
    res = validate(path, "--schema", "sft")
    assert res.exit_code == 1
    p = str(path)
    assert res.output.splitlines() == [
        f"{p}:2: $.messages[1].role: \"bot\" is not one of \"system\", \"user\", \"assistant\"",
        f"{p}:3: $.messages: turn 1 is user, expected assistant (turns must alternate user/assistant, "
        "starting with user) [non_alternating]",
        f"{p}:4: $.messages[1].content: must contain a non-whitespace character",
        f"{p}:5: $.messages[1].content: must be of type string, got integer",
        f"{p}:6: $.id: must be of type string, got integer",
        f"{p}:7: $.messages: turn 0 is assistant, expected user (turns must alternate user/assistant, "
        "starting with user) [non_alternating]",
        f"{p}:8: $.messages: last turn is user; a conversation must end with an assistant turn [ends_with_user]",
        f"{p}:9: $: 'messages' is a required property",
        f"{p}: FAILED: 9 records, 1 valid, 8 invalid",
    ]


def test_auto_schema_per_record_and_json_format(tmp_path, chat_records, data_dir):
    news = (data_dir / "peoples_daily_199801_head.txt").read_text(encoding="utf-8").splitlines()[0]
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        chat_records[1], {"text": news}, {"source": "", "target": news, "category": "news"}, {"piece": "▁人民"},
        {"piece": ""}, {"text": news, "messages": chat_records[1]["messages"]}, {"conversations": []}, [1, 2],
    ])
    res = validate(path, "--format", "json", "--max-errors", "3")
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "path": str(path), "records": 8, "valid": 4, "invalid": 4,
        "errors": [
            {"line": 5, "message": "$.piece: must be at least 1 character(s) long (checked as piece)"},
            {"line": 6, "message": "$: must not have 'text' (keys of another record kind or form) (checked as sft)"},
            {"line": 7, "message": "unknown record shape: no 'messages' (sft), 'piece' (piece), 'text' or "
                                   "'source'+'target' (pretrain); keys ['conversations']; `corpuskit convert` "
                                   "turns ShareGPT/Alpaca/... records into canonical ones"},
        ]}  # the 4th error (line 8, not an object) is counted but not listed: --max-errors 3


def test_truncated_array_and_raw_sharegpt(data_dir, chat_records, tmp_path):
    cut = tmp_path / "cut.json"
    text = json.dumps(chat_records[:3], ensure_ascii=False, indent=1)
    cut.write_text(text[: len(text) - 40], encoding="utf-8")
    starts = [no for no, line in enumerate(text.splitlines(), 1) if line == " {"]
    res = validate(cut, "--format", "json")
    out = json.loads(res.output)
    assert res.exit_code == 1
    assert (out["records"], out["valid"], out["invalid"]) == (3, 2, 1)
    assert out["errors"][0]["line"] == starts[2]
    assert out["errors"][0]["message"].startswith(f"JSON array cut off mid-record: the record starting at line {starts[2]}")
    res = validate(data_dir / "sharegpt_truncated_tail.json", "--max-errors", "0")
    assert res.output.splitlines()[-1] == f"{data_dir / 'sharegpt_truncated_tail.json'}: FAILED: 3 records, 0 valid, 3 invalid (first 0 errors shown)"


def test_encoding_problems_name_the_line(tmp_path, data_dir):
    reviews = (data_dir / "reviews_neg_head.txt").read_text(encoding="utf-8").splitlines()[:4]
    body = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in reviews)
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes(body.encode("gbk"))
    assert validate(gbk, "--encoding", "gbk").output == f"{gbk}: OK: 4 records, 4 valid, 0 invalid\n"
    res = validate(gbk, "--format", "json")
    out = json.loads(res.output)
    assert (out["records"], out["invalid"]) == (4, 4)
    assert [e["line"] for e in out["errors"]] == [1, 2, 3, 4]
    one_bad = tmp_path / "one_bad.jsonl.gz"
    raw = body.encode("utf-8").split(b"\n")
    raw[2] = raw[2].replace(b'{"text": "', b'{"text": "\xc0', 1)
    one_bad.write_bytes(gzip.compress(b"\n".join(raw)))
    res = validate(one_bad)
    assert res.output.splitlines() == [
        f"{one_bad}:3: invalid utf-8 bytes at byte 10 of the line ({raw[2][10:14]!r}); "
        "pass --encoding if the file is not utf-8",
        f"{one_bad}: FAILED: 4 records, 3 valid, 1 invalid"]
    bom = tmp_path / "bom_crlf.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode("utf-8"))
    assert validate(bom).exit_code == 0


def test_csv_rows_quoted_newlines_and_unbalanced_quote(tmp_path, data_dir):
    a, b, c = (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines()[:3]
    path = tmp_path / "docs.csv"
    path.write_text(f'text,category\n"{a}\nstill the first row, with a comma",pos\n{b},pos\n"{c},pos\n', encoding="utf-8")
    res = validate(path)
    assert res.output.splitlines() == [
        f"{path}:5: malformed CSV row (starts at line 5, read up to line 5): unexpected end of data",
        f"{path}: FAILED: 3 records, 2 valid, 1 invalid"]


@pytest.mark.parametrize("name,content,message", [
    ("empty.jsonl", b"", "empty file (0 bytes): a data file must hold at least one record"),
    ("blank.jsonl", b"\n   \r\n\n", "no records: the file has only blank lines"),
    ("empty.json", b"", "empty file: expected a JSON array of records"),
    ("none.json", b"[\n]\n", "no records: the JSON array is empty"),
    ("header.csv", b"text\n\n", "no records: the file has only a header row and/or blank lines"),
])
def test_empty_and_blank_files_are_file_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    res = validate(path)
    assert res.exit_code == 1
    assert res.output.splitlines() == [f"{path}: {message}", f"{path}: FAILED: 0 records, 0 valid, 0 invalid"]
    out = json.loads(validate(path, "--format", "json").output)
    assert out == {"path": str(path), "records": 0, "valid": 0, "invalid": 0,
                   "errors": [{"line": None, "message": message}]}


def test_many_files_order_workers_and_missing_input(tmp_path, chats):
    (tmp_path / "d").mkdir()
    good = write_jsonl(tmp_path / "d" / "b.jsonl", [{"piece": "中文"}])
    bad = write_jsonl(tmp_path / "d" / "a.jsonl", [{"piece": 3}])
    args = [tmp_path / "d", chats, tmp_path / "missing.jsonl"]
    one = validate(*args, "--format", "json")
    two = validate(*args, "--format", "json", "--workers", "2")
    assert one.output == two.output and one.exit_code == two.exit_code == 1
    assert [json.loads(line)["path"] for line in one.output.splitlines()] == [
        str(bad), str(good), str(chats), str(tmp_path / "missing.jsonl")]
    text = validate(*args).output.splitlines()
    assert text[-2] == f"{tmp_path / 'missing.jsonl'}: FAILED: 0 records, 0 valid, 0 invalid"
    assert text[-1] == "validate: FAILED: 4 files, 47 records, 1 invalid"


def test_validate_does_not_import_heavy_libraries(chats):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom corpuskit.cli import main\n"
            f"r = CliRunner().invoke(main, ['validate', {str(chats)!r}])\nassert r.exit_code == 0, r.output\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'datasets', 'torch', 'jsonschema'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # jsonschema too: only loaded to explain an invalid record


def test_schemas_are_2020_12_and_both_validators_agree(chat_records):
    records = chat_records + [
        {"messages": chat_records[0]["messages"][:1]}, {"messages": [{"role": "user", "content": ""}] * 2},
        {"messages": [], "id": "x"}, {"text": "a"}, {"text": " "}, {"source": "", "target": "t"},
        {"source": "s"}, {"text": "a", "target": "b"}, {"text": "a", "source": "news"}, {"piece": "▁"}, {"piece": ""}, {"piece": "a", "text": "b"},
        {"messages": [{"role": "user", "content": "a", "name": "x"}, {"role": "assistant", "content": "b"}]},
    ]
    for kind in ("sft", "pretrain", "piece"):
        schema = load_schema(kind)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
        fast, precise = fastjsonschema.compile(schema), Draft202012Validator(schema)
        for rec in records:
            try:
                fast(rec)
                fast_ok = True
            except fastjsonschema.JsonSchemaValueException:
                fast_ok = False
            assert fast_ok == precise.is_valid(rec), (kind, rec)
    assert KindChecker("pretrain")({"text": " "}) == "$.text: must contain a non-whitespace character"


def test_pre_commit_hook_runs_as_pre_commit_would(tmp_path, chats):
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    assert set(hooks) == {"corpuskit-validate", "corpuskit-validate-sft"}
    hook = hooks["corpuskit-validate"]
    files_re = re.compile(hook["files"])
    assert all(files_re.search(f) for f in ["a.jsonl", "b.json", "c.csv", "d.tsv.gz"])
    assert not any(files_re.search(f) for f in ["README.md", "x.jsonl.bak"])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    argv = shlex.split(hook["entry"])
    assert argv[:2] == ["corpuskit", "validate"]
    cmd = [str(BIN / "corpuskit"), *argv[1:]]
    assert subprocess.run([*cmd, str(chats)], capture_output=True).returncode == 0
    proc = subprocess.run([*cmd, str(chats), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"{bad}:1: $.messages: must have at least 2 items, has 1 (checked as sft)" in proc.stdout


def _workflow_script() -> tuple[dict, str]:
    doc = (ROOT / "docs" / "data-prs.md").read_text(encoding="utf-8")
    block = re.search(r"## GitHub Actions.*?```yaml\n(.*?)```", doc, re.S).group(1)
    workflow = yaml.safe_load(block)
    step = next(s for s in workflow["jobs"]["validate"]["steps"] if "corpuskit validate" in s.get("run", ""))
    return workflow, step


def test_github_actions_example_works_in_a_scratch_repo(tmp_path, chats):
    workflow, step = _workflow_script()
    assert workflow[True]["pull_request"]["paths"] == ["data/**"]  # yaml reads the key `on` as True
    assert step["shell"] == "bash" and step["env"]["BASE_REF"] == "${{ github.base_ref }}"
    repo = tmp_path / "data-repo"
    (repo / "data").mkdir(parents=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "data" / "old.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    subprocess.run([*git, "update-ref", "refs/remotes/origin/main", "HEAD"], check=True)
    env = {**os.environ, "BASE_REF": "main", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("GITHUB_STEP_SUMMARY", None)

    def pr(files: dict[str, bytes]) -> subprocess.CompletedProcess:
        for name, content in files.items():
            (repo / name).write_bytes(content)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", "pr"], check=True)
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                              cwd=repo, env=env, capture_output=True, text=True)

    ok = pr({"data/chats.jsonl": chats.read_bytes(), "data/README.md": b"# notes\n"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == "data/chats.jsonl: OK: 45 records, 45 valid, 0 invalid"
    bad = pr({"data/more.jsonl": b'{"text": "fine"}\n{"text": ""}\n'})
    assert bad.returncode != 0
    assert "data/more.jsonl:2: $.text: must contain a non-whitespace character (checked as pretrain)" in bad.stdout


def test_llama2_chinese_csv_turns_are_checked(tmp_path, data_dir):
    """An Atom/Llama2-Chinese CSV holds conversations in `text`: validate parses the turns as convert does."""
    pos = (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines()[:5]
    rows = [f"<s>Human: {pos[0]}\n</s><s>Assistant: {pos[1]}\n</s>",   # lines 2-4, ok
            f"<s>Human: {pos[2]}\n</s><s>Human: {pos[3]}\n</s>",       # lines 5-7, two user turns
            f"<s>Human: {pos[4]}\n</s><s>Assistant: \n</s>"]           # lines 8-10, empty assistant
    path = tmp_path / "atom.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        writer.writerows([r] for r in rows)
    gz = tmp_path / "atom.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    alternate = ("turn 1 is user, expected assistant (turns must alternate user/assistant, starting with user) "
                 "[non_alternating]")
    res = validate(path)
    assert res.exit_code == 1
    assert res.output.splitlines() == [
        f"{path}:5: $.text (Llama2-Chinese turns): {alternate} (checked as sft)",
        f"{path}:8: $.text (Llama2-Chinese turns): turn 1 (assistant) has empty content [empty_assistant] (checked as sft)",
        f"{path}: FAILED: 3 records, 1 valid, 2 invalid"]
    out = json.loads(validate(gz, "--schema", "sft", "--format", "json").output)
    assert out == {"path": str(gz), "records": 3, "valid": 1, "invalid": 2, "errors": [
        {"line": 5, "message": f"$.text (Llama2-Chinese turns): {alternate}"},
        {"line": 8, "message": "$.text (Llama2-Chinese turns): turn 1 (assistant) has empty content [empty_assistant]"}]}
    assert validate(path, "--schema", "pretrain").output == f"{path}: OK: 3 records, 3 valid, 0 invalid\n"
    conv = CliRunner().invoke(main, ["convert", str(path), "-o", str(tmp_path / "atom.jsonl")])
    assert "convert: input 3 = kept 1 + rejected 2 (empty_assistant=1, non_alternating=1)" in conv.output
