"""`meltano run tap-filestore target-postgres`, for real: Meltano and PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest

from tap_filestore.sandbox import Sandbox
from tests.pipeline import Pipeline, greatest_modified_at, live, source

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.postgres import Cluster

FILES = 1200


@pytest.fixture
def pipeline(
    cluster: Cluster, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Pipeline]:
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


@pytest.mark.parametrize(
    ("hard_delete", "pipeline"),
    [("false", "Asia/Kolkata"), ("true", "UTC")],
    indirect=["pipeline"],
)
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
        # Set by an UPDATE, which converts to the session's time zone: UTC too.
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for row in rows:
            if row["_sdc_deleted_at"] is not None:
                assert abs(row["_sdc_deleted_at"] - now) < timedelta(minutes=5)


def test_wrong_credentials_fail_the_run_and_change_nothing(pipeline: Pipeline) -> None:
    pipeline.run_ok()
    table, state = pipeline.rows(), pipeline.state()

    for args in ((), ("--full-refresh",)):
        failed = pipeline.run(*args, TAP_FILESTORE_CLIENT_SECRET="wrong")  # noqa: S106

        assert failed.returncode != 0
        assert "refused the client: 401 invalid_client" in failed.stderr
        assert pipeline.rows() == table
        assert pipeline.state() == state
