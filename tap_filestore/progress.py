"""Progress a person can follow: a line every few seconds, a summary at the end."""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    import logging

    from tap_filestore.pacing import Clock

#: Seconds between two progress lines, and between two request-duration METRICs.
PROGRESS_INTERVAL_S = 10.0


class SyncProgress:
    """Counts pages, requests, retries and records of one stream's sync."""

    def __init__(self, logger: logging.Logger, stream: str, clock: Clock) -> None:
        """Start counting on `clock`."""
        self._logger = logger
        self._stream = stream
        self._clock = clock
        self.started = clock.monotonic()
        self._last_line = self.started
        self.pages = 0
        self.fetched = 0
        self.emitted = 0
        self.total: int | None = None

    def page_received(self, files: int, total: int | None) -> None:
        """Count a page and log a progress line when one is due."""
        self.pages += 1
        self.fetched += files
        self.total = total
        now = self._clock.monotonic()
        if now - self._last_line >= PROGRESS_INTERVAL_S:
            self._last_line = now
            self._logger.info("%s", self.progress_line(now))

    def progress_line(self, now: float) -> str:
        """Describe the sync so far."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.fetched / elapsed
        line = (
            f"{self._stream}: {self.fetched:,} files fetched in {self.pages:,} pages, "
            f"{rate:,.0f} files/s"
        )
        if self.total:
            done = min(self.fetched / self.total, 1.0)
            eta = (self.total - self.fetched) / rate if rate else float("inf")
            line += f", {done:.0%} of {self.total:,}, ETA {max(eta, 0):,.0f} s"
        return line

    def summary_line(self, requests: int, retries: int) -> str:
        """Describe the finished sync, which took `requests` and `retries`."""
        elapsed = max(self._clock.monotonic() - self.started, 1e-9)
        return (
            f"{self._stream}: synced {self.emitted:,} records "
            f"({self.fetched:,} fetched) with {requests:,} requests, "
            f"{retries:,} retries in {elapsed:,.1f} s, "
            f"{self.emitted / elapsed:,.0f} records/s"
        )
