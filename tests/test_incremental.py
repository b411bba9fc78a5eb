"""Incremental and full-table replication: what each run emits, where state lands."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest

from tap_filestore.errors import RetriesExhaustedError
from tap_filestore.tap import TapFileStore
from tap_filestore.timestamps import format_instant, parse_instant
from tests.conftest import captured_stdout, expected_records, state_at, sync

if TYPE_CHECKING:
    from tap_filestore.sandbox import Sandbox


def greatest_modified_at(records: dict[str, dict[str, Any]]) -> str:
    return cast(
        "str", max(r["modified_at"] for r in records.values() if r["modified_at"])
    )


def full_table_catalog(config: dict[str, Any], key: str) -> dict[str, Any]:
    catalog = sync_discover(config)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if not item["breadcrumb"]:
                item["metadata"][key] = "FULL_TABLE"
    return catalog


def sync_discover(config: dict[str, Any]) -> dict[str, Any]:
    return TapFileStore(config=config, parse_env_config=False).catalog_dict


def test_the_api_order_is_not_sorted_by_modified_at(sandbox: Sandbox) -> None:
    stamps = [r["modified_at"] for r in expected_records(sandbox).values()]
    stamps = [s for s in stamps if s]
    assert stamps != sorted(stamps)


def test_first_run_emits_everything_and_bookmarks_the_greatest_modified_at(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    result = sync(config)

    expected = expected_records(sandbox)
    assert len(result.records) == len(expected)
    assert result.bookmark == greatest_modified_at(expected)
    assert result.records[-1]["modified_at"] != result.bookmark


def emitted_since(sandbox: Sandbox, since: str) -> set[str]:
    """The files a sync filtered on `since` emits: those modified since, or never."""
    moment = parse_instant(since)
    return {
        file_id
        for file_id, r in expected_records(sandbox).items()
        if r["modified_at"] is None or parse_instant(r["modified_at"]) >= moment
    }


def test_first_run_starts_at_start_date_and_keeps_null_modified_at(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    start = "2024-01-01T00:00:00Z"

    result = sync({**config, "start_date": start})

    expected = emitted_since(sandbox, start)
    assert set(result.ids) == expected
    assert 0 < len(expected) < 250
    assert any(r["modified_at"] is None for r in result.records)


def test_next_run_emits_only_changes_since_the_bookmark_including_equal(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    first = sync(config)
    touched = sandbox.dataset.touch([3, 77, 140])
    added = sandbox.dataset.add(5)
    time.sleep(0.01)  # the SDK caps a bookmark at the sync's start, in whole ms

    second = sync(config, state=first.state)

    nulls = {
        i for i, r in expected_records(sandbox).items() if r["modified_at"] is None
    }
    at_bookmark = {
        r["file_id"] for r in first.records if r["modified_at"] == first.bookmark
    }
    assert set(second.ids) == set(touched) | set(added) | nulls | at_bookmark
    assert len(at_bookmark) == 1
    new = expected_records(sandbox)
    assert {r["file_id"]: r for r in second.records} == {i: new[i] for i in second.ids}
    assert second.bookmark == greatest_modified_at(new)
    assert first.bookmark is not None
    assert second.bookmark > first.bookmark


def test_a_run_with_no_changes_keeps_the_bookmark(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    first = sync(config)

    second = sync(config, state=first.state)

    assert second.bookmark == first.bookmark


def test_bookmarks_compare_as_instants_whatever_their_form(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    bookmark = "2024-06-01T14:00:00+02:00"  # 12:00 UTC

    result = sync(config, state=state_at(bookmark))

    assert set(result.ids) == emitted_since(sandbox, "2024-06-01T12:00:00Z")


def test_the_modified_since_param_sends_the_bookmark_to_the_api(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    first = sync(config)
    sandbox.dataset.touch([10, 20])
    time.sleep(0.01)  # the SDK caps a bookmark at the sync's start, in whole ms
    sandbox.requests.clear()

    with_param = sync(
        {**config, "modified_since_param": "modified_since"}, state=first.state
    )
    tap_filtered = sync(config, state=first.state)

    sent = [r.params.get("modified_since") for r in sandbox.page_requests()]
    assert sent[0] == first.bookmark
    assert sent[1:] == [None] * (len(sent) - 1)
    assert sorted(with_param.ids) == sorted(tap_filtered.ids)
    assert with_param.bookmark == tap_filtered.bookmark


def test_the_lookback_window_reaches_back_before_the_bookmark(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    first = sync(config)
    lookback_days = 30

    result = sync(
        {**config, "lookback_window": lookback_days * 86400}, state=first.state
    )

    assert first.bookmark is not None
    since = parse_instant(first.bookmark) - timedelta(days=lookback_days)
    expected = emitted_since(sandbox, format_instant(since))
    assert set(result.ids) == expected
    assert len(expected) > 3
    assert result.bookmark == first.bookmark


def test_null_and_missing_modified_at_are_emitted_quietly_and_never_bookmarked(
    sandbox: Sandbox, config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    raw = {f["file_id"]: f for f in sandbox.dataset.current()}

    with caplog.at_level(logging.DEBUG):
        result = sync(config)

    nulls = [r for r in result.records if r["modified_at"] is None]
    assert any("modified_at" not in raw[r["file_id"]] for r in nulls)
    assert any(raw[r["file_id"]].get("modified_at", "") is None for r in nulls)
    assert result.bookmark is not None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [w for w in warnings if "null" in w.lower()]


@pytest.mark.parametrize("key", ["replication-method", "forced-replication-method"])
def test_full_table_metadata_emits_everything_despite_state_and_start_date(
    sandbox: Sandbox, config: dict[str, Any], key: str
) -> None:
    config = {**config, "start_date": "2024-06-01T00:00:00Z"}
    first = sync(config)

    result = sync(config, state=first.state, catalog=full_table_catalog(config, key))

    assert sorted(result.ids) == sorted(expected_records(sandbox))
    assert len(first.records) < len(result.records)


def test_a_run_without_bookmark_activates_its_version_after_the_last_record(
    config: dict[str, Any],
) -> None:
    result = sync(config)

    kinds = [m["type"] for m in result.messages]
    assert kinds[:2] == ["SCHEMA", "RECORD"]
    assert kinds[-2:] == ["ACTIVATE_VERSION", "STATE"]
    assert kinds.count("ACTIVATE_VERSION") == 1
    versions = {m["version"] for m in result.of_type("ACTIVATE_VERSION")}
    assert len(versions) == 1
    assert {m.get("version") for m in result.of_type("RECORD")} == versions


def test_a_failed_run_sends_no_activate_version(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("status", status=500, skip=1, times=10)
    with captured_stdout() as out, pytest.raises(RetriesExhaustedError):
        TapFileStore(config=config, parse_env_config=False).sync_all()

    assert b"ACTIVATE_VERSION" not in out.getvalue()
    assert b'"RECORD"' in out.getvalue()


def test_a_run_from_a_bookmark_sends_no_activate_version(
    config: dict[str, Any],
) -> None:
    first = sync(config)

    second = sync(config, state=first.state)

    assert second.of_type("ACTIVATE_VERSION") == []
