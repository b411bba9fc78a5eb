"""The `files` stream: schema, records, date-times and malformed answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.errors import MalformedPageError
from tap_filestore.sandbox.server import MALFORMED_BODIES
from tap_filestore.tap import TapFileStore
from tap_filestore.timestamps import normalize
from tests.conftest import expected_records, sync

if TYPE_CHECKING:
    from tap_filestore.sandbox import Sandbox


def test_stream_declares_keys_schema_and_replication_key(
    config: dict[str, Any],
) -> None:
    schema = sync(config).of_type("SCHEMA")[0]

    assert schema["stream"] == "files"
    assert schema["key_properties"] == ["file_id"]
    assert schema["bookmark_properties"] == ["modified_at"]
    props = schema["schema"]["properties"]
    assert set(props) == {"file_id", "file_name", "created_at", "modified_at"}
    assert props["file_id"]["type"] == ["string"]
    assert schema["schema"]["required"] == ["file_id"]
    for nullable in ("file_name", "created_at", "modified_at"):
        assert "null" in props[nullable]["type"]
    assert props["created_at"]["format"] == "date-time"
    assert props["modified_at"]["format"] == "date-time"


def test_sync_emits_every_file_exactly_once_with_its_values(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    result = sync(config)

    assert len(result.ids) == len(set(result.ids)) == 250
    assert {r["file_id"]: r for r in result.records} == expected_records(sandbox)


def test_record_messages_carry_a_utc_extraction_time(config: dict[str, Any]) -> None:
    started = datetime.now(timezone.utc)
    result = sync(config)
    ended = datetime.now(timezone.utc)

    stamps = [
        datetime.fromisoformat(m["time_extracted"]) for m in result.of_type("RECORD")
    ]
    assert len(stamps) == 250
    assert all(s.utcoffset() == timedelta(0) and started <= s <= ended for s in stamps)


def test_a_deselected_property_is_left_out_of_every_record(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    catalog = TapFileStore(config=config, parse_env_config=False).catalog_dict
    for item in catalog["streams"][0]["metadata"]:
        if item["breadcrumb"] == ["properties", "file_name"]:
            item["metadata"]["selected"] = False

    result = sync(config, catalog=catalog)

    expected = {
        file_id: {key: value for key, value in row.items() if key != "file_name"}
        for file_id, row in expected_records(sandbox).items()
    }
    assert {r["file_id"]: r for r in result.records} == expected


def test_stream_maps_rename_add_and_drop_properties(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    maps = {
        "files": {
            "__alias__": "documents",
            "file_key": "'f-' + file_id",
            "created_at": "__NULL__",
        }
    }

    result = sync({**config, "stream_maps": maps})

    assert {m["stream"] for m in result.of_type("RECORD")} == {"documents"}
    expected = expected_records(sandbox)
    assert len(result.records) == len(expected)
    for record in result.records:
        row = expected[record["file_id"]]
        assert "created_at" not in record
        assert record["file_key"] == f"f-{record['file_id']}"
        assert record["modified_at"] == row["modified_at"]


def test_dataset_exercises_nulls_missing_keys_and_unicode(sandbox: Sandbox) -> None:
    raw = sandbox.dataset.current()
    assert any(f["file_name"] is None for f in raw)
    assert any("modified_at" in f and f["modified_at"] is None for f in raw)
    assert any("modified_at" not in f for f in raw)
    assert any(f["created_at"] is None for f in raw)
    assert any(not (f["file_name"] or "").isascii() for f in raw)
    stamps = [f["modified_at"] for f in raw if f.get("modified_at")]
    assert any(s.endswith("Z") for s in stamps)
    assert any(s.endswith("+00:00") for s in stamps)
    assert any(s.endswith("+02:00") for s in stamps)
    assert any(s[-6] not in "+-" and not s.endswith("Z") for s in stamps)  # naive


@pytest.mark.parametrize(
    ("sent", "emitted"),
    [
        ("2024-03-01T10:00:00Z", "2024-03-01T10:00:00.000000+00:00"),
        ("2024-03-01T10:00:00+00:00", "2024-03-01T10:00:00.000000+00:00"),
        ("2024-03-01T10:00:00.5Z", "2024-03-01T10:00:00.500000+00:00"),
        ("2024-03-01T10:00:00.123456789Z", "2024-03-01T10:00:00.123456+00:00"),
        ("2024-03-01T10:00:00", "2024-03-01T10:00:00.000000+00:00"),
        ("2024-03-01T12:00:00+02:00", "2024-03-01T10:00:00.000000+00:00"),
        ("2024-03-01T05:00:00-05:00", "2024-03-01T10:00:00.000000+00:00"),
        ("20240301T100000Z", "2024-03-01T10:00:00.000000+00:00"),
        ("2024-03-01 10:00:00Z", "2024-03-01T10:00:00.000000+00:00"),
        (None, None),
    ],
)
def test_date_times_are_emitted_as_utc_with_an_offset(
    sent: str | None, emitted: str | None
) -> None:
    assert normalize(sent) == emitted


def test_a_date_time_that_is_not_iso_8601_fails_naming_the_page(
    sandbox: Sandbox, config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        MALFORMED_BODIES,
        "bad_date",
        b'{"files": [{"file_id": "a", "modified_at": "last tuesday"}]}',
    )
    sandbox.inject("malformed", body="bad_date", skip=1)

    with pytest.raises(MalformedPageError, match=r"offset 100 .*invalid value"):
        sync(config)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not_json", "is not JSON"),
        ("truncated_json", "is not JSON"),
        ("no_files", "has no `files` list"),
        ("files_not_list", "has no `files` list"),
        ("no_file_id", "without `file_id`"),
    ],
)
def test_a_malformed_page_fails_naming_its_offset(
    sandbox: Sandbox, config: dict[str, Any], body: str, says: str
) -> None:
    sandbox.inject("malformed", body=body, skip=2)

    with pytest.raises(MalformedPageError, match=f"offset 200 .*{says}"):
        sync(config)
