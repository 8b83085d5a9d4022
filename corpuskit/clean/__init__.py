"""`corpuskit clean`: normalisation, quality filters, exact and MinHash near-duplicate removal.

Every input record ends up in `clean.jsonl` or in `rejected.jsonl` with a reason, and the report
checks `input == kept + rejected`.
"""
