"""Offset pagination over `/v1/files`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from singer_sdk.pagination import OffsetPaginator
from typing_extensions import override

from tap_filestore.errors import PaginationLoopError
from tap_filestore.page import decode_page

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)


class FilesPaginator(OffsetPaginator):
    """Advance `offset` by `limit`; stop on a short page or when `total` is reached.

    The SDK's loop check compares offsets, which always grow, so an API that
    ignores `offset` would loop forever: a page identical to the one before is
    an error instead.
    """

    def __init__(self, page_size: int) -> None:
        """Start at offset 0 with `page_size` files a page."""
        super().__init__(start_value=0, page_size=page_size)
        self._previous_ids: tuple[str, str] | None = None
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
        ids = (page.files[0]["file_id"], page.files[-1]["file_id"])
        if ids == self._previous_ids:
            msg = (
                f"The API answered offset {page.offset} with the same files as the "
                "page before: it ignores `offset`, so paging would never end."
            )
            raise PaginationLoopError(msg)
        self._previous_ids = ids
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
