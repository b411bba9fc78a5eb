"""Retries: which failures, how many times, how long to wait, how it ends."""

from __future__ import annotations

import logging
from email.utils import formatdate
from time import time
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.client import MAX_RETRY_AFTER_S
from tap_filestore.errors import APIRequestError, RetriesExhaustedError
from tests.conftest import expected_records, sync

if TYPE_CHECKING:
    from tap_filestore.sandbox import Sandbox


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_with_exponential_waits(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float], status: int
) -> None:
    sandbox.inject("status", status=status, times=3, skip=1)

    result = sync({**config, "backoff_factor": 2, "max_retries": 3})

    assert waits == [2, 4, 8]
    assert sorted(result.ids) == sorted(expected_records(sandbox))
    assert len(sandbox.page_requests()) == 3 + 3


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("7", [7, 9]),  # longer than the first backoff (3 s): it sets that wait
        ("1", [3, 9]),  # shorter: it never shortens the backoff
    ],
)
def test_retry_after_in_seconds_waits_the_longer_of_it_and_the_backoff(
    sandbox: Sandbox,
    config: dict[str, Any],
    waits: list[float],
    retry_after: str,
    expected: list[float],
) -> None:
    sandbox.inject("status", status=429, retry_after=retry_after, times=2)

    sync({**config, "backoff_factor": 3})

    assert waits == expected


def test_retry_after_as_an_http_date_is_honoured(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject(
        "status", status=503, retry_after=formatdate(time() + 30, usegmt=True)
    )

    sync({**config, "backoff_factor": 2})

    assert len(waits) == 1
    assert 27 <= waits[0] <= 30


#: A date already past: fixed, so that every pytest worker collects the same tests.
PAST_DATE = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize("hint", ["0", "-5", PAST_DATE, "soon"])
def test_a_zero_negative_past_or_unreadable_retry_after_is_no_hint(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float], hint: str
) -> None:
    sandbox.inject("status", status=429, retry_after=hint)

    sync({**config, "backoff_factor": 2})

    assert waits == [2]


def test_an_absurd_retry_after_is_capped_and_said_so(
    sandbox: Sandbox,
    config: dict[str, Any],
    waits: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox.inject("status", status=429, retry_after="86400")

    with caplog.at_level(logging.INFO):
        sync(config)

    assert waits == [MAX_RETRY_AFTER_S]
    assert "Retry-After asks for 86400 s" in caplog.text


def test_each_retry_is_logged_at_info_with_status_and_wait(
    sandbox: Sandbox,
    config: dict[str, Any],
    waits: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox.inject("status", status=503, skip=1)

    with caplog.at_level(logging.INFO):
        sync({**config, "backoff_factor": 2})

    lines = [r for r in caplog.records if r.getMessage().startswith("Retry ")]
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    assert lines[0].getMessage() == (
        "Retry 1 of 3 in 2.0 s after 503 Service Unavailable from "
        "/v1/files?offset=100&limit=100"
    )
    assert waits == [2]


def test_failures_beyond_max_retries_fail_naming_status_path_and_attempts(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("status", status=502, times=10, skip=1)

    with pytest.raises(RetriesExhaustedError) as failure:
        sync({**config, "max_retries": 2})

    message = str(failure.value)
    assert "GET /v1/files?offset=100&limit=100 failed after 3 attempts" in message
    assert "502 Bad Gateway" in message
    assert len(waits) == 2
    assert len(sandbox.page_requests()) == 1 + 3


def test_max_retries_zero_means_one_attempt(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("status", status=503)

    with pytest.raises(RetriesExhaustedError, match="after 1 attempts"):
        sync({**config, "max_retries": 0})
    assert waits == []


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_other_client_errors_fail_at_once_with_the_api_error_text(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float], status: int
) -> None:
    sandbox.inject("status", status=status, skip=1)

    with pytest.raises(APIRequestError, match=f"{status} .*injected {status}"):
        sync(config)
    assert waits == []
    assert len(sandbox.page_requests()) == 2


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_a_dropped_connection_is_retried(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float], kind: str
) -> None:
    sandbox.inject(kind, skip=1, times=2)

    result = sync(config)

    assert len(waits) == 2
    assert sorted(result.ids) == sorted(expected_records(sandbox))


def test_a_page_slower_than_request_timeout_is_retried(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("slow", delay=1.5, skip=1)

    result = sync({**config, "request_timeout": 0.5})

    assert len(waits) == 1
    assert len(result.records) == 250


def test_a_page_always_slower_than_request_timeout_fails_cleanly(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("slow", delay=1, times=10)

    with pytest.raises(
        RetriesExhaustedError, match="no complete answer within request_timeout"
    ):
        sync({**config, "request_timeout": 0.2, "max_retries": 1})
    assert len(waits) == 1


def test_an_unreachable_host_fails_after_the_retries(waits: list[float]) -> None:
    config = {
        "client_id": "x",
        "client_secret": "y",
        "base_url": "http://127.0.0.1:9",
        "max_retries": 2,
    }

    with pytest.raises(
        RetriesExhaustedError, match=r"connection failed \(Connection refused\)"
    ):
        sync(config)
    assert len(waits) == 2
