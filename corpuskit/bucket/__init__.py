"""Category-balanced buckets (Colossal-LLaMA-2 style): every bucket holds every category in its
global proportion, so any stretch of training sees the intended mixture.

Pipeline: `spool` (pass 1: stream inputs once, count categories, keep byte offsets), `plan`
(numpy permutations of record indices per category -> exactly N bins), `write` (pass 2: route
spooled lines into bucket files by offset). Texts are never held in memory, only indices.
"""

from corpuskit.bucket.plan import BucketPlan, bin_sizes, plan_buckets
from corpuskit.bucket.weights import parse_weights

__all__ = ["BucketPlan", "bin_sizes", "plan_buckets", "parse_weights"]
