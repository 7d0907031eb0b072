"""`pageperfect replay`: workflow histories against the current code, from files or from Temporal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from pageperfect.cli.common import console, err_console, examples, fail, finish, settings, temporal_client
from pageperfect.runtime.backends import temporal_target

replay_app = typer.Typer()


@replay_app.command(
    epilog=examples(
        "temporal workflow show --workflow-id pageperfect-page-12 --output json > h.json && pageperfect replay h.json",
        "pageperfect replay tests/histories/*.json",
        "pageperfect replay --workflow-id pageperfect-page-12",
        "pageperfect replay --all --query \"StartTime > '2026-01-01T00:00:00Z'\" --limit 500",
    )
)
def replay(
    files: Optional[list[Path]] = typer.Argument(
        None, exists=True, dir_okay=False, help="Histories from `temporal workflow show --output json`"
    ),
    workflow_id: Optional[str] = typer.Option(
        None, "--workflow-id", help="Fetch this workflow's history from Temporal"
    ),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="With --workflow-id: this run (default the latest)"),
    all_runs: bool = typer.Option(False, "--all", help="Every closed PagePerfect run Temporal still keeps"),
    query: Optional[str] = typer.Option(None, "--query", help="With --all: a further visibility filter, ANDed in"),
    limit: Optional[int] = typer.Option(
        None, "--limit", min=1, help="With --all: at most this many runs, newest first"
    ),
) -> None:
    """Replay workflow histories against the current code; exit 1 on any non-determinism.

    Uses the worker's interceptors and data converter (and payload keys, where encryption is on). Run it before deploying a workflow change: a failure means the change needs a workflow.patched branch.
    """
    from pageperfect.ops.replay import (
        HistoryFileError,
        closed_histories,
        fetch_history,
        read_history_file,
        replay_history,
        replayer,
    )

    if sum([bool(files), workflow_id is not None, all_runs]) != 1:
        fail("give history FILEs, --workflow-id ID or --all (one of them)")
    if (run_id and not workflow_id) or ((query or limit) and not all_runs):
        fail("--run-id goes with --workflow-id; --query and --limit go with --all")
    histories = []
    if files:
        try:
            histories = [read_history_file(path) for path in files]
        except HistoryFileError as err:
            fail(str(err))

    async def run() -> list:
        engine = replayer(quiet=True)
        if files:
            return [await replay_history(h, engine=engine) for h in histories]
        client = await temporal_client()
        if workflow_id:
            return [await replay_history(await fetch_history(client, workflow_id, run_id), engine=engine)]
        outcomes = []
        async for history in closed_histories(client, extra_query=query, limit=limit):
            outcomes.append(await replay_history(history, engine=engine))
        return outcomes

    try:
        outcomes = asyncio.run(run())
    except Exception as err:  # Temporal unreachable, an unknown workflow, a bad query
        from temporalio.service import RPCError

        message = err.message if isinstance(err, RPCError) else str(err)
        if message.startswith("Failed client connect"):
            message = f"Temporal at {temporal_target(settings()).address} did not answer; is it running?"
        err_console.print(f"error: {message.splitlines()[0] if message else type(err).__name__}", markup=False)
        finish(1)
    failed = [o for o in outcomes if not o.ok]
    for outcome in outcomes:
        which = f"{outcome.workflow_id} {outcome.run_id or ''}".strip()
        if outcome.ok:
            console.print(f"ok                 {which}", markup=False)
        else:
            label = "NON-DETERMINISTIC " if outcome.nondeterministic else "REPLAY FAILED     "
            console.print(Text(f"{label} {which}: {outcome.error}", style="red"))
    if not outcomes:
        console.print("no closed PagePerfect runs matched", markup=False)
    console.print(f"{len(outcomes)} replayed, {len(failed)} failed", markup=False)
    finish(1 if failed else 0)
