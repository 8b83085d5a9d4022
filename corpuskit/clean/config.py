"""Filter configuration: a preset (`default`, `zh`, `en`, `web`, `none`) or a YAML file.

YAML shape (every key optional; a filter left out keeps its default state: c4 off, the others on):

    words: char            # how rules count Chinese words: char (each CJK character) or jieba
    script: auto           # thresholds per record: auto (Chinese ones for mostly-CJK records), zh, en
    records: paragraphs    # paragraphs (page rules judge only page-like records) or pages (every record)
    normalize: {strip_control: true, strip_invisible: true, whitespace: true, nfkc: false}
    filters:
      length: {min_chars: 1, max_chars: 1000000}
      gopher_quality: {enabled: true, min_doc_words: 50, zh: {min_doc_words: 80}, apply_to: [pretrain]}
      c4: {enabled: false}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from corpuskit.clean.doc import RECORD_SHAPES, SCRIPTS, WORD_MODES
from corpuskit.clean.filters import FILTERS, ORDER, Filter
from corpuskit.clean.normalize import NormalizeConfig
from corpuskit.records import PIECE, PREFERENCE, PRETRAIN, SFT

PRESETS = ("default", "zh", "en", "web", "none")
KINDS = (PRETRAIN, SFT, PIECE, PREFERENCE)


class ConfigError(ValueError):
    pass


@dataclass
class CleanConfig:
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    filters: list[Filter] = field(default_factory=list)
    words: str = "char"
    script: str = "auto"
    records: str = "paragraphs"
    source: str = "default"

    def describe(self) -> dict:
        """What ran, for the report (so a result can be reproduced)."""
        return {"source": self.source, "words": self.words, "script": self.script, "records": self.records,
                "normalize": {k: getattr(self.normalize, k) for k in NormalizeConfig.__dataclass_fields__},
                "filters": {f.name: f.describe() for f in self.filters}}


DEFAULT_ON = tuple(name for name in ORDER if name != "c4")


def default_config(script: str = "auto", source: str = "default") -> CleanConfig:
    """Normalisation on; every filter but C4 on, the web-text rules for pretrain records only
    (chat turns are short and code-heavy: those rules would drop most good SFT data). Thresholds
    follow each record's script; records are paragraphs, so a one-line or short record is judged
    by the character rules (encoding, markup, boilerplate, gibberish) and not as a failed web
    page. C4 is off: its 5-sentence page minimum is for whole web pages (`web`)."""
    return CleanConfig(filters=[FILTERS[name]() for name in DEFAULT_ON], script=script, source=source)


def web_config() -> CleanConfig:
    """Every rule on, and every record judged as a web page, as datatrove's FineWeb pipeline runs them on crawled pages."""
    return CleanConfig(filters=[FILTERS[name]() for name in ORDER], records="pages", source="web")


def none_config() -> CleanConfig:
    return CleanConfig(normalize=NormalizeConfig(False, False, False, False), filters=[], source="none")


def load_config(spec: str) -> CleanConfig:
    if spec == "default":
        return default_config()
    if spec in ("zh", "en"):
        return default_config(script=spec, source=spec)
    if spec == "web":
        return web_config()
    if spec == "none":
        return none_config()
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"{spec}: not a preset ({', '.join(PRESETS)}) and no such YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{spec}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{spec}:{mark.line + 1}" if mark else spec
        raise ConfigError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from e
    try:
        cfg = config_from_dict(data)
    except (ConfigError, ValueError, TypeError) as e:
        raise ConfigError(f"{spec}: {e}") from e
    cfg.source = str(path)
    return cfg


def config_from_dict(data: dict) -> CleanConfig:
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping with keys words, script, records, normalize, filters")
    unknown = set(data) - {"words", "script", "records", "normalize", "filters"}
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {sorted(unknown)}; expected words, script, records, normalize, filters")
    words = data.get("words", "char")
    if words not in WORD_MODES:
        raise ConfigError(f"words must be one of {list(WORD_MODES)}, got {words!r}")
    script, records = data.get("script", "auto"), data.get("records", "paragraphs")
    if script not in SCRIPTS:
        raise ConfigError(f"script must be one of {list(SCRIPTS)}, got {script!r}")
    if records not in RECORD_SHAPES:
        raise ConfigError(f"records must be one of {list(RECORD_SHAPES)}, got {records!r}")
    norm = data.get("normalize") or {}
    if not isinstance(norm, dict):
        raise ConfigError(f"normalize must be a mapping of option -> true/false, got {norm!r}")
    bad = set(norm) - set(NormalizeConfig.__dataclass_fields__)
    if bad:
        raise ConfigError(f"normalize: unknown option(s) {sorted(bad)}; known: {sorted(NormalizeConfig.__dataclass_fields__)}")
    for k, v in norm.items():
        if not isinstance(v, bool):
            raise ConfigError(f"normalize.{k} must be true or false, got {v!r}")
    given = data.get("filters") or {}
    if not isinstance(given, dict):
        raise ConfigError("filters must be a mapping of filter name -> options")
    bad = set(given) - set(FILTERS)
    if bad:
        raise ConfigError(f"filters: unknown filter(s) {sorted(bad)}; known: {list(ORDER)}")
    filters = []
    for name in ORDER:
        opts = given.get(name) or {}
        if not isinstance(opts, dict):
            raise ConfigError(f"filters.{name} must be a mapping of options, got {opts!r}")
        opts = dict(opts)
        enabled = opts.pop("enabled", name in DEFAULT_ON)  # a filter left out keeps its default state
        if not isinstance(enabled, bool):
            raise ConfigError(f"filters.{name}.enabled must be true or false, got {enabled!r}")
        if not enabled:
            continue
        zh = opts.pop("zh", None)
        if zh is not None and not isinstance(zh, dict):
            raise ConfigError(f"filters.{name}.zh must be a mapping of options for Chinese records, got {zh!r}")
        apply_to = opts.pop("apply_to", None)
        if apply_to is not None and (not isinstance(apply_to, list) or set(apply_to) - set(KINDS)):
            raise ConfigError(f"filters.{name}.apply_to must be a list of {list(KINDS)}")
        try:
            filters.append(FILTERS[name](apply_to=apply_to, zh=zh, **opts))
        except ValueError as e:
            raise ConfigError(str(e)) from e
    return CleanConfig(normalize=NormalizeConfig(**norm), filters=filters, words=words, script=script, records=records)
