"""A Meltano pipeline (sandbox, tap, target-postgres) and what its table must hold."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from tap_filestore.sandbox.dataset import to_datetime
from tests.meltano_cli import meltano, spawn_meltano

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path
    from subprocess import CompletedProcess, Popen

    from tap_filestore.sandbox import Sandbox
    from tests.postgres import Cluster


@dataclass
class Pipeline:
    """One Meltano project run against one sandbox and one database."""

    cluster: Cluster
    sandbox: Sandbox
    database: str
    system_db: Path
    #: More variables for every run (e.g. the tap's batch_config).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: As shipped, BATCH files; `tap-filestore--records` for RECORD messages.
    extractor: str = "tap-filestore"

    def env(self, **overrides: str) -> dict[str, str]:
        """Return the variables that point the tap and target at this pipeline."""
        return {
            **self.extra_env,
            "TAP_FILESTORE_BASE_URL": self.sandbox.base_url,
            "TAP_FILESTORE_CLIENT_SECRET": self.sandbox.client_secret,
            # A decimal from the environment, as Meltano users set it.
            "TAP_FILESTORE_BACKOFF_FACTOR": "1.5",
            "TARGET_POSTGRES_HOST": "127.0.0.1",
            "TARGET_POSTGRES_PORT": str(self.cluster.port),
            "TARGET_POSTGRES_USER": "postgres",
            "TARGET_POSTGRES_PASSWORD": "unused-with-trust-auth",
            "TARGET_POSTGRES_DATABASE": self.database,
            **overrides,
        }

    def run(self, *args: str, **env: str) -> CompletedProcess[str]:
        """Run `meltano run [args] tap-filestore target-postgres`."""
        return meltano(
            "run",
            *args,
            self.extractor,
            "target-postgres",
            system_db=self.system_db,
            env=self.env(**env),
        )

    def start(self, *args: str) -> Popen[bytes]:
        """Start `meltano run [args] ...` in its own process group, not waiting."""
        return spawn_meltano(
            "run",
            *args,
            self.extractor,
            "target-postgres",
            system_db=self.system_db,
            env=self.env(),
        )

    def run_ok(self, *args: str, **env: str) -> CompletedProcess[str]:
        done = self.run(*args, **env)
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    def rows(self) -> list[dict[str, Any]]:
        """Read the table, date-times as instants (the columns hold UTC)."""
        with self.cluster.connect(self.database) as conn:
            cursor = conn.execute(
                "SELECT file_id, file_name,"
                " created_at AT TIME ZONE 'UTC' AS created_at,"
                " modified_at AT TIME ZONE 'UTC' AS modified_at,"
                " _sdc_deleted_at, _sdc_table_version, _sdc_sync_started_at"
                " FROM filestore.files"
            )
            assert cursor.description is not None  # a SELECT describes its columns
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def state(self) -> dict[str, Any]:
        state_id = f"sandbox:{self.extractor}-to-target-postgres"
        done = meltano("state", "get", state_id, system_db=self.system_db)
        assert done.returncode == 0, done.stderr
        return cast("dict[str, Any]", json.loads(done.stdout))

    def bookmark(self) -> str:
        files = self.state()["singer_state"]["bookmarks"]["files"]
        return cast("str", files["replication_key_value"])


def source(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """What the table must hold: every live file, date-times as instants."""

    def instant(epoch_us: int | None) -> datetime | None:
        return None if epoch_us is None else to_datetime(epoch_us)

    return {
        f.file_id: {
            "file_id": f.file_id,
            "file_name": f.file_name,
            "created_at": instant(f.created_us),
            "modified_at": instant(f.modified_us),
        }
        for f in sandbox.dataset.files()
    }


def live(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        r["file_id"]: {
            k: r[k] for k in ("file_id", "file_name", "created_at", "modified_at")
        }
        for r in rows
        if r["_sdc_deleted_at"] is None
    }


def greatest_modified_at(sandbox: Sandbox) -> datetime:
    return cast(
        "datetime",
        max(r["modified_at"] for r in source(sandbox).values() if r["modified_at"]),
    )
