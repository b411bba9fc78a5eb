"""`meltano run tap-filestore target-postgres`, for real: Meltano and PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import pytest

from tap_filestore.sandbox import Sandbox
from tap_filestore.sandbox.dataset import to_datetime
from tests.meltano_cli import meltano, require_plugin, unavailable
from tests.postgres import Cluster, PostgresUnavailableError, start_cluster

if TYPE_CHECKING:
    from pathlib import Path
    from subprocess import CompletedProcess

STATE_ID = "sandbox:tap-filestore-to-target-postgres"
FILES = 1200


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    require_plugin("loaders", "target-postgres")
    try:
        server = start_cluster()
    except PostgresUnavailableError as exc:
        unavailable(str(exc))
    yield server
    server.stop()


@dataclass
class Pipeline:
    """One Meltano project run against one sandbox and one database."""

    cluster: Cluster
    sandbox: Sandbox
    database: str
    system_db: Path

    def run(self, *args: str, **env: str) -> CompletedProcess:
        """Run `meltano run [args] tap-filestore target-postgres`."""
        variables = {
            "TAP_FILESTORE_BASE_URL": self.sandbox.base_url,
            "TAP_FILESTORE_CLIENT_SECRET": self.sandbox.client_secret,
            "TAP_FILESTORE_BACKOFF_FACTOR": "1",
            "TARGET_POSTGRES_HOST": "127.0.0.1",
            "TARGET_POSTGRES_PORT": str(self.cluster.port),
            "TARGET_POSTGRES_USER": "postgres",
            "TARGET_POSTGRES_PASSWORD": "unused-with-trust-auth",
            "TARGET_POSTGRES_DATABASE": self.database,
            **env,
        }
        return meltano(
            "run",
            *args,
            "tap-filestore",
            "target-postgres",
            system_db=self.system_db,
            env=variables,
        )

    def run_ok(self, *args: str, **env: str) -> CompletedProcess:
        done = self.run(*args, **env)
        assert done.returncode == 0, done.stderr[-4000:]
        return done

    def rows(self) -> list[dict]:
        """Read the table, date-times as instants in the database's time zone."""
        with self.cluster.connect(self.database) as conn:
            cursor = conn.execute(
                "SELECT file_id, file_name,"
                " created_at AT TIME ZONE current_setting('TimeZone') AS created_at,"
                " modified_at AT TIME ZONE current_setting('TimeZone') AS modified_at,"
                " _sdc_deleted_at, _sdc_table_version, _sdc_sync_started_at"
                " FROM filestore.files"
            )
            names = [c.name for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def state(self) -> dict:
        done = meltano("state", "get", STATE_ID, system_db=self.system_db)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def bookmark(self) -> str:
        files = self.state()["singer_state"]["bookmarks"]["files"]
        return files["replication_key_value"]


def source(sandbox: Sandbox) -> dict[str, dict]:
    """What the table must hold: every live file, date-times as instants."""
    files = sandbox.dataset

    def instant(epoch_us: int | None) -> datetime | None:
        return None if epoch_us is None else to_datetime(epoch_us)

    return {
        f.file_id: {
            "file_id": f.file_id,
            "file_name": f.file_name,
            "created_at": instant(f.created_us),
            "modified_at": instant(f.modified_us),
        }
        for f in (files.file(i) for i in files.live_indexes())
    }


def live(rows: list[dict]) -> dict[str, dict]:
    return {
        r["file_id"]: {
            k: r[k] for k in ("file_id", "file_name", "created_at", "modified_at")
        }
        for r in rows
        if r["_sdc_deleted_at"] is None
    }


def greatest_modified_at(sandbox: Sandbox) -> datetime:
    return max(r["modified_at"] for r in source(sandbox).values() if r["modified_at"])


@pytest.fixture
def pipeline(
    cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Pipeline:
    timezone = getattr(request, "param", "UTC")
    database = f"e2e_{abs(hash(request.node.nodeid)) % 10**8}"
    cluster.create_database(database, timezone)
    with Sandbox(FILES) as api:
        yield Pipeline(cluster, api, database, tmp_path / "meltano.db")


@pytest.mark.parametrize("pipeline", ["UTC", "Asia/Kolkata"], indirect=True)
def test_first_run_loads_exactly_the_source(pipeline: Pipeline) -> None:
    pipeline.run_ok()

    rows = pipeline.rows()
    assert len(rows) == FILES
    assert live(rows) == source(pipeline.sandbox)
    with pipeline.cluster.connect(pipeline.database) as conn:
        (key,) = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = 'filestore.files'::regclass AND i.indisprimary"
        ).fetchall()
    assert key == ("file_id",)
    assert datetime.fromisoformat(pipeline.bookmark()) == greatest_modified_at(
        pipeline.sandbox
    )


def test_second_run_upserts_changes_and_transfers_only_them(pipeline: Pipeline) -> None:
    pipeline.run_ok()
    first_bookmark = pipeline.bookmark()
    touched = set(pipeline.sandbox.dataset.touch(list(range(0, FILES, 60))))
    added = set(pipeline.sandbox.dataset.add(30))
    time.sleep(0.01)

    pipeline.run_ok()

    rows = pipeline.rows()
    assert len(rows) == len({r["file_id"] for r in rows}) == FILES + 30
    assert live(rows) == source(pipeline.sandbox)
    second_sync = max(r["_sdc_sync_started_at"] for r in rows)
    transferred = {
        r["file_id"] for r in rows if r["_sdc_sync_started_at"] == second_sync
    }
    nulls = {i for i, f in source(pipeline.sandbox).items() if f["modified_at"] is None}
    at_bookmark = {
        i
        for i, f in source(pipeline.sandbox).items()
        if f["modified_at"] == datetime.fromisoformat(first_bookmark)
    }
    assert transferred == touched | added | nulls | at_bookmark
    assert len(transferred) < FILES // 5
    assert datetime.fromisoformat(pipeline.bookmark()) == greatest_modified_at(
        pipeline.sandbox
    )


def test_modified_since_param_starts_pages_from_the_bookmark(
    pipeline: Pipeline,
) -> None:
    param = {"TAP_FILESTORE_MODIFIED_SINCE_PARAM": "modified_since"}
    pipeline.run_ok(**param)
    bookmark = pipeline.bookmark()
    pipeline.sandbox.dataset.touch([5, 500])
    pipeline.sandbox.requests.clear()
    time.sleep(0.01)

    pipeline.run_ok(**param)

    pages = pipeline.sandbox.page_requests()
    assert pages[0].params["modified_since"] == bookmark
    assert len(pages) == 1  # the API filtered: one short page
    assert live(pipeline.rows()) == source(pipeline.sandbox)


def test_full_refresh_reloads_everything_exactly(pipeline: Pipeline) -> None:
    pipeline.run_ok()
    pipeline.sandbox.dataset.touch([1, 2, 3])

    pipeline.run_ok("--full-refresh")

    rows = pipeline.rows()
    assert live(rows) == source(pipeline.sandbox)
    assert len(rows) == FILES
    assert len({r["_sdc_table_version"] for r in rows}) == 1


@pytest.mark.parametrize("hard_delete", ["false", "true"])
def test_files_deleted_at_the_source_are_retired_by_a_full_refresh(
    pipeline: Pipeline, hard_delete: str
) -> None:
    pipeline.run_ok(TARGET_POSTGRES_HARD_DELETE=hard_delete)
    deleted = set(pipeline.sandbox.dataset.delete([0, 10, 700]))

    pipeline.run_ok("--full-refresh", TARGET_POSTGRES_HARD_DELETE=hard_delete)

    rows = pipeline.rows()
    assert live(rows) == source(pipeline.sandbox)
    retired = {r["file_id"] for r in rows if r["_sdc_deleted_at"] is not None}
    if hard_delete == "true":
        assert len(rows) == FILES - 3
        assert retired == set()
    else:
        assert len(rows) == FILES
        assert retired == deleted


def test_wrong_credentials_fail_the_run_and_change_nothing(pipeline: Pipeline) -> None:
    pipeline.run_ok()
    table, state = pipeline.rows(), pipeline.state()

    for args in ((), ("--full-refresh",)):
        failed = pipeline.run(*args, TAP_FILESTORE_CLIENT_SECRET="wrong")  # noqa: S106

        assert failed.returncode != 0
        assert "refused the client: 401 invalid_client" in failed.stderr
        assert pipeline.rows() == table
        assert pipeline.state() == state
