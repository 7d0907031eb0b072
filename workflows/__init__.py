"""Workflow definitions. Deterministic, no I/O, no heavy imports."""
