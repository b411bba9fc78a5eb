"""Offset pagination: where it starts, steps and stops."""

from __future__ import annotations

import json
import logging
import tracemalloc
from typing import Any

import pytest

from tap_filestore.errors import IncompleteListingError, PaginationLoopError
from tap_filestore.pagination import Page, PageCycleCheck
from tap_filestore.sandbox import Sandbox
from tap_filestore.tap import TapFileStore
from tests.conftest import FAST_RETRIES, captured_stdout, expected_records, sync


def offsets(sandbox: Sandbox) -> list[tuple[int, int]]:
    return [
        (int(r.params["offset"]), int(r.params["limit"]))
        for r in sandbox.page_requests()
    ]


def test_pages_step_by_page_size_and_stop_on_a_short_page(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    result = sync({**config, "page_size": 100})

    assert offsets(sandbox) == [(0, 100), (100, 100), (200, 100)]
    assert len(result.records) == 250


@pytest.mark.parametrize("page_size", [1, 7, 250, 1000])
def test_any_page_size_gets_every_file(
    sandbox: Sandbox, config: dict[str, Any], page_size: int
) -> None:
    result = sync({**config, "page_size": page_size})

    assert sorted(result.ids) == sorted(expected_records(sandbox))
    assert all(limit == page_size for _, limit in offsets(sandbox))


def test_a_known_total_saves_the_request_for_an_empty_page() -> None:
    with Sandbox(200) as api:
        result = sync(api.config(page_size=100, **FAST_RETRIES))

        assert offsets(api) == [(0, 100), (100, 100)]
        assert len(result.records) == 200


def test_without_total_paging_stops_on_an_empty_page() -> None:
    with Sandbox(200, include_total=False) as api:
        result = sync(api.config(page_size=100, **FAST_RETRIES))

        assert offsets(api) == [(0, 100), (100, 100), (200, 100)]
        assert sorted(result.ids) == sorted(expected_records(api))


def test_without_total_a_short_page_is_confirmed_by_one_more_request() -> None:
    with Sandbox(250, include_total=False) as api:
        result = sync(api.config(page_size=100, **FAST_RETRIES))

        assert offsets(api) == [(0, 100), (100, 100), (200, 100), (250, 100)]
        assert len(result.records) == 250


def test_an_empty_collection_makes_one_request() -> None:
    with Sandbox(0) as api:
        result = sync(api.config(**FAST_RETRIES))

        assert offsets(api) == [(0, 100)]
        assert result.records == []


def test_an_api_that_ignores_offset_is_an_error_not_a_hang(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    sandbox.ignore_offset = True

    with pytest.raises(PaginationLoopError, match="ignores or wraps `offset`"):
        sync(config)
    assert len(sandbox.page_requests()) == 2


def test_a_repeated_page_is_refused_before_its_records_go_out(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    sandbox.ignore_offset = True

    with captured_stdout() as out, pytest.raises(PaginationLoopError):
        TapFileStore(config=config, parse_env_config=False).sync_all()

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    ids = [line["record"]["file_id"] for line in lines if line["type"] == "RECORD"]
    assert len(ids) == len(set(ids)) == 100  # the first page, once


def test_a_total_smaller_than_the_data_does_not_cut_the_sync_short(
    sandbox: Sandbox, config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.total_override = 150

    with caplog.at_level(logging.WARNING):
        result = sync(config)

    assert len(result.records) == 250
    assert "reported total=150" in caplog.text


def test_a_listing_that_ends_short_of_its_total_fails_instead_of_succeeding(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    sandbox.total_override = 10_000

    with pytest.raises(IncompleteListingError, match=r"total=10000 .* offset 250"):
        sync(config)
    # A short page is not the end while `total` says more; an empty one is.
    assert offsets(sandbox) == [(0, 100), (100, 100), (200, 100), (250, 100)]


# The API decides its page size (issue 18)


@pytest.mark.parametrize("in_flight", [1, 16])
@pytest.mark.parametrize("with_total", [True, False])
@pytest.mark.parametrize(
    "quirk",
    [
        ("serve_at_most", 40, "serves at most 40 files a page"),  # a cap
        ("serve_at_least", 150, "serves 150 files a page"),  # more than asked
    ],
    ids=["cap", "overshoot"],
)
def test_an_api_that_serves_its_own_page_size_gives_every_file_once(
    caplog: pytest.LogCaptureFixture,
    quirk: tuple[str, int, str],
    in_flight: int,
    *,
    with_total: bool,
) -> None:
    attribute, served, said = quirk
    with Sandbox(1000, include_total=with_total) as api:
        setattr(api, attribute, served)
        api.latency = 0.005  # slow enough to fetch ahead
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": in_flight})

        with caplog.at_level(logging.INFO):
            result = sync(config)
        requested = sorted(offsets(api))

    assert sorted(result.ids) == sorted(expected_records(api))
    assert len(result.ids) == 1000
    # Offsets follow what each page held; only a listing without `total`
    # pays one more request, to confirm its end.
    pages = [(offset, 100) for offset in range(0, 1000, served)]
    assert requested == (pages if with_total else [*pages, (1000, 100)])
    assert caplog.text.count(said) == 1


@pytest.mark.parametrize("in_flight", [1, 16])
def test_a_page_that_breaks_the_plan_replans_from_its_true_end(in_flight: int) -> None:
    with Sandbox(2000) as api:
        api.serve_at_most = 40
        api.latency = 0.005

        def shrink_the_pages() -> None:
            api.serve_at_most = 30

        # From the sixth page on, the API serves 30 files a page, not 40.
        api.inject("call", action=shrink_the_pages, skip=5)
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": in_flight})

        result = sync(config)
        requested = offsets(api)

    assert sorted(result.ids) == sorted(expected_records(api))
    assert len(result.ids) == 2000
    # Pages planned on 40 files that were already on the wire are wasted,
    # at most as many as may be in flight; none is sent past the total. (With
    # 16 in flight the sixth request to arrive need not be offset 200: the
    # switch may come a page early, one page more.)
    consumed = len(range(0, 200, 40)) + len(range(200, 2000, 30))
    assert consumed - 1 <= len(requested) <= consumed + in_flight
    assert all(offset < 2000 for offset, _ in requested)


def test_pages_queued_when_the_listing_ends_are_not_sent() -> None:
    with Sandbox(25) as api:
        api.total_override = 10**9  # far more than the data
        api.latency = 0.01
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 16, "page_size": 10}
        )

        with pytest.raises(IncompleteListingError):
            sync(config)
        requested = offsets(api)

    # Page 20 holds 5 files, shorter than the pages before it: only the page
    # after it (25) is asked for, and once it comes back empty nothing more
    # goes out. Beyond the three pages with files and the empty one, only
    # pages planned on the 10-file pages and already on the wire when page 20
    # came back are wasted (6 measured, the width by then).
    off_stride = [offset for offset, _ in requested if offset % 10]
    assert off_stride == [25]
    assert len(requested) < 4 + 16


# Paging cannot run forever (issue 9, class 4)


@pytest.mark.parametrize("period", [1, 2, 3, 7])
@pytest.mark.parametrize("back_to", [0, 300])
@pytest.mark.parametrize("with_total", [True, False])
def test_an_api_that_cycles_through_pages_stops_with_one_error(
    period: int, back_to: int, *, with_total: bool
) -> None:
    with Sandbox(2000, include_total=with_total) as api:
        # Offsets past back_to + period pages wrap around to back_to.
        api.wrap_offset_to = back_to
        api.wrap_offset_at = back_to + period * 100

        with pytest.raises(PaginationLoopError, match="same files as offset"):
            sync(api.config(**FAST_RETRIES))
        requests = len(api.page_requests())

    # Caught within a few periods: never the whole listing.
    assert period < requests - back_to // 100 <= 4 * period + 2


def test_the_cycle_check_keeps_constant_memory_over_distinct_pages() -> None:
    check = PageCycleCheck()

    def feed(first: int, last: int) -> None:
        for offset in range(first, last, 3):
            page = Page(offset, [{"file_id": f"f{offset + i}"} for i in range(3)], None)
            assert check.seen_before(page) is None

    tracemalloc.start()
    try:
        feed(0, 30_000)
        after_10k_pages, _ = tracemalloc.get_traced_memory()
        feed(30_000, 300_000)
        after_100k_pages, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # A set of the ids seen would grow by megabytes; the check grows by nothing.
    assert after_100k_pages - after_10k_pages < 4096


def test_fetching_ahead_never_asks_past_a_known_total() -> None:
    with Sandbox(250) as api:
        api.latency = 0.005  # slow enough to fetch ahead
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 16})

        result = sync(config)
        requested = offsets(api)

    assert len(result.records) == 250
    assert sorted(requested) == [(0, 100), (100, 100), (200, 100)]


def test_a_page_repeating_the_first_names_where_the_first_was() -> None:
    check = PageCycleCheck()
    first = Page(500, [{"file_id": "a"}, {"file_id": "b"}], None)

    assert check.seen_before(first) is None
    assert check.seen_before(Page(502, list(first.files), None)) == 500
