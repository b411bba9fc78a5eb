"""Offset pagination: where it starts, steps and stops."""

from __future__ import annotations

import logging

import pytest

from tap_filestore.errors import PaginationLoopError
from tap_filestore.sandbox import Sandbox
from tests.conftest import FAST_RETRIES, expected_records, sync


def offsets(sandbox: Sandbox) -> list[tuple[int, int]]:
    return [
        (int(r.params["offset"]), int(r.params["limit"]))
        for r in sandbox.page_requests()
    ]


def test_pages_step_by_page_size_and_stop_on_a_short_page(
    sandbox: Sandbox, config: dict
) -> None:
    result = sync({**config, "page_size": 100})

    assert offsets(sandbox) == [(0, 100), (100, 100), (200, 100)]
    assert len(result.records) == 250


@pytest.mark.parametrize("page_size", [1, 7, 250, 1000])
def test_any_page_size_gets_every_file(
    sandbox: Sandbox, config: dict, page_size: int
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


def test_without_total_a_short_page_ends_paging() -> None:
    with Sandbox(250, include_total=False) as api:
        result = sync(api.config(page_size=100, **FAST_RETRIES))

        assert offsets(api) == [(0, 100), (100, 100), (200, 100)]
        assert len(result.records) == 250


def test_an_empty_collection_makes_one_request() -> None:
    with Sandbox(0) as api:
        result = sync(api.config(**FAST_RETRIES))

        assert offsets(api) == [(0, 100)]
        assert result.records == []


def test_an_api_that_ignores_offset_is_an_error_not_a_hang(
    sandbox: Sandbox, config: dict
) -> None:
    sandbox.ignore_offset = True

    with pytest.raises(PaginationLoopError, match="ignores `offset`"):
        sync(config)
    assert len(sandbox.page_requests()) == 2


def test_a_total_smaller_than_the_data_does_not_cut_the_sync_short(
    sandbox: Sandbox, config: dict, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.total_override = 150

    with caplog.at_level(logging.WARNING):
        result = sync(config)

    assert len(result.records) == 250
    assert "reported total=150" in caplog.text


def test_a_total_larger_than_the_data_stops_on_the_short_page(
    sandbox: Sandbox, config: dict
) -> None:
    sandbox.total_override = 10_000

    result = sync(config)

    assert len(result.records) == 250
    assert offsets(sandbox) == [(0, 100), (100, 100), (200, 100)]
