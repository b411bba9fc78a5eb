"""A throwaway PostgreSQL cluster for the end-to-end tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.net import free_port

if TYPE_CHECKING:
    import psycopg


SERVER_ROOT = Path("/usr/lib/postgresql")
SERVER_GLOB = "*/bin/initdb"
HOW_TO_RUN = (
    "PostgreSQL server binaries were not found ({}). Install PostgreSQL 15 "
    "(apt-get install postgresql-15) or set PG_BIN to its bin folder to run the "
    "end-to-end tests."
)


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server can be started on this machine."""


def _bin_dir() -> Path:
    if configured := os.environ.get("PG_BIN"):
        return Path(configured)
    found = sorted(SERVER_ROOT.glob(SERVER_GLOB))
    if not found:
        raise PostgresUnavailableError(HOW_TO_RUN.format(SERVER_ROOT / SERVER_GLOB))
    return Path(found[-1]).parent


@dataclass
class Cluster:
    """A running cluster, reachable on 127.0.0.1 as `postgres` without password."""

    port: int
    root: Path
    bin_dir: Path

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        import psycopg  # noqa: PLC0415  # only the end-to-end tests need a driver

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
        )

    def create_database(self, name: str, timezone: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(f"ALTER DATABASE \"{name}\" SET timezone TO '{timezone}'")

    def stop(self) -> None:
        _run_as_postgres(
            [
                str(self.bin_dir / "pg_ctl"),
                "stop",
                "-D",
                str(self.root / "data"),
                "-m",
                "immediate",
                "-w",
            ],
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as_postgres(argv: list[str], *, check: bool = True) -> None:
    # PostgreSQL refuses to run as root.
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=check, capture_output=True, text=True, timeout=120)


def start_cluster() -> Cluster:
    """Create and start a cluster in a temporary folder, on a free port."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="tap-filestore-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    cluster = Cluster(port, root, bin_dir)
    try:
        _run_as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        _run_as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(root / "data"),
                "-w",
                "-l",
                str(root / "server.log"),
                "-o",
                f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
            ]
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        log = root / "server.log"
        detail = log.read_text() if log.exists() else getattr(exc, "stderr", "")
        cluster.stop()
        msg = f"PostgreSQL did not start: {exc}\n{detail}"
        raise PostgresUnavailableError(msg) from exc
    return cluster
