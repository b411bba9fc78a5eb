"""When a request may go: rate limits, configured or learned, and API-asked pauses."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time

logger = logging.getLogger(__name__)


class Pacer:
    """Holds every request of the tap, page and token alike, until it may go.

    With `per_second`, requests start at least `1 / per_second` apart and never
    more than `per_second` within any one second (`SECOND`). Without it, a 429 teaches a
    rate: `BELOW` the answers the API accepted in the second before it. The
    rate then rises, slowly (`RISE`) up to that count, where the API refused,
    and fast (`RISE_PAST`) beyond it, where the refusal was a passing one.
    So a sync settles just under an unpublished limit instead of bouncing off
    it, and one stray 429 costs seconds, not the rest of the sync. A
    `Retry-After` (`pause`) holds every request, in every thread, until it
    has passed.
    """

    #: The learned rate, as a share of the answers accepted in the last second.
    BELOW = 0.9
    #: The second `per_second` counts in, a little long: the API's clock sees
    #: requests a few milliseconds closer together or further apart.
    SECOND = 1.01
    #: How fast the learned rate rises a second, below and past where it was refused.
    RISE = 1.01
    RISE_PAST = 1.1

    def __init__(self, per_second: float | None = None) -> None:
        """Pace to `per_second` requests a second; None: learn a rate if needed."""
        self.per_second = per_second
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._resume_at = 0.0
        # The start times of the last `per_second` requests: the next one
        # waits until the oldest is a second old.
        window = max(1, math.floor(per_second or 1))
        self._started: collections.deque[float] = collections.deque(maxlen=window)
        self._accepted: collections.deque[float] = collections.deque()
        #: The learned rate, when it was learned, and the rate that was refused.
        self._learned: tuple[float, float, float] | None = None

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (the API asked for it)."""
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def accepted(self) -> None:
        """Count an answer the API did not refuse for its rate."""
        with self._lock:
            now = time.monotonic()
            self._accepted.append(now)
            while self._accepted[0] < now - 1.0:
                self._accepted.popleft()

    def rate_limited(self, answer_seconds: float) -> None:
        """Learn a rate from a 429, a little under what the API accepted before it.

        Args:
            answer_seconds: How long the 429 took: a request sent before the
                last rate was learned says nothing new.
        """
        with self._lock:
            now = time.monotonic()
            if self._learned and now - answer_seconds < self._learned[1]:
                return
            # (Early in a sync that second includes the API's burst allowance.)
            refused = max(1, sum(1 for at in self._accepted if at >= now - 1.0))
            current = self._rate(now)
            rate = max(1.0, self.BELOW * min(refused, current or refused))
            first = self._learned is None
            self._learned = (rate, now, refused)
        log = logger.warning if first else logger.info
        log(
            "Rate limited (429): pacing requests at %.1f a second, rising while "
            "none is refused (set max_requests_per_second to a published limit "
            "to stay under it from the start)",
            rate,
        )

    def wait(self) -> None:
        """Return when the next request may start."""
        while True:
            with self._lock:
                now = time.monotonic()
                rate = self._rate(now)
                start = max(now, self._resume_at)
                if rate:
                    start = max(start, self._next_start)
                if self.per_second and len(self._started) == self._started.maxlen:
                    start = max(start, self._started[0] + self.SECOND)
                if start <= now:
                    if rate:
                        self._next_start = now + 1.0 / rate
                    if self.per_second:
                        self._started.append(now)
                    return
            # Sleep outside the lock, then look again: a pause may have come.
            time.sleep(start - now)

    def _rate(self, now: float) -> float | None:
        """Return the requests a second allowed now, if any limit applies."""
        rates = [self.per_second] if self.per_second else []
        if self._learned:
            rate, since, refused = self._learned
            # Seconds to climb back to where the API refused, then faster.
            climb = max(0.0, math.log(refused / rate, self.RISE))
            seconds = now - since
            rates.append(
                rate
                * self.RISE ** min(seconds, climb)
                * self.RISE_PAST ** max(0.0, seconds - climb)
            )
        return min(rates, default=None)
