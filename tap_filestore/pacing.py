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
    more than `per_second` within any one second (`SECOND`). Without it, a 429
    teaches a rate (see `rate_limited`), which rises by `RISE` a second and is
    forgotten after `FORGET_AFTER` seconds without a 429: a sync settles just
    under an unpublished limit, meeting it now and then, instead of bouncing
    off it, and a stray 429 costs at most a minute a little under the speed
    it interrupted. A `Retry-After` (`pause`) holds every request, in every
    thread, until it has passed.
    """

    #: A lesson's rate, at most this share of the pace refused (the first
    #: lesson's: of the answers in the second before it).
    BELOW = 0.9
    #: How fast the learned rate rises, per second without a 429.
    RISE = 1.02
    #: Seconds after a lesson in which a request's 429 is part of the same episode.
    SAME_EPISODE = 0.5
    #: Seconds without a 429 after which the learned rate no longer applies.
    FORGET_AFTER = 60.0
    #: The second `per_second` counts in, a little long: the API's clock sees
    #: requests a few milliseconds closer together or further apart.
    SECOND = 1.01

    def __init__(self, per_second: float | None = None) -> None:
        """Pace to `per_second` requests a second; None: learn a rate if needed."""
        self.per_second = per_second
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._resume_at = 0.0
        # The start times of the last `per_second` requests: the next one
        # waits until the oldest is a `SECOND` old.
        window = max(1, math.floor(per_second or 1))
        self._started: collections.deque[float] = collections.deque(maxlen=window)
        self._accepted: collections.deque[float] = collections.deque()
        self._began: float | None = None
        self._accepted_count = 0
        #: The learned rate, when, and how many answers had been accepted then.
        self._learned: tuple[float, float, int] | None = None

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (the API asked for it)."""
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def accepted(self) -> None:
        """Count an answer the API did not refuse for its rate."""
        with self._lock:
            now = time.monotonic()
            self._accepted.append(now)
            self._accepted_count += 1
            while self._accepted[0] < now - 1.0:
                self._accepted.popleft()

    def rate_limited(self, answer_seconds: float) -> None:
        """Learn a rate from a 429: what the API accepted, under the pace refused.

        The first lesson counts the last second's answers, a burst the API
        allowed included, so it tends to be high; each later one counts the
        answers since the lesson before, a pause and an idle spell included,
        so it tends to be a little low, and the rate rises from there. No
        lesson more than halves the pace.

        Args:
            answer_seconds: How long the 429 took: a request sent before, or
                within `SAME_EPISODE` seconds after, the last lesson says
                nothing new.
        """
        with self._lock:
            now = time.monotonic()
            if self._learned and now - answer_seconds < (
                self._learned[1] + self.SAME_EPISODE
            ):
                return
            current = self._rate(now)
            if self._learned and current:
                _, since, count = self._learned
                accepted = (self._accepted_count - count) / (now - since)
                rate = max(min(accepted, self.BELOW * current), current / 2)
            else:
                recent = sum(1 for moment in self._accepted if moment >= now - 1.0)
                accepted = recent / (min(1.0, now - (self._began or now)) or 1.0)
                rate = self.BELOW * accepted
            rate = max(1.0, rate)
            first = self._learned is None
            self._learned = (rate, now, self._accepted_count)
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
                if self._began is None:
                    self._began = now
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
        if self._learned and now - self._learned[1] < self.FORGET_AFTER:
            rate, since, _ = self._learned
            rates.append(rate * self.RISE ** (now - since))
        return min(rates, default=None)
