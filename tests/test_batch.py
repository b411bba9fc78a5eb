"""BATCH mode (`batch_config`): every guarantee of RECORD mode, in files."""

from __future__ import annotations

import gzip
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tap_filestore import batches
from tap_filestore.sandbox import Sandbox
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
    """Return the records of one announced batch file."""
    path = urlsplit(url).path
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


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


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_first_batch_sync_writes_every_record_once_then_activates_its_version(
    api: Sandbox, tmp_path: Path, compression: str
) -> None:
    folder = tmp_path / "batches"
    config = api.config(batch_config=batch_config(folder, compression))
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
    assert {r.pop("_sdc_table_version") for r in records} == {version}
    assert records == expected.records
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert states[-1] == expected.state
    # Only the announced files, none half-written.
    announced = {urlsplit(u).path for b in batches for u in b["manifest"]}
    assert {str(p) for p in folder.iterdir()} == announced


def test_an_incremental_batch_sync_carries_only_what_changed(
    api: Sandbox, tmp_path: Path
) -> None:
    config = api.config(batch_config=batch_config(tmp_path / "batches"))
    first = sync(api.config())
    changed = set(api.dataset.touch([5, 1500, 2499]))

    code, messages, stderr = run(config, tmp_path, state=first.state)

    assert code == 0, stderr[-2000:]
    expected = sync(api.config(), state=first.state)  # the same in RECORD mode
    urls = [u for m in messages if m["type"] == "BATCH" for u in m["manifest"]]
    records = [r for url in urls for r in read_batch(url)]
    assert records == expected.records  # no `_sdc_table_version` either
    assert changed <= {r["file_id"] for r in records}
    assert len(records) < FILES // 10
    assert "ACTIVATE_VERSION" not in {m["type"] for m in messages}
    assert messages[-1]["type"] == "STATE"
    assert messages[-1]["value"] == expected.state


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
    assert [str(p) for p in folder.iterdir()] == [urlsplit(batch["manifest"][0]).path]


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


def test_batch_files_with_a_stream_map_are_refused_in_one_line(
    api: Sandbox, tmp_path: Path
) -> None:
    config = api.config(
        batch_config=batch_config(tmp_path / "batches"),
        stream_maps={"files": {"file_name": "__NULL__"}},
    )

    code, _, stderr = run(config, tmp_path)

    assert code == 1
    assert len(error_lines(stderr)) == 1
    assert "cannot be combined with stream maps" in error_lines(stderr)[0]
    assert not (tmp_path / "batches").exists()


def test_a_file_that_cannot_be_written_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = batches.BatchFiles(tmp_path.as_uri(), None, "gzip", "tap--files")

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gzip.GzipFile, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        files.write([{"file_id": "a"}])
    assert list(tmp_path.iterdir()) == []


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
