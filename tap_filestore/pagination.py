"""Offset pagination over `/v1/files`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from singer_sdk.pagination import OffsetPaginator
from typing_extensions import override

from tap_filestore.errors import PaginationLoopError
from tap_filestore.page import Page, decode_page

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)


class FilesPaginator(OffsetPaginator):
    """Advance `offset` by `limit`; stop on a short page or when `total` is reached.

    The SDK's loop check compares offsets, which always grow, so an API that
    ignores or wraps `offset` would loop forever: a page with the same files as
    an earlier one is an error instead (`PageCycleCheck`).
    """

    def __init__(self, page_size: int) -> None:
        """Start at offset 0 with `page_size` files a page."""
        super().__init__(start_value=0, page_size=page_size)
        self._cycle_check = PageCycleCheck()
        self._warned_total = False
        self._last_total: int | None = None
        #: Whether `total` fell between two pages: files were deleted during the
        #: sync, later offsets moved down, and files may have been skipped.
        self.listing_shrank = False

    @override
    def has_more(self, response: requests.Response) -> bool:
        page = decode_page(response)
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
