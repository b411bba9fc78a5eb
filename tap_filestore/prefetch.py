"""Fetching the next pages while the current one is emitted."""

from __future__ import annotations

import logging
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

if t.TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from tap_filestore.pagination import Page

logger = logging.getLogger(__name__)

#: An API that answers a page quicker than this is not worth fetching ahead from.
QUICK_ANSWER_S = 0.003


class PageFetcher:
    """Hands out pages in the order they are asked for, fetching ahead when it pays.

    Once a page says how many files there are (`total`), the pages after it are
    independent: up to `width` of them are requested in a small pool while
    the caller emits the current one. Records still come out in order, since
    the caller asks for offsets in order. Without `total`, or after the API
    rate limits, pages are fetched one at a time.

    Fetching ahead hides the API's answer time behind the caller's work, but
    the threads share one interpreter lock: when the API answers the second
    page in under `QUICK_ANSWER_S`, they would cost more than they hide, and
    pages are fetched one at a time.
    """

    def __init__(
        self,
        send: Callable[[requests.PreparedRequest], requests.Response],
        width: int,
        page_size: int,
    ) -> None:
        """Fetch with `send` (retries included), at most `width` requests at once."""
        self._send = send
        self._width = width
        self._page_size = page_size
        self._pool = ThreadPoolExecutor(width, "prefetch") if width > 1 else None
        self._ahead: dict[int, Future[requests.Response]] = {}
        self._lock = threading.Lock()
        self._answers_slowly: bool | None = None

    def fetch(
        self, request: requests.PreparedRequest, offset: int
    ) -> requests.Response:
        """Return the answer to the page request at `offset`, fetched ahead or now."""
        with self._lock:
            ahead = self._ahead.pop(offset, None)
        if ahead:
            return ahead.result()
        response = self._send(request)
        if offset and self._answers_slowly is None:
            self._judge_answer_time(response)
        return response

    def fetch_ahead(
        self, page: Page, request_at: Callable[[int], requests.PreparedRequest]
    ) -> None:
        """Request the pages after `page` that are not in flight yet, if it pays.

        Args:
            page: The page just received.
            request_at: Builds the page request for an offset.
        """
        if not self._answers_slowly or self._pool is None or self._width <= 1:
            return
        limit = self._page_size
        if page.total is None or len(page.files) < limit:
            return
        with self._lock:
            for step in range(1, self._width + 1):
                later = page.offset + step * limit
                if later >= page.total:
                    break
                if later not in self._ahead:
                    self._ahead[later] = self._pool.submit(
                        self._send, request_at(later)
                    )

    def one_at_a_time(self) -> None:
        """Stop fetching ahead (the API asked us to slow down)."""
        if self._width > 1:
            logger.warning("Rate limited: fetching one page at a time from now on")
        self._width = 1

    def close(self) -> None:
        """Drop pages fetched ahead that nobody asked for."""
        with self._lock:
            for future in self._ahead.values():
                future.cancel()
            self._ahead.clear()
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

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
