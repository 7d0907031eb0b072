"""Benchmarks: `python -m bench [--quick] [--only NAME]`. Each runs a candidate and its baseline and ends with RATIO lines."""

BENCHMARKS = (
    "clustering",
    "embedding_cost",
    "offline_embedding",
    "orchestration",
    "mirror_cost",
    "history_size",
    "intake",
    "scaling",
    "gsc_import",
    "site_stage",
)
