"""What state claims when a sync fails, and what holds when the API shifts under it."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore import sync as sync_run
from tap_filestore.errors import RetriesExhaustedError
from tap_filestore.tap import TapFileStore
from tests.conftest import captured_stdout, expected_records, state_at, sync

if TYPE_CHECKING:
    from tap_filestore.sandbox import Sandbox


def failing_sync(
    config: dict[str, Any], state: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Run a sync that must fail; return the messages it wrote before failing."""
    with captured_stdout() as out, pytest.raises(RetriesExhaustedError):
        TapFileStore(config=config, state=state, parse_env_config=False).sync_all()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def claimed_bookmarks(messages: list[dict[str, Any]]) -> set[str | None]:
    return {
        m["value"]["bookmarks"]["files"].get("replication_key_value")
        for m in messages
        if m["type"] == "STATE"
    }


@pytest.fixture
def frequent_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Write interim STATE (with a checkpoint) every page, not every 10,000 records."""
    monkeypatch.setattr(sync_run, "CHECKPOINT_EVERY_RECORDS", 50)


@pytest.mark.usefixtures("frequent_state")
def test_a_failed_first_sync_claims_no_bookmark(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("status", status=503, skip=2, times=10)

    messages = failing_sync(config)

    assert sum(m["type"] == "RECORD" for m in messages) == 200
    assert any(m["type"] == "STATE" for m in messages)
    assert claimed_bookmarks(messages) == {None}
    assert len(waits) == 3


@pytest.mark.usefixtures("frequent_state")
def test_a_failed_sync_never_moves_the_bookmark_past_what_it_emitted(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    bookmark = "2024-01-01T00:00:00.000000+00:00"
    state = state_at(bookmark)
    sandbox.inject("status", status=500, skip=2, times=10)

    messages = failing_sync(config, state)

    assert any(m["type"] == "RECORD" for m in messages)
    assert claimed_bookmarks(messages) == {bookmark}
    assert waits


def test_a_file_changed_during_a_sync_arrives_with_the_next_sync(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    edit: dict[str, list[str]] = {}
    sandbox.inject(
        "call", skip=1, action=lambda: edit.update(ids=sandbox.dataset.touch([5]))
    )

    first = sync(config)
    time.sleep(0.01)
    second = sync(config, state=first.state)

    (changed,) = edit["ids"]
    new_version = expected_records(sandbox)[changed]
    assert new_version not in first.records  # page 1 was read before the edit
    assert new_version in second.records


def test_a_file_added_during_a_sync_arrives_with_this_or_the_next_sync(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    added: dict[str, list[str]] = {}
    sandbox.inject(
        "call", skip=1, action=lambda: added.update(ids=sandbox.dataset.add(3))
    )

    first = sync(config)
    time.sleep(0.01)
    second = sync(config, state=first.state)

    assert set(added["ids"]) <= set(first.ids) | set(second.ids)


def test_a_deletion_during_a_sync_keeps_the_bookmark_so_skipped_files_come_next(
    sandbox: Sandbox, config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    previous = sync(config)
    sandbox.dataset.touch([100, 150])  # both changed since the bookmark
    time.sleep(0.01)
    skipped = sandbox.dataset.file(100).file_id
    sandbox.inject("call", skip=1, action=lambda: sandbox.dataset.delete([10]))

    with caplog.at_level(logging.WARNING):
        shifted = sync(config, state=previous.state)

    # Deleting file 10 moved file 100 from offset 100 to 99: page 2 missed it.
    assert skipped not in shifted.ids
    assert shifted.bookmark == previous.bookmark
    assert "the bookmark stays where this sync started" in caplog.text
    after = sync(config, state=shifted.state)
    assert skipped in after.ids
    assert after.bookmark is not None
    assert previous.bookmark is not None
    assert after.bookmark > previous.bookmark


def test_a_first_sync_that_saw_deletions_does_not_retire_rows(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    sandbox.inject("call", skip=1, action=lambda: sandbox.dataset.delete([10]))

    result = sync(config)

    assert result.of_type("ACTIVATE_VERSION") == []
    # File 10 was read before its deletion; the shift made page 2 skip file 100.
    assert len(result.records) == 249
    assert result.bookmark is None
