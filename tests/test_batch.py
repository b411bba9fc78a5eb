"""BATCH mode (`batch_config`): every guarantee of RECORD mode, in files."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import requests
from singer_sdk.helpers._batch import StorageTarget

from tap_filestore import batches
from tap_filestore.errors import BatchWriteError
from tap_filestore.sandbox import Sandbox
from tap_filestore.timestamps import parse_instant
from tests.conftest import FAST_RETRIES, error_lines, run_cli, state_at, sync
from tests.pipeline import Pipeline, live, source

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.postgres import Cluster

FILES = 2500
BATCH_SIZE = 1000


def batch_config(folder: Path, compression: str = "gzip") -> dict[str, Any]:
    return {
        "encoding": {"format": "jsonl", "compression": compression},
        "storage": {"root": folder.as_uri(), "prefix": "test-"},
        "batch_size": BATCH_SIZE,
    }


def read_batch(url: str) -> list[dict[str, Any]]:
    """Return the records of one announced batch file, read as SDK targets do.

    `Sink.process_batch_files` opens a manifest entry this way (0.54 and 0.55):
    the one place the tests use the SDK's private batch helpers.
    """
    head, tail = StorageTarget.split_url(url)
    with StorageTarget.from_url(head).open(tail, mode="rb") as file:
        data = file.read()
    lines = gzip.decompress(data) if tail.endswith(".gz") else data
    return [json.loads(line) for line in lines.splitlines()]


def run(
    config: dict[str, Any], tmp_path: Path, state: dict[str, Any] | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    args = []
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args = ["--state", str(tmp_path / "state.json")]
    done = run_cli(*args, config=config, tmp_path=tmp_path)
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    return done.returncode, messages, done.stderr


@pytest.fixture
def api() -> Iterator[Sandbox]:
    with Sandbox(FILES) as sandbox:
        yield sandbox


#: The columns a target adds to a RECORD's row (singer-sdk's record metadata).
METADATA = {
    "_sdc_extracted_at",
    "_sdc_received_at",
    "_sdc_batched_at",
    "_sdc_deleted_at",
    "_sdc_sequence",
    "_sdc_table_version",
    "_sdc_sync_started_at",
}


def without_folder(state: dict[str, Any]) -> dict[str, Any]:
    """Take out the name of the run's batch folder (RECORD mode has none)."""
    files = dict(state["bookmarks"]["files"])
    assert files.pop("batch_folder").startswith("tap-filestore--files-")
    return {**state, "bookmarks": {**state["bookmarks"], "files": files}}


def without_metadata(row: dict[str, Any]) -> dict[str, Any]:
    """Take the `_sdc_*` metadata out of a batch row, checking what it holds."""
    metadata = {key: row.pop(key) for key in METADATA}
    for key in ("_sdc_extracted_at", "_sdc_received_at", "_sdc_batched_at"):
        assert parse_instant(metadata[key]).tzinfo is not None
    assert metadata["_sdc_deleted_at"] is None
    assert isinstance(metadata["_sdc_sequence"], int)
    assert isinstance(metadata["_sdc_sync_started_at"], int)
    return metadata


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_first_batch_sync_writes_every_record_once_then_activates_its_version(
    api: Sandbox, tmp_path: Path, compression: str
) -> None:
    folder = tmp_path / "batches"
    config = api.config(
        batch_config=batch_config(folder, compression), batch_record_metadata=True
    )
    expected = sync(api.config())  # the same sync in RECORD mode

    code, messages, stderr = run(config, tmp_path)

    assert code == 0, stderr[-2000:]
    kinds = [m["type"] for m in messages]
    assert "RECORD" not in kinds
    batches = [m for m in messages if m["type"] == "BATCH"]
    assert len(batches) == 3
    # Each BATCH is followed by the STATE that covers it; the version comes
    # after the last, and a final STATE after it (issue 22).
    for index, kind in enumerate(kinds):
        if kind == "BATCH":
            assert kinds[index + 1] == "STATE"
    assert kinds[-2:] == ["ACTIVATE_VERSION", "STATE"]
    (version,) = [m["version"] for m in messages if m["type"] == "ACTIVATE_VERSION"]
    records = [r for b in batches for url in b["manifest"] for r in read_batch(url)]
    metadata = [without_metadata(r) for r in records]
    assert {m["_sdc_table_version"] for m in metadata} == {version}
    assert records == expected.records
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert without_folder(states[-1]) == expected.state
    # Only the announced files, none half-written.
    announced = {urlsplit(u).path for b in batches for u in b["manifest"]}
    assert {str(p) for p in folder.glob("*/*")} == announced


def test_an_incremental_batch_sync_carries_only_what_changed(
    api: Sandbox, tmp_path: Path
) -> None:
    config = api.config(
        batch_config=batch_config(tmp_path / "batches"), batch_record_metadata=True
    )
    first = sync(api.config())
    changed = set(api.dataset.touch([5, 1500, 2499]))

    code, messages, stderr = run(config, tmp_path, state=first.state)

    assert code == 0, stderr[-2000:]
    expected = sync(api.config(), state=first.state)  # the same in RECORD mode
    urls = [u for m in messages if m["type"] == "BATCH" for u in m["manifest"]]
    records = [r for url in urls for r in read_batch(url)]
    metadata = [without_metadata(r) for r in records]
    assert records == expected.records
    assert {m["_sdc_table_version"] for m in metadata} == {None}  # as RECORDs
    assert changed <= {r["file_id"] for r in records}
    assert len(records) < FILES // 10
    assert "ACTIVATE_VERSION" not in {m["type"] for m in messages}
    assert messages[-1]["type"] == "STATE"
    assert without_folder(messages[-1]["value"]) == expected.state


def test_a_deletion_during_a_batch_sync_keeps_the_bookmark_as_in_record_mode(
    api: Sandbox, tmp_path: Path
) -> None:
    config = api.config(batch_config=batch_config(tmp_path / "batches"))
    previous = sync(api.config())
    api.dataset.touch([100, 2400])  # both changed since the bookmark
    api.inject("call", skip=1, action=lambda: api.dataset.delete([10]))

    code, messages, stderr = run(config, tmp_path, state=previous.state)

    assert code == 0, stderr[-2000:]
    assert "the bookmark stays where this sync started" in stderr
    final = messages[-1]["value"]["bookmarks"]["files"]
    assert final["replication_key_value"] == previous.bookmark
    assert "progress_markers" not in final


def test_a_batch_sync_that_fails_announces_only_finished_files_and_keeps_its_bookmark(
    api: Sandbox, tmp_path: Path
) -> None:
    folder = tmp_path / "batches"
    config = api.config(batch_config=batch_config(folder), **FAST_RETRIES)
    start = "2020-01-01T00:00:00+00:00"
    # Page 16 of 25 never answers: the second file is never complete.
    api.inject("status", status=500, skip=16, times=100)

    code, messages, stderr = run(config, tmp_path, state=state_at(start))

    assert code == 1
    assert len(error_lines(stderr)) == 1
    kinds = [m["type"] for m in messages]
    assert kinds.count("BATCH") == 1
    assert kinds[kinds.index("BATCH") + 1] == "STATE"
    for message in messages:
        if message["type"] == "STATE":
            files = message["value"]["bookmarks"]["files"]
            assert files["replication_key_value"] == start
    (batch,) = [m for m in messages if m["type"] == "BATCH"]
    assert [str(p) for p in folder.glob("*/*")] == [urlsplit(batch["manifest"][0]).path]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"encoding": {"format": "parquet"}}, "batch_config.encoding.format"),
        ({"encoding": {"format": "jsonl", "compression": "zstd"}}, "compression"),
        ({"storage": {"root": "s3://bucket/batches"}}, "is not a local folder"),
    ],
)
def test_a_batch_config_the_tap_cannot_write_is_one_line_before_any_request(
    api: Sandbox, tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    config = api.config(batch_config={**batch_config(tmp_path), **change})

    code, messages, stderr = run(config, tmp_path)

    assert code == 1
    (line,) = error_lines(stderr) or stderr.strip().splitlines()[-1:]
    assert says in line
    assert messages == []
    assert api.requests == []


@pytest.mark.parametrize(
    "change",
    [
        {"stream_maps": {"files": {"file_name": "__NULL__"}}},
        {"flattening_enabled": True, "flattening_max_depth": 1},
    ],
)
def test_batch_config_with_stream_maps_or_flattening_falls_back_to_records(
    api: Sandbox, tmp_path: Path, change: dict[str, Any]
) -> None:
    config = api.config(batch_config=batch_config(tmp_path / "batches"), **change)

    code, messages, stderr = run(config, tmp_path)

    assert code == 0, stderr[-2000:]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert len(records) == FILES
    assert "BATCH" not in {m["type"] for m in messages}
    said = [line for line in stderr.splitlines() if "not BATCH files" in line]
    assert len(said) == 1
    assert "| INFO" in said[0]
    if "stream_maps" in change:
        assert all("file_name" not in r for r in records)
    assert not (tmp_path / "batches").exists()


def test_a_file_that_cannot_be_written_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = batches.BatchRoot(tmp_path)
    files = root.new_run("run", None, "gzip")

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gzip.GzipFile, "write", disk_full)
    with pytest.raises(BatchWriteError, match="No space left on device"):
        files.write([{"file_id": "a"}], {})
    files.close()
    root.close()
    assert list((tmp_path / "run").iterdir()) == []


def test_a_failure_of_the_records_themselves_is_not_called_a_write_failure(
    tmp_path: Path,
) -> None:
    root = batches.BatchRoot(tmp_path)
    files = root.new_run("run", None, "gzip")

    def records() -> Iterator[dict[str, Any]]:
        yield {"file_id": "a"}
        raise requests.TooManyRedirects  # an OSError, from the API's side

    with pytest.raises(requests.TooManyRedirects):
        files.write(records(), {})
    files.close()
    root.close()
    assert list((tmp_path / "run").iterdir()) == []


def test_meltano_loads_batch_files_into_postgres_exactly_and_retires_deleted_files(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create_database("batch_e2e", "UTC")
    config = json.dumps(batch_config(tmp_path / "batches"))
    with Sandbox(FILES) as api:
        pipeline = Pipeline(cluster, api, "batch_e2e", tmp_path / "meltano.db")
        pipeline.run_ok(TAP_FILESTORE_BATCH_CONFIG=config)
        rows = pipeline.rows()
        assert len(rows) == FILES
        assert live(rows) == source(api)  # none retired by the ACTIVATE_VERSION

        deleted = set(api.dataset.delete([0, 10, 2000]))
        api.dataset.touch([1, 2, 3])
        pipeline.run_ok("--full-refresh", TAP_FILESTORE_BATCH_CONFIG=config)
        rows = pipeline.rows()
        assert live(rows) == source(api)
        assert {r["file_id"] for r in rows if r["_sdc_deleted_at"]} == deleted

        api.dataset.touch([4, 1500])
        api.dataset.add(7)
        pipeline.run_ok(TAP_FILESTORE_BATCH_CONFIG=config)
        assert live(pipeline.rows()) == source(api)


def test_batch_loaded_rows_carry_the_metadata_record_loaded_rows_do(
    cluster: Cluster, tmp_path: Path
) -> None:
    with Sandbox(FILES) as api:
        tables = {}
        for mode, env in (
            ("records", {}),
            (
                "batch",
                {"TAP_FILESTORE_BATCH_CONFIG": json.dumps(batch_config(tmp_path))},
            ),
        ):
            cluster.create_database(f"metadata_{mode}", "UTC")
            extractor = "tap-filestore--records" if mode == "records" else None
            pipeline = Pipeline(
                cluster,
                api,
                f"metadata_{mode}",
                tmp_path / f"{mode}.db",
                extractor=extractor or "tap-filestore",
            )
            pipeline.run_ok(**env)
            with cluster.connect(f"metadata_{mode}") as conn:
                cursor = conn.execute("SELECT * FROM filestore.files")
                assert cursor.description is not None
                names = [c.name for c in cursor.description]
                tables[mode] = {
                    row[names.index("file_id")]: dict(zip(names, row, strict=True))
                    for row in cursor.fetchall()
                }

    records, batch = tables["records"], tables["batch"]
    assert records.keys() == batch.keys()
    columns = next(iter(records.values())).keys()
    assert columns == next(iter(batch.values())).keys()
    assert columns >= METADATA
    for file_id, row in records.items():
        other = batch[file_id]
        for column in columns:
            if column in METADATA:
                # Times and versions differ between two syncs; what is set,
                # and its type, may not.
                assert (row[column] is None) == (other[column] is None), column
                assert type(row[column]) is type(other[column]), column
            else:
                assert row[column] == other[column], column


def run_folders(root: Path) -> set[str]:
    return {p.name for p in root.iterdir() if p.name.startswith("tap-filestore--")}


def test_each_run_deletes_the_folder_its_state_names_and_only_its_own_files(
    api: Sandbox, tmp_path: Path
) -> None:
    root = tmp_path / "batches"
    config = api.config(batch_config=batch_config(root))
    # What else lives in the folder: never touched.
    (root / "keep").mkdir(parents=True)
    (root / "keep" / "part-1.json").write_text("{}\n")
    (root / "notes.txt").write_text("mine")
    state = None
    folders = []
    for _ in range(3):
        code, messages, stderr = run(config, tmp_path, state=state)
        assert code == 0, stderr[-2000:]
        state = messages[-1]["value"]
        folders.append(state["bookmarks"]["files"]["batch_folder"])
        # At most one run's files between runs: the last one's.
        assert run_folders(root) == {folders[-1]}
    assert len(set(folders)) == 3
    assert (root / "keep" / "part-1.json").read_text() == "{}\n"
    assert (root / "notes.txt").read_text() == "mine"


def test_a_job_sharing_the_folder_keeps_its_files_until_its_own_state_comes_back(
    api: Sandbox, tmp_path: Path
) -> None:
    root = tmp_path / "batches"
    config = api.config(batch_config=batch_config(root))
    _, first_a, _ = run(config, tmp_path)
    _, first_b, _ = run(config, tmp_path)  # another job, into the same folder
    folder_a, folder_b = (
        m[-1]["value"]["bookmarks"]["files"]["batch_folder"] for m in (first_a, first_b)
    )
    # A dead run's folder (no STATE ever came back), untouched for two days.
    (dead := root / "tap-filestore--files-20260101T000000Z-0123456789ab").mkdir(0o700)
    (dead / "part-1.json.gz").write_bytes(b"")
    (dead / "part-1.json.gz").chmod(0o600)
    two_days_ago = time.time() - 2 * 24 * 3600
    for path in (dead / "part-1.json.gz", dead):
        os.utime(path, (two_days_ago, two_days_ago))

    code, second_a, _ = run(config, tmp_path, state=first_a[-1]["value"])

    assert code == 0
    new_a = second_a[-1]["value"]["bookmarks"]["files"]["batch_folder"]
    # A's loaded files and the dead run's are gone; B's, not yet loaded, stay.
    assert run_folders(root) == {folder_b, new_a}
    assert {m["manifest"][0] for m in first_b if m["type"] == "BATCH"} <= {
        p.as_uri() for p in (root / folder_b).iterdir()
    }
    assert folder_a != folder_b


def test_batch_files_start_small_and_double_up_to_the_batch_size() -> None:
    assert list(itertools.islice(batches.file_sizes(100_000), 6)) == [
        10_000,
        20_000,
        40_000,
        80_000,
        100_000,
        100_000,
    ]
    assert list(itertools.islice(batches.file_sizes(1000), 2)) == [1000, 1000]


def test_a_sync_sends_a_small_first_file_while_it_reads_the_rest(
    tmp_path: Path,
) -> None:
    with Sandbox(25_000) as big:
        config = big.config(
            batch_config={**batch_config(tmp_path / "batches"), "batch_size": 20_000},
            batch_record_metadata=True,
        )
        expected = sync(big.config())  # the same sync in RECORD mode

        code, messages, stderr = run(config, tmp_path)

    assert code == 0, stderr[-2000:]
    urls = [u for m in messages if m["type"] == "BATCH" for u in m["manifest"]]
    files = [read_batch(url) for url in urls]
    assert [len(records) for records in files] == [10_000, 15_000]
    records = [r for records in files for r in records]
    for record in records:
        without_metadata(record)
    assert records == expected.records
