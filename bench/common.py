"""How every benchmark reports: figures as indented lines, then one RATIO line per target."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence


def title(text: str) -> None:
    print(f"\n== {text}", flush=True)


def figure(label: str, value: object) -> None:
    print(f"  {label}: {value}", flush=True)


def ratio(name: str, value: float, target: str, passed: bool) -> None:
    """The line a benchmark ends with: `RATIO <name>: <value> (target <target>) PASS|MISS`.

    A miss is reported, never raised: only a crash fails `python -m bench`.
    """
    shown = f"{value:.3g}" if math.isfinite(value) else str(value)
    print(f"RATIO {name}: {shown} (target {target}) {'PASS' if passed else 'MISS'}", flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank: an observed value, never an interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def warn(text: str) -> None:
    print(f"  note: {text}", file=sys.stdout, flush=True)


def cores_used(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """CPU seconds per party over a run, divided by its wall time: how many cores each kept busy."""
    parts = [
        f"{name} {(after[name] - before[name]) / seconds:.2f}"
        for name in after
        if after[name] - before[name] > 0.005 * seconds
    ]
    return ", ".join(parts) + f" (of {os.cpu_count()} cores)"
