"""Fetching the next pages while the current one is emitted."""

from __future__ import annotations

import logging
import threading
import typing as t
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from tap_filestore.pacing import Clock

    #: Builds the page request for an offset.
    RequestAt = Callable[[int], requests.PreparedRequest]

logger = logging.getLogger(__name__)

#: An API that answers a page quicker than this is not worth fetching ahead from.
QUICK_ANSWER_S = 0.003


class Width:
    """How many pages may be in flight: additive increase, multiplicative decrease.

    It starts at `START` and grows by one a healthy answer (doubling every round
    trip) up to `ceiling`; a sign of strain (429, 503, or answers taking
    `SLOWDOWN` times their usual time) halves it, at most once a round trip,
    and it then grows back by one a round trip (a `1 / width` per answer). The
    usual answer time is the lowest smoothed one, drifting up slowly, so an
    API that has become slower for good is not taken for a strained one for long.
    """

    START = 4
    #: Answers this many times slower than usual are a sign of strain.
    SLOWDOWN = 2.0
    #: Weight of the latest answer time in the smoothed one.
    SMOOTHING = 0.2
    #: How fast (per answer) the usual answer time follows slower answers.
    DRIFT = 1.01

    def __init__(self, ceiling: int) -> None:
        """Allow at most `ceiling` pages in flight."""
        self.ceiling = ceiling
        self.value = float(min(self.START, ceiling))
        self._grow_fast_below = float(ceiling)
        self._quiet_from = 0.0
        self._answer_s: float | None = None
        self._usual_s: float | None = None

    def __int__(self) -> int:
        """Return how many pages may be in flight now."""
        return int(self.value)

    def answered(self, seconds: float, now: float) -> str | None:
        """Count a healthy answer of `seconds`; return why it shrank, if it did."""
        answer = self._answer_s = (
            seconds
            if self._answer_s is None
            else self._answer_s + self.SMOOTHING * (seconds - self._answer_s)
        )
        usual = self._usual_s = min(answer, (self._usual_s or answer) * self.DRIFT)
        if answer > self.SLOWDOWN * usual:
            reason = f"answers slowed from {usual * 1000:.0f} to {answer * 1000:.0f} ms"
            return reason if self.shrink(now) else None
        step = 1.0 if self.value < self._grow_fast_below else 1.0 / self.value
        self.value = min(float(self.ceiling), self.value + step)
        return None

    def shrink(self, now: float) -> bool:
        """Halve the width, unless it was halved less than a round trip ago."""
        if now < self._quiet_from:
            return False
        self.value = max(1.0, self.value / 2)
        self._grow_fast_below = self.value
        self._quiet_from = now + (self._answer_s or 0.0)
        return True


@dataclass
class _Queued:
    """A page request fetched ahead; `dropped` once no longer wanted."""

    offset: int
    future: Future[requests.Response] | None = None
    sent: bool = False
    dropped: bool = False


class PageFetcher:
    """Hands out pages in the order they are asked for, fetching ahead when it pays.

    Once a page says how many files there are (`total`), the pages after it are
    independent: the next `max_concurrent_requests` of them are requested in a
    pool while the caller emits the current one, at most `width` (see `Width`)
    on the wire at once. The listing plans their offsets after each page
    (`fetch_ahead`); pages off the new plan, or past the end of the listing,
    are dropped before they go on the wire. Records still come
    out in order, since the caller asks for offsets in order, and at most
    `max_concurrent_requests` pages wait in memory. Without `total`, pages are
    fetched one at a time.

    Pages queued beyond the width keep a stall short: while a refused page
    waits out its retry, the pages after it go as soon as the API allows.

    Fetching ahead hides the API's answer time behind the caller's work, but
    the threads share one interpreter lock: when the API answers the second
    page in under `QUICK_ANSWER_S`, they would cost more than they hide, and
    pages are fetched one at a time.
    """

    def __init__(
        self,
        send: Callable[[requests.PreparedRequest], requests.Response],
        width: int,
        clock: Clock,
    ) -> None:
        """Fetch with `send` (retries included), at most `width` requests at once."""
        self._send = send
        self._clock = clock
        self.width = Width(width)
        self._pool = ThreadPoolExecutor(width, "prefetch") if width > 1 else None
        self._ahead: dict[int, _Queued] = {}
        self._plan: list[int] = []
        self._lock = threading.Lock()
        self._wire = threading.Condition(self._lock)
        self._on_wire = 0
        self._closed = False
        self._answers_slowly: bool | None = None

    def fetch(self, offset: int, request_at: RequestAt) -> requests.Response:
        """Return the answer to the page request at `offset`, fetched ahead or now."""
        with self._lock:
            ahead = self._ahead.pop(offset, None)
        if ahead and ahead.future:
            return ahead.future.result()
        response = self._timed_send(request_at(offset))
        if offset and self._answers_slowly is None:
            self._judge_answer_time(response)
        return response

    def fetch_ahead(self, offsets: list[int], request_at: RequestAt) -> None:
        """Make `offsets` the plan: request those not in flight, drop the rest.

        Args:
            offsets: The next pages, in order (`Listing.offsets_after`).
            request_at: Builds the page request for an offset.
        """
        if self._pool is None:
            return
        plan = offsets if self._answers_slowly else []
        with self._lock:
            self._plan = plan
            for offset in self._ahead.keys() - plan:
                self._drop(self._ahead.pop(offset))
            for offset in plan:
                if offset not in self._ahead:
                    queued = self._ahead[offset] = _Queued(offset)
                    queued.future = self._pool.submit(
                        self._timed_send, request_at(offset), queued
                    )
            self._wire.notify_all()

    def strained(self, why: str) -> None:
        """Halve the pages in flight: the API said it is strained (429, 503)."""
        with self._lock:
            before = int(self.width)
            if self._pool and self.width.shrink(self._clock.monotonic()):
                self._log_shrink(before, why)

    def close(self) -> None:
        """Drop pages fetched ahead that nobody asked for."""
        with self._lock:
            for queued in self._ahead.values():
                self._drop(queued)
            self._ahead.clear()
            self._closed = True  # pages still waiting for the wire: not sent
            self._wire.notify_all()
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _drop(queued: _Queued) -> None:
        """Keep a page fetched ahead off the wire, if it is not there yet."""
        queued.dropped = True
        if queued.future:
            queued.future.cancel()

    def _timed_send(
        self, request: requests.PreparedRequest, queued: _Queued | None = None
    ) -> requests.Response:
        if not self._pool:
            return self._send(request)
        with self._wire:
            self._wire.wait_for(lambda: self._may_send(queued))
            if self._closed or (queued is not None and queued.dropped):
                raise CancelledError
            self._on_wire += 1
            if queued is not None:
                queued.sent = True
                self._wire.notify_all()
        answer_s = None
        try:
            response = self._send(request)
            answer_s = response.elapsed.total_seconds()
        finally:
            with self._wire:
                self._on_wire -= 1
                before = int(self.width)
                if answer_s is not None and (
                    why := self.width.answered(answer_s, self._clock.monotonic())
                ):
                    self._log_shrink(before, why)
                self._wire.notify_all()
        return response

    def _may_send(self, queued: _Queued | None) -> bool:
        """Whether a page may go on the wire now (or must give up waiting).

        Pages fetched ahead go in offset order, and only while on the plan:
        the lowest is the one the caller needs next and the one that may end
        the listing or re-plan the rest.
        """
        if self._closed or (queued is not None and queued.dropped):
            return True
        if self._on_wire >= int(self.width):
            return False
        if queued is None:
            return True
        if queued.offset not in self._plan:
            return False
        earlier = self._plan[: self._plan.index(queued.offset)]
        return all(self._ahead[o].sent for o in earlier if o in self._ahead)

    def _log_shrink(self, before: int, why: str) -> None:
        if int(self.width) == before:  # already one page at a time
            return
        logger.info(
            "Pages in flight: %d -> %d (%s); growing again while answers stay healthy",
            before,
            int(self.width),
            why,
        )

    def _judge_answer_time(self, response: requests.Response) -> None:
        """Decide, from the answer time of a page after the first, to fetch ahead.

        The first page also pays for the token and the connection: it says
        little about the API's own answer time.
        """
        seconds = response.elapsed.total_seconds()
        self._answers_slowly = seconds >= QUICK_ANSWER_S
        if self._pool and not self._answers_slowly:
            logger.info(
                "The API answers a page in %.1f ms: fetching one page at a time",
                seconds * 1000,
            )
