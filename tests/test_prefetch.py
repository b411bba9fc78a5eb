"""Fetching pages ahead: same records, same order, pages in flight, fewer on 429.

The sandbox answers in well under a millisecond, too quick to fetch ahead from:
tests of fetching ahead give it the answer time of a distant API.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore import batches, prefetch
from tap_filestore.errors import APIRequestError, BatchWriteError, RetriesExhaustedError
from tap_filestore.sandbox import Sandbox
from tests.conftest import FAST_RETRIES, expected_records, sync

if TYPE_CHECKING:
    from pathlib import Path

#: Seconds a page answer takes from a distant API.
DISTANT = 0.01


@pytest.mark.parametrize("width", [2, 4, 16])
def test_fetching_ahead_emits_the_same_records_in_the_same_order(width: int) -> None:
    with Sandbox(1234) as api:
        api.latency = DISTANT
        config = api.config(**FAST_RETRIES, page_size=50)
        one = sync({**config, "max_concurrent_requests": 1})
        api.requests.clear()

        many = sync({**config, "max_concurrent_requests": width})

        assert many.records == one.records
        assert many.bookmark == one.bookmark
        assert sorted(many.ids) == sorted(expected_records(api))
        offsets = sorted(int(r.params["offset"]) for r in api.page_requests())
        assert offsets == list(range(0, 1234, 50))  # each page once, none past total


def test_pages_are_in_flight_together_when_total_is_known() -> None:
    with Sandbox(800) as api:
        api.latency = 0.2
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 4})

        sync(config)

        starts = [r.at for r in api.page_requests()]
        overlapping = sum(1 for a, b in itertools.pairwise(starts) if b - a < 0.1)
        assert overlapping >= 3


def test_an_api_that_answers_quickly_is_read_one_page_at_a_time(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process the sandbox answers in a few ms (it shares the
    # interpreter lock with the tap): count that as quick.
    monkeypatch.setattr(prefetch, "QUICK_ANSWER_S", 0.04)
    with Sandbox(2000) as api:
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 4})

        def slow_down() -> None:  # once the tap has judged the second page
            api.latency = 0.05

        api.inject("call", skip=2, action=slow_down)

        with caplog.at_level(logging.INFO):
            result = sync(config)

        starts = [r.at for r in api.page_requests()][2:]
        assert len(starts) == 18
        assert all(b - a >= 0.045 for a, b in itertools.pairwise(starts))
        assert "fetching one page at a time" in caplog.text
        assert sorted(result.ids) == sorted(expected_records(api))


def test_without_total_pages_come_one_at_a_time() -> None:
    with Sandbox(800, include_total=False) as api:
        api.latency = 0.1
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 4})

        result = sync(config)

        starts = sorted(r.at for r in api.page_requests())
        assert all(b - a >= 0.09 for a, b in itertools.pairwise(starts))
        assert len(result.records) == 800


def test_a_429_halves_the_pages_in_flight(
    waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    with Sandbox(2000) as api:
        api.latency = DISTANT
        api.inject("status", status=429, skip=3)
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 4})

        with caplog.at_level(logging.INFO):
            result = sync(config)

        assert sorted(result.ids) == sorted(expected_records(api))
        assert re.search(r"Pages in flight: (\d+) -> \d+ \(429 ", caplog.text)
        assert len(waits) == 1


def test_a_failure_of_a_page_fetched_ahead_fails_the_sync_at_that_page(
    waits: list[float],
) -> None:
    with Sandbox(1000) as api:
        api.latency = DISTANT
        api.inject("status", status=500, skip=5, times=20)
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 4}, max_retries=1
        )

        with pytest.raises(RetriesExhaustedError, match="failed after 2 attempts"):
            sync(config)


def test_after_a_failure_pages_waiting_for_the_wire_are_not_sent() -> None:
    with Sandbox(3000) as api:
        api.latency = 0.3
        # A page fetched ahead fails; the pages after it wait for the wire.
        api.inject("status", status=403, skip=2)
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 16})

        with pytest.raises(APIRequestError, match="403"):
            sync(config)
        failed_at = time.monotonic()
        time.sleep(3 * api.latency)  # time for stray requests to arrive

        # Pages on the wire when it failed are answered; none goes after.
        assert max(r.arrived for r in api.page_requests()) < failed_at + 0.05


def test_after_a_batch_file_fails_no_page_fetched_ahead_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write = batches.RunFolder.write

    def fail_on_the_second_file(
        folder: batches.RunFolder, records: Any, extra: dict[str, Any]
    ) -> batches.BatchFile | None:
        if any(folder.path.iterdir()):
            msg = "Cannot write batch files at the folder: disk full (injected)"
            raise BatchWriteError(msg)
        return write(folder, records, extra)

    monkeypatch.setattr(batches.RunFolder, "write", fail_on_the_second_file)
    with Sandbox(3000) as api:
        api.latency = 0.3
        batch_config = {
            "encoding": {"format": "jsonl", "compression": "none"},
            "storage": {"root": str(tmp_path)},
            "batch_size": 100,
        }
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 16}, batch_config=batch_config
        )

        with pytest.raises(BatchWriteError, match="injected"):
            sync(config)
        failed_at = time.monotonic()
        time.sleep(3 * api.latency)  # time for stray requests to arrive

        # Pages on the wire when it failed are answered; none goes after.
        assert max(r.arrived for r in api.page_requests()) < failed_at + 0.05
