"""When a request may go: rate limits, configured or learned, and API-asked pauses."""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
import typing as t

logger = logging.getLogger(__name__)


class Clock(t.Protocol):
    """What the tap reads and sleeps on: the `time` module, or a test's clock."""

    def time(self) -> float:
        """Return the wall time, in seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`."""
        ...


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

    def __init__(self, per_second: float | None = None, clock: Clock = time) -> None:
        """Pace to `per_second` requests a second; None: learn a rate if needed."""
        self.per_second = per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._resume_at = 0.0
        # The start times of the last `per_second` requests: the next one
        # waits until the oldest is a `SECOND` old.
        window = max(1, math.floor(per_second or 1))
        self._started: collections.deque[float] = collections.deque(maxlen=window)
        #: When the answers of the last second came, and their requests went.
        self._answers: collections.deque[tuple[float, float]] = collections.deque()
        self._began: float | None = None
        #: The learned rate and when it was learned.
        self._learned: tuple[float, float] | None = None
        #: Requests sent since then that the API accepted, answered so far.
        self._accepted_since = 0

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (the API asked for it)."""
        with self._lock:
            self._resume_at = max(self._resume_at, self._clock.monotonic() + seconds)

    def accepted(self, answer_seconds: float) -> None:
        """Count a request the API did not refuse for its rate, when it was sent.

        The API counted it on arrival: an answer after a lesson to a request
        sent before it belongs to the time before.
        """
        with self._lock:
            now = self._clock.monotonic()
            sent = now - answer_seconds
            self._answers.append((now, sent))
            self._forget_answers_before(now - 1.0)
            if self._learned and sent >= self._learned[1]:
                self._accepted_since += 1

    def rate_limited(self, answer_seconds: float) -> None:
        """Learn a rate from a 429: what the API accepted, under the pace refused.

        The first lesson counts the last second's answers, a burst the API
        allowed included, so it tends to be high; each later one counts the
        requests sent since the lesson before that the API accepted, a pause
        and an idle spell included, so it tends to be a little low, and the
        rate rises from there. No lesson more than halves the pace.

        Args:
            answer_seconds: How long the 429 took: a request sent before, or
                within `SAME_EPISODE` seconds after, the last lesson says
                nothing new.
        """
        with self._lock:
            now = self._clock.monotonic()
            if self._learned and now - answer_seconds < (
                self._learned[1] + self.SAME_EPISODE
            ):
                return
            self._forget_answers_before(now - 1.0)
            current = self._rate(now)
            if self._learned and current:
                accepted = self._accepted_a_second(self._learned[1], now)
                rate = self.BELOW * current
                if accepted is not None:
                    rate = min(rate, max(accepted, current / 2))
            else:
                seconds = min(1.0, now - (self._began or now)) or 1.0
                rate = self.BELOW * len(self._answers) / seconds
            rate = max(1.0, rate)
            first = self._learned is None
            self._learned = (rate, now)
            self._accepted_since = 0
        log = logger.warning if first else logger.info
        log(
            "Rate limited (429): pacing requests at %.1f a second, rising while "
            "none is refused (set max_requests_per_second to a published limit "
            "to stay under it from the start)",
            rate,
        )

    def _forget_answers_before(self, moment: float) -> None:
        while self._answers and self._answers[0][0] < moment:
            self._answers.popleft()

    def _accepted_a_second(self, since: float, now: float) -> float | None:
        """Return the requests a second sent since `since` and accepted.

        Counted up to the longest answer time of the last second ago: requests
        sent after that may still be on their way. None: too short to tell.
        """
        upto = now - max((at - sent for at, sent in self._answers), default=0.0)
        if upto - since < self.SAME_EPISODE:
            return None
        later = sum(1 for _, sent in self._answers if sent > upto)
        return (self._accepted_since - later) / (upto - since)

    def wait(self) -> None:
        """Return when the next request may start."""
        while True:
            with self._lock:
                now = self._clock.monotonic()
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
            self._clock.sleep(start - now)

    def _rate(self, now: float) -> float | None:
        """Return the requests a second allowed now, if any limit applies."""
        rates = [self.per_second] if self.per_second else []
        if self._learned and now - self._learned[1] < self.FORGET_AFTER:
            rate, since = self._learned
            rates.append(rate * self.RISE ** (now - since))
        return min(rates, default=None)
