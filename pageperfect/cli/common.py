"""What the commands share: the consoles, one-line errors, the settings the root options change,
the API client and the way to Temporal and Postgres (pageperfect.runtime.backends).

The command modules import this one, never pageperfect.cli.app, which puts them together: the
CLI's imports run one way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from pydantic import SecretStr
from rich.console import Console

from pageperfect.runtime import backends
from pageperfect.settings import Settings, get_settings

INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C

# Long URLs stay on one line so they can be clicked; piped output gets room for the tables.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, soft_wrap=True)  # a reason stays on one line

_overrides: dict = {}


def use(
    *,
    data_dir: Path | None = None,
    temporal_address: str | None = None,
    database_url: str | None = None,
    api_url: str | None = None,
) -> None:
    """The root options: they win over the environment for every command of this run."""
    values = dict(
        data_dir=data_dir,
        temporal_address=temporal_address,
        api_url=api_url,
        database_url=SecretStr(database_url) if database_url is not None else None,
    )
    _overrides.update({k: v for k, v in values.items() if v is not None})


def settings(**updates) -> Settings:
    """The settings of this run: the environment's, with the root options (and `updates`) applied."""
    merged = {**_overrides, **{k: v for k, v in updates.items() if v is not None}}
    return get_settings().model_copy(update=merged) if merged else get_settings()


def fail(message: str) -> NoReturn:
    from rich.markup import escape  # messages quote URLs, files and server text: never markup

    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


def finish(code: int = 0) -> NoReturn:
    """Leave without the Temporal core's interpreter-exit crash: everything is shut down already."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def examples(*lines: str) -> str:
    # Rich help rewraps text; one paragraph per example keeps them on their own lines.
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


# ---------------------------------------------------------------- the API


def api_url() -> str:
    return backends.api_url(settings())


def api() -> httpx.Client:
    from pageperfect.services.apikeys import client_key

    key = client_key(settings())  # PAGEPERFECT_API_KEY, else the key `pageperfect up` keeps in the data dir
    return httpx.Client(base_url=api_url(), timeout=30, headers={"Authorization": f"Bearer {key}"} if key else None)


def async_api() -> httpx.AsyncClient:
    """An async client with what `api()` sends (base URL, API key)."""
    with api() as sync:
        return httpx.AsyncClient(base_url=sync.base_url, headers=sync.headers, auth=sync.auth, timeout=sync.timeout)


def api_call(method: str, path: str, **kwargs) -> Any:
    try:
        with api() as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as err:
        fail(f"the API at {api_url()} did not answer ({err}); is `pageperfect up` running?")
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("message") or body.get("detail")  # a 422 has a one-line "message"
        except (ValueError, AttributeError):
            detail = response.text
        fail(f"{response.status_code}: {detail}")
    return response.json()


# ---------------------------------------------------------------- Temporal and Postgres


async def temporal_client():
    return await backends.temporal_client(settings())


async def with_backends(work):
    """work(pool, client, settings) against Postgres and Temporal, found as every command finds them."""
    from db.pool import create_pool

    run_settings = settings()
    try:
        async with backends.database(run_settings) as dsn:
            pool = await create_pool(dsn)
            try:
                client = await backends.temporal_client(run_settings)
                return await work(pool, client, run_settings)
            finally:
                await pool.close()
    except backends.BackendError as err:
        fail(str(err))


async def with_database(work):
    """work(pool) against Postgres only (DATABASE_URL, else the embedded one of the data dir); fails in one line."""
    from db.pool import create_pool

    try:
        async with backends.database(settings()) as dsn:
            pool = await create_pool(dsn, min_size=1, max_size=2)
            try:
                return await work(pool)
            finally:
                await pool.close()
    except backends.BackendError as err:
        fail(str(err))


def expected_failure(err: BaseException) -> str | None:
    """A one-line reason for what an operator meets (a server down, a refused login), None for a bug."""
    import asyncpg
    from temporalio.service import RPCError

    run_settings = settings()
    temporal = backends.temporal_target(run_settings).address
    if isinstance(err, backends.BackendError):
        return str(err)
    if isinstance(err, RPCError):
        return f"Temporal at {temporal}: {err.message}"
    if isinstance(err, RuntimeError) and str(err).startswith("Failed client connect"):
        return f"Temporal at {temporal} did not answer; is it running?"
    if isinstance(err, (asyncpg.PostgresError, asyncpg.InterfaceError)):
        return (
            f"Postgres ({backends.database_where(run_settings)}): {err}"  # asyncpg's messages never hold the password
        )
    if isinstance(err, (ConnectionError, TimeoutError, OSError)):
        return f"could not connect ({err}); is the server running? (DATABASE_URL, TEMPORAL_ADDRESS)"
    return None
