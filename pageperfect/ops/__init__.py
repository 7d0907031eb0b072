"""Operator tools: the whole stack in one process (`up`) and workflow replay."""
