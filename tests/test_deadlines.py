"""Every request has a deadline (issue 9, class 3).

`request_timeout` bounds a whole request: connect, headers and the entire
body. The sandbox's `drip` fault answers one byte every `delay` seconds, so
each socket read succeeds and a per-read timeout never fires.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.errors import RetriesExhaustedError
from tests.conftest import expected_records, sync

if TYPE_CHECKING:
    from tap_filestore.sandbox import Sandbox

#: About 100 bytes at this pace take 5 s: ten times the deadline below.
DRIP_DELAY_S = 0.05
DEADLINE = {"request_timeout": 0.5}


def test_a_page_dripped_byte_by_byte_is_abandoned_at_the_deadline_and_retried(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    # Finished, the dripped answer is an empty page: it would end the sync early.
    sandbox.inject("drip", delay=DRIP_DELAY_S, skip=1)

    result = sync({**config, **DEADLINE})

    assert len(waits) == 1
    assert sorted(result.ids) == sorted(expected_records(sandbox))


def test_a_token_answer_dripped_byte_by_byte_is_abandoned_and_retried(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("drip", endpoint="token", delay=DRIP_DELAY_S)

    result = sync({**config, **DEADLINE})

    assert len(waits) == 1
    assert len(sandbox.token_requests()) == 2
    assert len(result.records) == 250


@pytest.mark.parametrize("in_flight", [1, 4])
def test_an_api_that_always_drips_fails_after_the_retries_naming_the_deadline(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float], in_flight: int
) -> None:
    sandbox.latency = 0.005
    sandbox.inject("drip", delay=DRIP_DELAY_S, skip=1, times=20)

    with pytest.raises(
        RetriesExhaustedError,
        match="failed after 2 attempts: no complete answer within request_timeout",
    ):
        sync(
            {
                **config,
                **DEADLINE,
                "max_retries": 1,
                "max_concurrent_requests": in_flight,
            }
        )
    assert waits
