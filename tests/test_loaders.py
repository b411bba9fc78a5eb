"""Every loader this project declares, paired with the tap as shipped (BATCH files),
through `meltano run` in a project folder whose path has a space, a non-ASCII
letter and a `%`."""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tap_filestore.sandbox import Sandbox
from tap_filestore.timestamps import parse_instant
from tests.meltano_cli import ROOT, meltano, require_plugin
from tests.pipeline import Pipeline, live, source

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from pathlib import Path
    from subprocess import CompletedProcess

    from tests.postgres import Cluster

FILES = 2500
LOADERS = [
    loader["name"]
    for loader in yaml.safe_load((ROOT / "meltano.yml").read_text())["plugins"][
        "loaders"
    ]
]
#: A project folder no loader may trip over.
AWKWARD = "projé ct 100%"


def instant(text: str | None) -> datetime | None:
    return parse_instant(text.replace(" ", "T")) if text else None


def csv_rows(project: Path) -> list[dict[str, Any]]:
    """The rows target-csv wrote (as configured in meltano.yml: under output/)."""
    with (project / "output" / "files.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def as_source(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """CSV rows as the source's files: date-times as instants."""
    return {
        r["file_id"]: {
            "file_id": r["file_id"],
            "file_name": r["file_name"] or None,
            "created_at": instant(r["created_at"]),
            "modified_at": instant(r["modified_at"]),
        }
        for r in rows
    }


def run_into(
    loader: str,
    project_db: Path,
    api: Sandbox,
    extractor: str = "tap-filestore",
    **env: str,
) -> CompletedProcess[str]:
    return meltano(
        "run",
        "--full-refresh",
        extractor,
        loader,
        system_db=project_db,
        env={
            "TAP_FILESTORE_BASE_URL": api.base_url,
            "TAP_FILESTORE_CLIENT_SECRET": api.client_secret,
            **env,
        },
    )


def check_csv(project_db: Path, api: Sandbox, _: pytest.FixtureRequest) -> None:
    done = run_into("target-csv", project_db, api)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = csv_rows(project_db.parent / "meltano-project")
    assert len(rows) == FILES
    assert as_source(rows) == source(api)


def check_postgres(
    project_db: Path, api: Sandbox, request: pytest.FixtureRequest
) -> None:
    cluster: Cluster = request.getfixturevalue("cluster")
    cluster.create_database("loaders", "UTC")
    pipeline = Pipeline(cluster, api, "loaders", project_db)
    pipeline.run_ok("--full-refresh")
    rows = pipeline.rows()
    assert len(rows) == FILES
    assert live(rows) == source(api)


CHECKS: dict[str, Callable[[Path, Sandbox, pytest.FixtureRequest], None]] = {
    "target-csv": check_csv,
    "target-postgres": check_postgres,
}


@pytest.mark.parametrize("loader", LOADERS)
def test_every_declared_loader_loads_every_file_the_shipped_tap_sends(
    loader: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    require_plugin("loaders", loader)
    assert loader in CHECKS, f"meltano.yml declares {loader}: say here how to read it"
    project_db = tmp_path / AWKWARD / "meltano.db"
    with Sandbox(FILES) as api:
        CHECKS[loader](project_db, api, request)
    batches = project_db.parent / "meltano-project" / ".meltano" / "batches"
    assert any(batches.iterdir()), "the shipped tap wrote no batch files"


def test_target_csv_with_its_defaults_loads_the_rows_record_mode_gives_it(
    tmp_path: Path,
) -> None:
    require_plugin("loaders", "target-csv")
    defaults = {
        "TAP_FILESTORE_BATCH_RECORD_METADATA": "false",
        "TARGET_CSV_ADD_RECORD_METADATA": "false",
    }
    loaded = {}
    with Sandbox(FILES) as api:
        for extractor in ("tap-filestore", "tap-filestore--records"):
            project_db = tmp_path / extractor / "meltano.db"
            done = run_into("target-csv", project_db, api, extractor, **defaults)
            assert done.returncode == 0, done.stderr[-3000:]
            loaded[extractor] = csv_rows(project_db.parent / "meltano-project")

    batch, records = loaded["tap-filestore"], loaded["tap-filestore--records"]
    assert (
        list(batch[0])
        == list(records[0])
        == [
            "file_id",
            "file_name",
            "created_at",
            "modified_at",
        ]
    )
    assert as_source(batch) == as_source(records)
    assert len(batch) == len(records) == FILES


def test_batch_files_without_record_metadata_retire_no_rows_in_postgres(
    cluster: Cluster, tmp_path: Path
) -> None:
    # A user's own project: BATCH on for target-postgres, nothing else set.
    cluster.create_database("no_metadata", "UTC")
    with Sandbox(FILES) as api:
        pipeline = Pipeline(cluster, api, "no_metadata", tmp_path / "meltano.db")
        off = {"TAP_FILESTORE_BATCH_RECORD_METADATA": "false"}
        pipeline.run_ok(**off)
        everything = source(api)
        api.dataset.delete([0, 10, 2000])

        done = pipeline.run_ok("--full-refresh", **off)

        rows = pipeline.rows()
    assert live(rows) == everything  # nothing retired, deleted files included
    assert {r["_sdc_table_version"] for r in rows} == {None}
    assert "are not retired" in done.stderr
