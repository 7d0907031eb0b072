"""`python -m bench [--quick] [--only NAME[,NAME]]`: run the benchmarks, candidates and baselines side by side.

A benchmark that misses its target says MISS and the run goes on; only a crash
(or a benchmark running past its time limit) makes the exit code non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import platform
import sys
import time
import traceback

from bench import BENCHMARKS


def _machine() -> str:
    import numpy as np

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}, numpy {np.__version__}"


def _load() -> str:
    """Other work on the machine skews every figure: shown at the start and the end of a run."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run_all(names: list[str], quick: bool) -> list[str]:
    """Runs the benchmarks in order; returns the names of those that crashed."""
    from bench.stack import Stack

    crashed: list[str] = []
    stack: Stack | None = None
    limit = 300 if quick else 3600
    try:
        for name in names:
            try:
                module = importlib.import_module(f"bench.{name}")
                if module.NEEDS_STACK and stack is None:
                    stack = await Stack.start()
                await asyncio.wait_for(module.run(quick, stack), limit)
            except Exception:  # a crash is reported and the next benchmark still runs
                traceback.print_exc()
                print(f"CRASH {name}", flush=True)
                crashed.append(name)
    finally:
        if stack is not None:
            await stack.stop()
    return crashed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute in all")
    parser.add_argument("--only", help=f"comma-separated benchmarks to run: {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(BENCHMARKS))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    command = "python -m bench" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    print(f"{command}\nmachine: {_machine()}\nload average at start: {_load()}", flush=True)
    started = time.perf_counter()
    code = 1
    try:
        crashed = asyncio.run(run_all(names, args.quick))
        print(f"\nload average at end: {_load()}")
        print(
            f"{len(names) - len(crashed)} of {len(names)} benchmarks ran in {time.perf_counter() - started:.0f} s"
            + (f"; crashed: {', '.join(crashed)}" if crashed else ""),
            flush=True,
        )
        code = 1 if crashed else 0
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # The Temporal core can crash while the interpreter tears down; every server is already stopped.
        os._exit(code)


if __name__ == "__main__":
    main()
