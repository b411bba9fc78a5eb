"""Offset pagination over `/v1/files`: what a page is, and where paging goes next."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from singer_sdk.pagination import OffsetPaginator
from typing_extensions import override

from tap_filestore.errors import MalformedPageError, PaginationLoopError

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """A decoded page: where it starts, its files and the optional `total`."""

    offset: int
    files: list[dict]
    total: int | None


def decode_page(response: requests.Response, offset: int) -> Page:
    """Decode and check the answer to the page request at `offset`.

    Raises:
        MalformedPageError: If the body is not JSON, has no `files` list, or a
            file has no `file_id`.
    """
    where = f"The page at offset {offset} of {urlsplit(response.url).path}"
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        msg = f"{where} is not JSON ({exc}). The API or a proxy sent an error page."
        raise MalformedPageError(msg) from exc
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        msg = f"{where} has no `files` list. Check base_url points at the files API."
        raise MalformedPageError(msg)
    for position, record in enumerate(files):
        file_id = record.get("file_id") if isinstance(record, dict) else None
        if not _usable_id(file_id):
            msg = f"{where} has a file without `file_id` (item {position})."
            raise MalformedPageError(msg)
    total = body.get("total")
    return Page(offset, files, total if isinstance(total, int) else None)


def _usable_id(file_id: object) -> bool:
    """Return whether `file_id` is a non-empty string or an integer."""
    if isinstance(file_id, bool):
        return False
    return isinstance(file_id, int) or (isinstance(file_id, str) and file_id != "")


class FilesPaginator(OffsetPaginator):
    """Advance `offset` by `limit`; stop on a short page or when `total` is reached.

    The SDK's loop check compares offsets, which always grow, so an API that
    ignores or wraps `offset` would loop forever: a page with the same files as
    an earlier one is an error instead (`PageCycleCheck`).
    """

    def __init__(self, page_size: int) -> None:
        """Start at offset 0 with `page_size` files a page."""
        super().__init__(start_value=0, page_size=page_size)
        self._last: tuple[requests.Response, Page] | None = None
        self._cycle_check = PageCycleCheck()
        self._warned_total = False
        self._last_total: int | None = None
        #: Whether `total` fell between two pages: files were deleted during the
        #: sync, later offsets moved down, and files may have been skipped.
        self.listing_shrank = False

    def page(self, response: requests.Response) -> Page:
        """Return the page `response` answers at the current offset, decoded once."""
        if self._last is None or self._last[0] is not response:
            self._last = (response, decode_page(response, self.current_value))
        return self._last[1]

    @override
    def has_more(self, response: requests.Response) -> bool:
        page = self.page(response)
        if page.total is not None:
            if self._last_total is not None and page.total < self._last_total:
                self.listing_shrank = True
            self._last_total = page.total
        if len(page.files) < self.page_size:
            return False
        earlier = self._cycle_check.seen_before(page)
        if earlier is not None:
            msg = (
                f"The API answered offset {page.offset} with the same files as "
                f"offset {earlier}: it ignores or wraps `offset`, so paging would "
                "never end."
            )
            raise PaginationLoopError(msg)
        if page.total is None:
            return True
        seen = page.offset + len(page.files)
        if seen > page.total and not self._warned_total:
            # The API has more files than it says: page on until a short page.
            self._warned_total = True
            logger.warning(
                "The API reported total=%d but sent %d files already; "
                "paging on until a short page",
                page.total,
                seen,
            )
        return seen < page.total or self._warned_total


class PageCycleCheck:
    """Spots an API that answers pages it answered before, in constant memory.

    Brent's cycle detection over page fingerprints: one saved page, replaced
    after 1, 2, 4, ... further pages. Pages that repeat with any period, from
    any offset on, match the saved page within a few periods; a set of every
    file id would grow with the collection instead. The first page is kept
    too: a cursor that wraps back to the start is caught at its first repeat,
    before a `total` ends paging with files repeated and others missed.
    """

    def __init__(self) -> None:
        """Start with nothing saved."""
        self._first: tuple[int, int] | None = None
        self._saved: tuple[int, int] | None = None
        self._saved_offset = 0
        self._span = 1
        self._steps = 0

    def seen_before(self, page: Page) -> int | None:
        """Return the offset of an earlier page with the same files, if this is one."""
        fingerprint = (len(page.files), hash(tuple(f["file_id"] for f in page.files)))
        if self._first is None:
            self._first = fingerprint
        elif fingerprint == self._first:
            return 0
        if fingerprint == self._saved:
            return self._saved_offset
        self._steps += 1
        if self._steps >= self._span:
            self._saved, self._saved_offset = fingerprint, page.offset
            self._span *= 2
            self._steps = 0
        return None
