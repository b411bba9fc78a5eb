"""Pages in flight that adapt, a client-side rate limit, and pauses for everyone.

The controller (`prefetch.Width`) is checked on its own, answer by answer, and
what a 429 teaches the pacer (`pacing.Pacer`) lesson by lesson on a hand-moved
clock; the rest through real HTTP to the sandbox, read from the sandbox's
request log (when each request arrived, how many pages were being answered then).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import re

import pytest

from tap_filestore.pacing import Pacer
from tap_filestore.prefetch import Width
from tap_filestore.sandbox import Sandbox
from tests.conftest import FAST_RETRIES, expected_records, sync

#: A distant API's answer time: slow enough that many pages are worth having in
#: flight, even with the tap and the sandbox in one process.
ANSWER_S = 0.1
#: How late the sandbox may stamp a request's arrival (see `_most_in_one_second`).
ARRIVAL_SLACK = 0.05


def test_the_width_starts_small_and_doubles_each_round_trip_to_the_ceiling() -> None:
    width = Width(16)
    widths = [int(width)]
    for _ in range(20):
        width.answered(ANSWER_S, now=0.0)
        widths.append(int(width))

    assert widths[0] == Width.START == 4
    assert widths[:13] == list(range(4, 17))  # one more per healthy answer
    assert set(widths[13:]) == {16}


def test_the_width_halves_on_strain_once_a_round_trip_then_grows_one_a_round_trip() -> (
    None
):
    width = Width(16)
    for _ in range(20):
        width.answered(ANSWER_S, now=0.0)

    assert width.shrink(now=10.0)
    assert int(width) == 8
    # The other pages that were in flight when it shrank say nothing new.
    assert not width.shrink(now=10.0 + ANSWER_S / 2)
    assert int(width) == 8
    # Growing back: by one for about as many answers as pages in flight.
    answers_to_grow = []
    for _ in range(2):
        before, answers = int(width), 0
        while int(width) == before:
            width.answered(ANSWER_S, now=11.0)
            answers += 1
        answers_to_grow.append(answers)
    assert answers_to_grow in ([9, 9], [9, 10], [8, 9])
    assert int(width) == 10
    assert width.shrink(now=12.0)
    assert width.shrink(now=13.0)
    assert width.shrink(now=14.0)
    assert width.shrink(now=15.0)
    assert int(width) == 1  # never below one


def test_answers_twice_as_slow_as_usual_shrink_the_width_until_usual_again() -> None:
    width = Width(16)
    for _ in range(30):
        width.answered(ANSWER_S, now=0.0)
    assert int(width) == 16

    reasons = [width.answered(ANSWER_S * 4, now=float(n)) for n in range(1, 400)]

    shrunk = [reason for reason in reasons if reason]
    assert shrunk
    assert shrunk[0].startswith("answers slowed from ")
    # The API is slower for good: it becomes the usual, and the width grows back.
    assert not any(reasons[-200:])
    assert int(width) == 16


class _ManualClock:
    """A monotonic clock that moves only when told or slept on."""

    def __init__(self) -> None:
        self.now = 100.0

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _pace(pacer: Pacer, clock: _ManualClock) -> float:
    """Return the requests a second the pacer lets through now."""
    pacer.wait()
    before = clock.now
    pacer.wait()
    return 1.0 / (clock.now - before) if clock.now > before else math.inf


def _accept(pacer: Pacer, clock: _ManualClock, answers: int, seconds: float) -> None:
    for _ in range(answers):
        clock.now += seconds / answers
        pacer.accepted(answer_seconds=0.0)


def test_429s_teach_what_the_api_accepted_and_one_episode_teaches_once() -> None:
    clock = _ManualClock()
    pacer = Pacer(clock=clock)
    pacer.wait()
    assert _pace(pacer, clock) == math.inf  # no limit known: no pacing
    # A burst the API allowed: 30 answers in the first second, then a 429.
    _accept(pacer, clock, 30, 1.0)
    pacer.rate_limited(answer_seconds=0.01)
    assert _pace(pacer, clock) == pytest.approx(0.9 * 30, rel=0.02)

    # Another 429 of the same episode (sent just after the lesson, answered
    # at once, nothing accepted since) teaches nothing.
    clock.now += 0.05
    pacer.rate_limited(answer_seconds=0.0)
    assert _pace(pacer, clock) == pytest.approx(0.9 * 30, rel=0.03)

    # Answers to requests sent before the lesson count for the time before it.
    for _ in range(10):
        pacer.accepted(answer_seconds=1.0)
    # Four seconds at the API's own 20 a second, then a 429: 20 it is.
    _accept(pacer, clock, 80, 4.0)
    pacer.rate_limited(answer_seconds=0.01)
    assert _pace(pacer, clock) == pytest.approx(20, rel=0.05)
    # Without a 429 the pace rises ...
    clock.now += 10
    assert 20 * 1.1 < _pace(pacer, clock) < 20 * 1.5
    # ... and a 429 with next to nothing accepted since halves it at most.
    clock.now += 10
    before = _pace(pacer, clock)
    pacer.rate_limited(answer_seconds=0.01)
    assert _pace(pacer, clock) == pytest.approx(before / 2, rel=0.05)


def test_max_concurrent_requests_1_is_one_page_at_a_time() -> None:
    with Sandbox(1000) as api:
        api.latency = 0.02
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 1})

        result = sync(config)

        assert {r.in_flight for r in api.page_requests()} == {1}
        assert sorted(result.ids) == sorted(expected_records(api))


@pytest.mark.parametrize("status", [429, 503])
def test_pages_in_flight_grow_to_the_ceiling_shrink_on_strain_and_grow_back(
    caplog: pytest.LogCaptureFixture, status: int
) -> None:
    with Sandbox(3600) as api:
        expected = sync(api.config(**FAST_RETRIES)).records
        api.requests.clear()
        # Slow enough for 12 in flight (24 requests a second) on a busy machine.
        api.latency = 5 * ANSWER_S
        api.inject("status", status=status, skip=60)
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 12}, page_size=20
        )

        with caplog.at_level(logging.INFO):
            result = sync(config)

        assert result.records == expected
        pages = sorted(api.page_requests(), key=lambda r: r.arrived)
        refused = next(i for i, r in enumerate(pages) if r.status == status)
        before, after = pages[:refused], pages[refused + 1 :]
        assert max(r.in_flight for r in before) >= 10
        shrink = re.search(rf"Pages in flight: (\d+) -> (\d+) \({status} ", caplog.text)
        assert shrink, caplog.text
        assert int(shrink[2]) <= int(shrink[1]) // 2 + 1
        # Sent once the strain was answered, pages fit the halved width ...
        # (Pages sent before it are answered within the latency.)
        answered = pages[refused].at + api.latency
        started_later = [r for r in after if r.arrived > answered][:8]
        assert max(r.in_flight for r in started_later) <= int(shrink[2]) + 2
        # ... and by the end they have grown back: to the ceiling after a 503,
        # past the halved width after a 429 (which also taught the pacer a
        # rate: 0.9x the answers a second before it, rising 2% a second).
        grown = 10 if status == 503 else int(shrink[2]) + 2
        assert max(r.in_flight for r in after[-40:]) >= grown


def test_while_a_refused_page_waits_its_retry_the_pages_after_it_go() -> None:
    with Sandbox(2000) as api:
        expected = sync(api.config(**FAST_RETRIES)).records
        api.requests.clear()
        api.latency = ANSWER_S / 2
        api.inject("status", status=503, skip=30)
        config = api.config(
            **{**FAST_RETRIES, "backoff_factor": 1.0, "max_concurrent_requests": 8},
            page_size=20,
        )

        result = sync(config)

        assert result.records == expected
        pages = sorted(api.page_requests(), key=lambda r: r.arrived)
        refused = next(r for r in pages if r.status == 503)
        retried = next(
            r for r in pages if r.params == refused.params and r is not refused
        )
        assert retried.arrived - refused.at >= 1.0  # its backoff, waited
        # The halved width bounds the pages on the wire, not the pages queued:
        # the 7 after it (8 at most wait in memory) are all asked for by then.
        offset = int(refused.params["offset"])
        asked = {int(r.params["offset"]) for r in pages if r.arrived < retried.arrived}
        assert {offset + 20 * step for step in range(1, 8)} <= asked
        # On the wire, meanwhile: the halved width, growing by a quarter an
        # answer (once the pages sent before the 503 are answered).
        shrunk = refused.at + api.latency
        waiting = [r for r in pages if shrunk < r.arrived < retried.arrived]
        assert max(r.in_flight for r in waiting) <= 4 + 2


def test_at_one_page_in_flight_answers_that_keep_slowing_log_no_halving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 22: "Pages in flight: 1 -> 1" announced a change that did not happen.
    with Sandbox(2000) as api:
        api.latency = 0.004

        def slow_down() -> None:  # each page 60% slower than the one before
            api.latency *= 1.6

        api.inject("call", action=slow_down, skip=2, times=9)
        config = api.config(**{**FAST_RETRIES, "max_concurrent_requests": 16})
        with caplog.at_level(logging.INFO, logger="tap_filestore.prefetch"):
            assert len(sync(config).records) == 2000

    changes = [
        tuple(map(int, found.groups()))
        for record in caplog.records
        if (found := re.match(r"Pages in flight: (\d+) -> (\d+)", record.message))
    ]
    assert any(after == 1 for _, after in changes), changes  # it reached one
    assert all(before > after for before, after in changes), changes


def test_answers_that_slow_down_mid_sync_shrink_the_width_records_stay_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Sandbox(4000) as api:
        expected = sync(api.config(**FAST_RETRIES)).records
        api.latency, api.jitter = 0.03, 0.3

        def slow_down() -> None:  # a distant API under load
            api.latency = 0.15

        api.inject("call", skip=80, action=slow_down)
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 16}, page_size=20
        )

        with caplog.at_level(logging.INFO):
            result = sync(config)

        assert result.records == expected
        assert re.search(r"Pages in flight: \d+ -> \d+ \(answers slowed", caplog.text)


def test_a_retry_after_pauses_every_request_not_only_the_refused_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Sandbox(4000) as api:
        api.latency = ANSWER_S
        api.inject("status", status=429, retry_after="1", skip=40)
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 8}, page_size=20
        )

        result = sync(config)

        assert sorted(result.ids) == sorted(expected_records(api))
        pages = api.page_requests()
        refusal = next(r for r in pages if r.status == 429)
        # Requests already sent when the 429 came are answered; no new one
        # arrives until its Retry-After has passed.
        arrivals = sorted(r.arrived for r in pages)
        paused = [t for t in arrivals if refusal.at + 0.02 < t < refusal.at + 0.95]
        assert paused == []
        assert any(t >= refusal.at + 0.95 for t in arrivals)


@pytest.mark.parametrize("per_second", [7, 25])
def test_max_requests_per_second_is_never_exceeded_in_any_second(
    per_second: int,
) -> None:
    with Sandbox(3000, token_ttl=2) as api:
        api.latency = 0.01
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 4},
            max_requests_per_second=per_second,
            page_size=3000 // (per_second * 4),
        )

        result = sync(config)

        assert sorted(result.ids) == sorted(expected_records(api))
        # Page and token requests alike, by when they reached the API.
        arrivals = sorted(r.arrived for r in api.requests)
        assert len(api.token_requests()) >= 2
        assert _most_in_one_second(arrivals) <= per_second
        assert len(arrivals) > 3 * per_second  # long enough to have mattered


def test_an_unpublished_rate_limit_is_learned_from_429s_instead_of_bounced_off(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Sandbox(5000) as api:
        expected = sync(api.config(**FAST_RETRIES)).records
        api.latency = 0.05
        api.rate_limit = 15
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": 16}, page_size=50
        )

        def quiet_stretches() -> list[int]:
            """Return the runs of requests between 429s (and after); clear the log."""
            log = sorted(api.requests, key=lambda r: r.arrived)
            refused = [i for i, r in enumerate(log) if r.status == 429]
            assert refused
            api.requests.clear()
            return [b - a for a, b in itertools.pairwise([*refused, len(log)])]

        api.requests.clear()
        with monkeypatch.context() as unlearned:
            # The same sync with lessons ignored (Retry-After still obeyed):
            # every regrown width meets the limit again, every 18 or 19
            # requests here (measured, idle or loaded alike).
            unlearned.setattr(Pacer, "rate_limited", lambda *_: None)
            assert sync(config).records == expected
        bouncing = quiet_stretches()

        with caplog.at_level(logging.INFO):
            result = sync(config)
        learning = quiet_stretches()

    assert result.records == expected
    assert "pacing requests at" in caplog.text
    # Learning settles under the limit for a long stretch, meeting it again
    # only as the learned rate rises: 34 to 59 requests measured.
    assert max(learning) >= 1.5 * max(bouncing), (learning, bouncing)


def _most_in_one_second(moments: list[float]) -> int:
    """Return the most of `moments` (sorted) within any half-open second.

    Less `ARRIVAL_SLACK`: the sandbox stamps a request when its handler thread
    gets to it, tens of milliseconds late at times on a busy machine.
    """
    return max(
        bisect.bisect_left(moments, start + 1.0 - ARRIVAL_SLACK) - index
        for index, start in enumerate(moments)
    )


def test_the_one_second_count_is_right() -> None:
    assert _most_in_one_second([0.0, 0.5, 0.9, 1.0, 1.5]) == 3
    assert _most_in_one_second([0.0, 1.0, 2.0]) == 1
