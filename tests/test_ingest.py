"""The reader layer on real samples and on the bad inputs the issue lists (exact counts and lines).

Files built on the fly re-use real text from tests/data (reviews, ShareGPT records) and only add
the defect under test (a bad byte, a BOM, CRLF, a cut, a stray quote).
"""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

import corpuskit.ingest.readers as readers
from corpuskit.ingest import InputError, expand_inputs, iter_records, read_raw
from corpuskit.records import Record, Rejected


def items(path, encoding="utf-8"):
    return [(i.origin.line, i.value if i.error is None else "ERROR: " + i.error)
            for i in readers.read_file(str(path), encoding)]


def review_lines(data_dir, n):
    return (data_dir / "reviews_pos_head.txt").read_text(encoding="utf-8").splitlines()[:n]


# --- JSON arrays -------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [29, 4096])
def test_json_array_same_records_at_any_chunk_boundary(data_dir, monkeypatch, chunk):
    sample = data_dir / "sharegpt_sample.json"
    text = sample.read_text(encoding="utf-8")
    starts = [no for no, line in enumerate(text.splitlines(), 1) if line == "  {"]  # pretty-printed: 2-space indent
    monkeypatch.setattr(readers, "_CHUNK", chunk)
    got = items(sample)
    assert [v for _, v in got] == json.loads(text)
    assert [line for line, _ in got] == starts
    assert len(got) == 67 and starts[:3] == [2, 55, 68]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1 << 20])
def test_truncated_array_yields_complete_records_then_one_error(data_dir, monkeypatch, chunk):
    monkeypatch.setattr(readers, "_CHUNK", chunk)
    got = items(data_dir / "sharegpt_truncated_tail.json")
    assert [line for line, _ in got] == [2, 23, 44]
    assert all(isinstance(v, dict) for _, v in got[:2])
    assert got[2][1] == ("ERROR: JSON array cut off mid-record: the record starting at line 44 "
                         "is incomplete at end of file (line 69)")


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_invalid_utf8_in_json_array_names_the_line_and_reading_goes_on(tmp_path, data_dir, monkeypatch, chunk):
    a, b, c = review_lines(data_dir, 3)
    raw = ("[\n" + json.dumps({"text": a}, ensure_ascii=False) + ",\n{\n  \"text\":\n  \"@BAD@"
           + b + "\"},\n" + json.dumps({"text": c}, ensure_ascii=False) + "\n]\n").encode("utf-8")
    raw = raw.replace(b"@BAD@", b"\xff\xfe")  # two bad bytes on line 5
    path = tmp_path / "bad.json"
    path.write_bytes(raw)
    monkeypatch.setattr(readers, "_CHUNK", chunk)
    got = items(path)
    assert got[0] == (2, {"text": a})
    assert got[1] == (5, "ERROR: invalid utf-8 byte in the record starting at line 3 (b'\\xff'); "
                         "pass --encoding if the file is not utf-8")
    assert got[2] == (6, {"text": c})
    assert len(got) == 3


@pytest.mark.parametrize("chunk", [1, 2, 1 << 20])
def test_json_array_with_bom_and_crlf(tmp_path, data_dir, monkeypatch, chunk):
    lines = review_lines(data_dir, 2)
    body = "[\r\n" + ",\r\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in lines) + "\r\n]\r\n"
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    monkeypatch.setattr(readers, "_CHUNK", chunk)
    assert items(path) == [(2, {"text": lines[0]}), (3, {"text": lines[1]})]


def test_json_array_syntax_errors_are_items_with_lines(tmp_path):
    path = tmp_path / "syntax.json"
    path.write_text('[{"text": "a"},\n  nope,\n{"text": [1, 2},\n,\n{"text": "b"},\n]', encoding="utf-8")
    assert items(path) == [
        (1, {"text": "a"}),
        (2, "ERROR: invalid JSON at column 1: Expecting value"),
        (3, "ERROR: invalid JSON at column 15: Expecting ',' delimiter"),
        (4, "ERROR: missing record between two commas"),
        (5, {"text": "b"}),
        (6, "ERROR: trailing comma before ']' (no record after it)"),
    ]
    path.write_text('[{"text": "a"}\n{"text": "b"}]', encoding="utf-8")
    assert items(path) == [(1, {"text": "a"}), (2, "ERROR: expected ',' or ']' after the record ending at line 1, "
                                                  "found '{'; the rest of the file was not read")]
    path.write_text('[{"text": "a"}]\n[]', encoding="utf-8")
    assert items(path)[1] == (2, "ERROR: unexpected data after the closing ']' of the JSON array; "
                                 "a .json file must hold exactly one array")


@pytest.mark.parametrize("content,message", [
    (b"", "empty file: expected a JSON array of records"),
    (b"\n \r\n", "empty file: expected a JSON array of records"),
    (b'{"text": "x"}', "top-level JSON value is not an array"),
])
def test_json_file_level_errors(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as e:
        list(readers.read_file(str(path)))
    assert message in str(e.value) and str(path) in str(e.value)


# --- jsonl / txt -------------------------------------------------------------------------------

def test_jsonl_bom_crlf_blank_lines_and_bad_lines(tmp_path, data_dir):
    a, b = review_lines(data_dir, 2)
    raw = (b"\xef\xbb\xbf" + json.dumps({"text": a}, ensure_ascii=False).encode() + b"\r\n\r\n"
           + b'{"text": "cut\r\n' + json.dumps({"text": b}, ensure_ascii=False).encode() + b"\r\n  \r\n")
    path = tmp_path / "x.jsonl"
    path.write_bytes(raw)
    assert items(path) == [(1, {"text": a}),
                           (3, "ERROR: invalid JSON at column 14: Invalid control character at"),
                           (4, {"text": b})]


def test_gbk_needs_encoding_and_errors_name_each_line(tmp_path, data_dir):
    lines = review_lines(data_dir, 3)
    path = tmp_path / "gbk.jsonl"
    path.write_bytes("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in lines).encode("gbk"))
    assert items(path, "gbk") == [(i, {"text": t}) for i, t in enumerate(lines, 1)]
    got = items(path)
    assert [line for line, _ in got] == [1, 2, 3]
    assert all(v.startswith("ERROR: invalid utf-8 bytes at byte 10 of the line") and "pass --encoding" in v
               for _, v in got)


def test_txt_lines_are_records_and_blank_lines_are_not(data_dir):
    got = items(data_dir / "peoples_daily_199801_head.txt")
    assert len(got) == 400 and got[0][0] == 1 and got[-1][0] == 400
    assert got[0][1]["text"].startswith("迈向/v  充满/v  希望/n")


def test_empty_and_blank_only_jsonl_have_no_records(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.jsonl").write_bytes(b"\n  \r\n\t\n")
    assert items(tmp_path / "empty.jsonl") == [] and items(tmp_path / "blank.jsonl") == []


# --- CSV ---------------------------------------------------------------------------------------

def test_csv_quoted_newlines_bad_rows_and_unbalanced_quote(tmp_path, data_dir):
    a, b, c, d = review_lines(data_dir, 4)
    path = tmp_path / "rows.csv"
    path.write_bytes(
        ("\ufefftext,category\r\n"            # 1 header (BOM, CRLF)
         f'"{a}\r\nsecond line, with comma and ""quotes""",pos\r\n'  # 2-3 one row
         "\r\n"                               # 4 blank
         f"{b},pos\r\n"                       # 5
         f'"{c}"x,pos\r\n'                    # 6 junk after closing quote
         f"{d},pos,extra\r\n"                 # 7 too many fields
         "fine,neg\r\n"                       # 8
         f'"{a},pos\r\n{b},neg\r\n').encode("utf-8"))  # 9-10 quote never closed
    got = items(path)
    assert got[0] == (2, {"text": f'{a}\r\nsecond line, with comma and "quotes"', "category": "pos"})
    assert got[1] == (5, {"text": b, "category": "pos"})
    assert got[2] == (6, "ERROR: malformed CSV row (starts at line 6, read up to line 6): ',' expected after '\"'")
    assert got[3] == (7, "ERROR: row has 3 fields, header has 2")
    assert got[4] == (8, {"text": "fine", "category": "neg"})
    assert got[5] == (9, "ERROR: malformed CSV row (starts at line 9, read up to line 10): unexpected end of data")
    assert len(got) == 6


def test_csv_invalid_utf8_row_is_an_error_and_later_rows_are_read(tmp_path, data_dir):
    a, b = review_lines(data_dir, 2)
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"text\tlabel\n" + a.encode("gbk") + b"\tpos\n" + b.encode("utf-8") + b"\tpos\n")
    got = items(path)
    assert got[0][0] == 2 and got[0][1].startswith("ERROR: invalid utf-8 bytes at byte 0 of the line")
    assert got[1] == (3, {"text": b, "label": "pos"})


def test_csv_bad_header_is_a_file_error(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("text,text\nx,y\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"h.csv:1: CSV header has empty or repeated column names"):
        items(path)


# --- gz, directories, globs --------------------------------------------------------------------

def test_gz_reads_the_same_and_truncated_gz_is_an_error_item(tmp_path, data_dir):
    sample = data_dir / "sharegpt_sample.json"
    gz = tmp_path / "sample.json.gz"
    gz.write_bytes(gzip.compress(sample.read_bytes()))
    assert items(gz) == items(sample)
    cut = tmp_path / "cut.jsonl.gz"
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in json.loads(sample.read_text(encoding="utf-8")))
    blob = gzip.compress(body.encode("utf-8"))
    cut.write_bytes(blob[: len(blob) // 2])
    got = items(cut)
    assert got[-1][1].startswith("ERROR: cannot read the file past this line: Compressed file ended")
    assert all(isinstance(v, dict) for _, v in got[:-1])


def test_directories_and_globs_expand_sorted_skipping_hidden(tmp_path, data_dir):
    for name in ["b/2.jsonl", "a.jsonl", "b/1.csv.gz", ".git/x.jsonl", "notes.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert expand_inputs([tmp_path]) == [str(tmp_path / p) for p in ["a.jsonl", "b/1.csv.gz", "b/2.jsonl"]]
    assert expand_inputs([str(tmp_path / "*")]) == [str(tmp_path / p) for p in ["a.jsonl", "b/1.csv.gz", "b/2.jsonl", "notes.md"]]
    with pytest.raises(InputError, match="glob matched no files"):
        expand_inputs([str(tmp_path / "*.parquet")])
    with pytest.raises(InputError, match="no such file or directory"):
        expand_inputs([str(tmp_path / "missing.jsonl")])
    with pytest.raises(InputError, match="unsupported file type '.md'"):
        list(read_raw([str(tmp_path / "notes.md")]))


def test_iter_records_every_input_is_a_record_or_a_reject(data_dir, tmp_path):
    shutil.copy(data_dir / "sharegpt_truncated_tail.json", tmp_path / "tail.json")
    out = list(iter_records([data_dir / "sharegpt_sample.json", tmp_path / "tail.json"], to="sft"))
    kept = [r for r in out if isinstance(r, Record)]
    rejected = [r for r in out if isinstance(r, Rejected)]
    assert (len(out), len(kept), len(rejected)) == (70, 47, 23)
    assert rejected[-1].reason == "parse_error" and rejected[-1].origin.line == 44
    assert all(r.kind == "sft" for r in kept)


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_lone_surrogate_escape_is_an_error_item_and_pairs_pass(tmp_path, data_dir, monkeypatch, chunk):
    """`\\ud800` alone parses in Python's json but is not Unicode: no UTF-8 output could hold it."""
    a, b, c = review_lines(data_dir, 3)
    paired = json.dumps({"text": a + "😀"})  # ensure_ascii: the emoji is the pair \ud83d\ude00
    lone = json.dumps({"text": b}).replace('"}', '\\udc00"}')
    assert "\\ud83d\\ude00" in paired
    good_c = json.dumps({"text": c}, ensure_ascii=False)
    (tmp_path / "s.jsonl").write_text(f"{paired}\n{lone}\n{good_c}\n", encoding="utf-8")
    (tmp_path / "s.json").write_text(f"[\n{paired},\n{lone},\n{good_c}\n]\n", encoding="utf-8")
    monkeypatch.setattr(readers, "_CHUNK", chunk)
    message = "ERROR: invalid JSON string: lone surrogate escape \\udc00 is not a Unicode character"
    assert items(tmp_path / "s.jsonl") == [(1, {"text": a + "😀"}), (2, message), (3, {"text": c})]
    assert items(tmp_path / "s.json") == [(2, {"text": a + "😀"}), (3, message), (4, {"text": c})]


def test_stage_output_folder_contributes_only_its_data_files(tmp_path):
    from corpuskit.ingest import InputError, expand_inputs

    folder = tmp_path / "buckets"
    folder.mkdir()
    for name in ("bucket-00001.jsonl", "bucket-00000.jsonl", "rejected.jsonl"):
        (folder / name).write_text('{"text": "x"}\n', encoding="utf-8")
    (folder / "manifest.json").write_text("{}", encoding="utf-8")
    (folder / "report.json").write_text('{"command": "bucket"}', encoding="utf-8")
    assert expand_inputs([folder]) == [str(folder / "bucket-00000.jsonl"), str(folder / "bucket-00001.jsonl")]
    assert expand_inputs([str(tmp_path / "buck*")]) == expand_inputs([folder])
    (folder / "report.json").write_text('{"command": "render"}', encoding="utf-8")
    with pytest.raises(InputError, match="holds no corpus records"):
        expand_inputs([folder])
