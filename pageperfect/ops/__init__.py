"""Operator tools: the whole stack in one process (`up`), workflow replay, retention (`prune`)."""
