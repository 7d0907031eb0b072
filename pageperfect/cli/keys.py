"""`pageperfect keys`: make, list and revoke API keys (stored as SHA-256 hashes in Postgres)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional
from collections.abc import AsyncIterator

import typer
from rich.console import Console
from rich.table import Table

from pageperfect.cli.common import settings
from pageperfect.runtime.backends import database
from pageperfect.services import apikeys

keys_app = typer.Typer(
    help="API keys: create (shown once), list, revoke. Uses DATABASE_URL, else the embedded Postgres in the data dir.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

DATA_DIR = typer.Option(None, "--data-dir", help="The data dir of `pageperfect up` [env PAGEPERFECT_DATA_DIR]")


@asynccontextmanager
async def _database(data_dir: Optional[Path]) -> AsyncIterator[object]:
    from db.migrate import migrate_dsn
    from db.pool import create_pool

    # DATABASE_URL, else the embedded Postgres `pageperfect up` runs there (joined, left running),
    # else that Postgres started for this command only.
    async with database(settings(data_dir=data_dir)) as dsn:
        await migrate_dsn(dsn)
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            yield pool
        finally:
            await pool.close()


def _run(work, data_dir: Optional[Path]):
    async def run():
        async with _database(data_dir) as pool:
            return await work(pool)

    return asyncio.run(run())


@keys_app.command("create")
def keys_create(
    name: str = typer.Option("", "--name", help="What the key is for, e.g. the client that uses it"),
    data_dir: Optional[Path] = DATA_DIR,
) -> None:
    """Make a key and print it once; only its hash is kept. Example: pageperfect keys create --name ci"""
    new = _run(lambda pool: apikeys.create_key(pool, name), data_dir)
    err_console.print(f"key {new.id}{f' ({new.name})' if new.name else ''} created; it is shown only now:")
    console.print(new.key, soft_wrap=True)


@keys_app.command("list")
def keys_list(data_dir: Optional[Path] = DATA_DIR) -> None:
    """The stored keys (never the keys themselves). Keys from PAGEPERFECT_API_KEYS are not listed."""
    rows = _run(apikeys.list_keys, data_dir)
    table = Table("id", "name", "starts with", "created", "revoked")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["name"],
            row["key_prefix"] + "…",
            row["created_at"].isoformat()[:19],
            row["revoked_at"].isoformat()[:19] if row["revoked_at"] else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: int = typer.Argument(..., help="The id from `pageperfect keys list`"), data_dir: Optional[Path] = DATA_DIR
) -> None:
    """Revoke a key: the API answers 403 to it from now on."""
    row = _run(lambda pool: apikeys.revoke_key(pool, key_id), data_dir)
    if row is None:
        err_console.print(f"[red]error:[/red] no key with id {key_id}")
        raise typer.Exit(1)
    label = f"key {row['id']}" + (f" ({row['name']})" if row["name"] else "")
    console.print(f"{label} revoked at {row['revoked_at'].isoformat()[:19]}")
