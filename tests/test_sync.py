"""A sync's own decisions (`SyncRun`), without sockets or the SDK."""

from __future__ import annotations

import pytest

from tap_filestore.pagination import Page
from tap_filestore.sync import (
    CHECKPOINT_EVERY_RECORDS,
    CHECKPOINT_EVERY_S,
    Ending,
    SyncRun,
)

SINCE = "2026-01-01T00:00:00.000000+00:00"


def run(*, batching: bool = False, fresh_start: bool = False) -> SyncRun:
    return SyncRun(
        since=SINCE,
        started="2026-06-01T00:00:00.000000+00:00",
        fresh_start=fresh_start,
        batching=batching,
    )


def test_records_before_the_filter_stay_out_and_the_newest_is_counted() -> None:
    sync = run()

    kept = [
        sync.keeps(modified)
        for modified in (
            "2025-12-31T23:59:59.999999+00:00",
            "2026-03-01T00:00:00.000000+00:00",
            None,
            SINCE,
            "2026-02-01T00:00:00.000000+00:00",
        )
    ]

    assert kept == [False, True, True, True, True]
    assert sync.newest == "2026-03-01T00:00:00.000000+00:00"


def test_a_checkpoint_holds_where_the_sync_is_and_what_it_has_seen() -> None:
    sync = run()
    sync.keeps("2026-02-01T00:00:00.000000+00:00")
    page = Page(files=[{"file_id": "a"}, {"file_id": "b"}], offset=200, total=None)

    checkpoint = sync.checkpoint(page, "b", 7, shifted=True)

    assert (checkpoint.offset, checkpoint.file_id, checkpoint.page) == (202, "b", 2)
    assert (checkpoint.since, checkpoint.started) == (SINCE, sync.started)
    assert (checkpoint.version, checkpoint.seen) == (7, sync.newest)
    assert checkpoint.shrank is True


def test_in_record_mode_a_state_is_due_every_so_many_records_or_seconds() -> None:
    sync = run()

    due = [
        sync.state_due(now, emitted)
        for now, emitted in (
            (1.0, CHECKPOINT_EVERY_RECORDS - 1),
            (2.0, CHECKPOINT_EVERY_RECORDS),  # records: due
            (3.0, CHECKPOINT_EVERY_RECORDS + 5),
            (2.0 + CHECKPOINT_EVERY_S, CHECKPOINT_EVERY_RECORDS + 6),  # seconds
            (3.0 + CHECKPOINT_EVERY_S, CHECKPOINT_EVERY_RECORDS + 7),
        )
    ]

    assert due == [False, True, False, True, False]


def test_in_batch_mode_no_state_is_due_between_batches() -> None:
    sync = run(batching=True)

    assert not sync.state_due(10 * CHECKPOINT_EVERY_S, 10 * CHECKPOINT_EVERY_RECORDS)


@pytest.mark.parametrize(
    ("fresh_start", "shortfall", "shifted", "ending"),
    [
        (True, None, False, Ending.ACTIVATE),
        (False, None, False, Ending.COMPLETE),
        (True, None, True, Ending.SHIFTED),  # shifted: never a version
        (True, "3 files short", True, Ending.SHIFTED),
        (True, "3 files short", False, Ending.INCOMPLETE),
        (False, "3 files short", False, Ending.INCOMPLETE),
    ],
)
def test_only_a_complete_unshifted_listing_of_a_fresh_sync_activates_a_version(
    *, fresh_start: bool, shortfall: str | None, shifted: bool, ending: Ending
) -> None:
    sync = run(fresh_start=fresh_start)

    assert sync.ending(shortfall=shortfall, shifted=shifted) is ending
