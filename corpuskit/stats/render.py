"""Stats as a printed table, a JSON document and a PNG histogram."""

from __future__ import annotations

from corpuskit.stats.collect import CategoryStats, CorpusStats, bin_label

TOTAL = "(all)"


def _hist(s: CategoryStats, tokens: bool):
    return s.tokens_hist if tokens else s.chars_hist


def histogram_bins(stats: CorpusStats) -> list[int]:
    """Every bin from 0 up to the largest non-empty one, so the table has no gaps."""
    h = _hist(stats.total(), stats.counted_tokens)
    return list(range(max(h) + 1)) if h else []


def to_json(stats: CorpusStats, inputs: list[str], category_field: str, default_category: str,
            tokenizer: str | None) -> dict:
    bins = histogram_bins(stats)

    def row(s: CategoryStats) -> dict:
        out = {"records": s.records, "chars": s.chars,
               "min_chars": s.min_chars or 0, "max_chars": s.max_chars,
               "mean_chars": round(s.chars / s.records, 2) if s.records else 0.0}
        if stats.counted_tokens:
            out["tokens"] = s.tokens
            out["mean_tokens"] = round(s.tokens / s.records, 2) if s.records else 0.0
        return out

    hist_of = lambda s: [_hist(s, stats.counted_tokens).get(k, 0) for k in bins]  # noqa: E731
    return {
        "inputs": inputs,
        "category_field": category_field,
        "default_category": default_category,
        "tokenizer": tokenizer,
        "categories": {n: row(s) for n, s in stats.sorted_categories()},
        "total": row(stats.total()),
        "histogram": {"unit": "tokens" if stats.counted_tokens else "chars",
                      "bins": [bin_label(k) for k in bins],
                      "counts": {n: hist_of(s) for n, s in stats.sorted_categories()}},
        "report": stats.report.to_json(),
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def to_text(stats: CorpusStats) -> str:
    tok = stats.counted_tokens
    header = ["category", "records", "chars", "mean chars"] + (["tokens", "mean tokens", "token share"] if tok else ["char share"])
    total = stats.total()
    rows = []
    for name, s in [*stats.sorted_categories(), (TOTAL, total)]:
        r = [name, f"{s.records:,}", f"{s.chars:,}", f"{s.chars / s.records:.1f}" if s.records else "-"]
        if tok:
            r += [f"{s.tokens:,}", f"{s.tokens / s.records:.1f}" if s.records else "-",
                  f"{100 * s.tokens / total.tokens:.1f}%" if total.tokens else "-"]
        else:
            r.append(f"{100 * s.chars / total.chars:.1f}%" if total.chars else "-")
        rows.append(r)
    parts = [_table(header, rows)]
    bins = histogram_bins(stats)
    if bins:
        names = [n for n, _ in stats.sorted_categories()]
        unit = "tokens" if tok else "chars"
        hrows = [[bin_label(k)] + [f"{_hist(stats.categories[n], tok).get(k, 0):,}" for n in names]
                 for k in bins]
        parts += ["", f"length histogram (records per {unit} range)", _table([unit, *names], hrows)]
    rep = stats.report
    rej = sum(rep.rejected.values())
    line = f"input {rep.input} = counted {rep.kept} + rejected {rej}"
    if rej:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(rep.rejected.items())) + ")"
    parts += ["", line]
    return "\n".join(parts) + "\n"


def length_figure(stats: CorpusStats):
    """Grouped bars per length bin on a log-scale y axis (the long tail of a corpus, a few dozen
    records, is invisible next to the thousands of the common lengths on a linear one).
    matplotlib is imported only here, with the Agg canvas (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bins = histogram_bins(stats)
    names = [n for n, _ in stats.sorted_categories()]
    fig = Figure(figsize=(max(6.0, 0.6 * len(bins) + 2), 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        h = _hist(stats.categories[name], stats.counted_tokens)
        ax.bar([k + (j - (len(names) - 1) / 2) * width for k in bins], [h.get(k, 0) for k in bins],
               width=width, label=name)
    ax.set_xticks(bins, [bin_label(k) for k in bins], rotation=45, ha="right")
    ax.set_xlabel("tokens per record" if stats.counted_tokens else "characters per record")
    ax.set_yscale("log")
    ax.set_ylabel("records (log scale)")
    ax.set_title("length histogram by category")
    if names:
        ax.legend()
    fig.tight_layout()
    return fig


def save_plot(stats: CorpusStats, path_or_file) -> None:
    """The length figure as PNG, to a path (written atomically) or an open binary file."""
    fig = length_figure(stats)
    if hasattr(path_or_file, "write"):
        fig.savefig(path_or_file, format="png", metadata={"Software": None})
        return
    with atomic_file(path_or_file, "wb") as fh:
        fig.savefig(fh, format="png", metadata={"Software": None})
