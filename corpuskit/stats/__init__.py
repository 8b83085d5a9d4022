"""Corpus statistics per category (records, characters, tokens, length histogram), so users can
choose mixture weights before `corpuskit bucket`."""

from corpuskit.stats.collect import CategoryStats, CorpusStats, collect_stats, length_bin, bin_label

__all__ = ["CategoryStats", "CorpusStats", "collect_stats", "length_bin", "bin_label"]
