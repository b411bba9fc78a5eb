"""Progress a person can follow: a line every few seconds, a summary at the end."""

from __future__ import annotations

import logging
import time

#: Seconds between two progress lines, and between two request-duration METRICs.
PROGRESS_INTERVAL_S = 10.0


class FewerRequestMetrics(logging.Filter):
    """Let one `http_request_duration` METRIC line through per progress interval.

    The SDK logs one for every HTTP request: 10,000 lines for a million files.
    Its other metrics (request and record counters, sync duration) pass as sent.
    """

    def __init__(self) -> None:
        """Let the first one through."""
        super().__init__()
        self._last = -PROGRESS_INTERVAL_S

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop a request-duration point logged within the interval of the last one."""
        if "http_request_duration" not in record.getMessage():
            return True
        now = time.monotonic()
        if now - self._last < PROGRESS_INTERVAL_S:
            return False
        self._last = now
        return True


class SyncProgress:
    """Counts pages, requests, retries and records of one stream's sync."""

    def __init__(self, logger: logging.Logger, stream: str) -> None:
        """Start the clock."""
        self._logger = logger
        self._stream = stream
        self.started = time.monotonic()
        self._last_line = self.started
        self.requests = 0
        self.retries = 0
        self.pages = 0
        self.fetched = 0
        self.emitted = 0
        self.total: int | None = None

    def page_received(self, files: int, total: int | None) -> None:
        """Count a page and log a progress line when one is due."""
        self.pages += 1
        self.fetched += files
        self.total = total
        now = time.monotonic()
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

    def summary_line(self) -> str:
        """Describe the finished sync."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return (
            f"{self._stream}: synced {self.emitted:,} records "
            f"({self.fetched:,} fetched) with {self.requests:,} requests, "
            f"{self.retries:,} retries in {elapsed:,.1f} s, "
            f"{self.emitted / elapsed:,.0f} records/s"
        )
