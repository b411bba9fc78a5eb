"""Offset pagination over `/v1/files`: what a page is, and where paging goes next."""

from __future__ import annotations

import json
import logging
import re
import typing as t
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import msgspec

from tap_filestore.errors import MalformedPageError, PaginationLoopError
from tap_filestore.timestamps import normalize

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """A decoded page: where it starts, its files as records, the optional `total`."""

    offset: int
    #: The files as the stream's records: every property, date-times normalized.
    files: list[dict[str, t.Any]]
    total: int | None
    #: The first file whose text UTF-8 cannot carry (replaced), if any.
    replaced_text_in: str | None = None

    @property
    def end(self) -> int:
        """Return the offset after this page's last file."""
        return self.offset + len(self.files)


def decode_page(response: requests.Response, offset: int) -> Page:
    """Decode and check the answer to the page request at `offset`.

    Raises:
        MalformedPageError: If the body is not JSON, has no `files` list, or a
            file has no `file_id` or an invalid value.
    """
    where = f"The page at offset {offset} of {urlsplit(response.url).path}"
    content = response.content
    try:
        body = _decode(content)
    except ValueError as exc:
        msg = f"{where} is not JSON ({exc}). The API or a proxy sent an error page."
        raise MalformedPageError(msg) from exc
    except RecursionError:
        msg = (
            f"{where} is JSON nested too deeply to decode: not a page of files. "
            "The API or a proxy sent something else."
        )
        raise MalformedPageError(msg) from None
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        msg = f"{where} has no `files` list. Check base_url points at the files API."
        raise MalformedPageError(msg)
    records = []
    for position, record in enumerate(files):
        # A non-empty string or an integer (JSON gives these exact types).
        file_id = record.get("file_id") if type(record) is dict else None
        if not ((type(file_id) is str and file_id) or type(file_id) is int):
            msg = f"{where} has a file without `file_id` (item {position})."
            raise MalformedPageError(msg)
        try:
            records.append(_normalized(record))
        except (TypeError, ValueError) as exc:
            msg = f"{where} has a file with an invalid value: {exc}."
            raise MalformedPageError(msg) from None
    total = body.get("total")
    # JSON escapes are the only way to a lone surrogate.
    replaced = (
        _replaced_text_in(records) if b"\\ud" in content or b"\\uD" in content else None
    )
    return Page(offset, records, total if isinstance(total, int) else None, replaced)


def _decode(content: bytes) -> t.Any:
    """Decode JSON: with msgspec, twice as fast, or else (lone surrogates) json."""
    try:
        return _DECODER.decode(content)
    except msgspec.DecodeError:
        # json reads the escape of a lone surrogate too, and says what is wrong.
        return json.loads(content)


_DECODER = msgspec.json.Decoder()


def _normalized(record: dict[str, t.Any]) -> dict[str, t.Any]:
    """Return the record with every property present and date-times normalized.

    Raises:
        ValueError: If `file_name` is not a string or a date-time is not ISO 8601.
    """
    file_id, name = record["file_id"], record.get("file_name")
    if type(file_id) is not str:
        file_id = str(file_id)
    if name is not None and type(name) is not str:
        msg = f"file_name {name!r} is not a string"
        raise ValueError(msg)
    return {
        "file_id": file_id if file_id.isascii() else _encodable(file_id),
        "file_name": name if name is None or name.isascii() else _encodable(name),
        "created_at": normalize(record.get("created_at")),
        "modified_at": normalize(record.get("modified_at")),
    }


#: What replaces text that UTF-8 cannot carry.
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
    """Return `text` with lone surrogates (which JSON escapes can hold) replaced."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub(REPLACEMENT, text)
    return text


def _replaced_text_in(records: list[dict[str, t.Any]]) -> str | None:
    """Return the first file whose text holds a replacement character, if any."""
    replaced = (
        r["file_id"]
        for r in records
        if REPLACEMENT in f"{r['file_id']}{r['file_name'] or ''}"
    )
    return next(replaced, None)


class Listing:
    """What paging has learnt of the listing, and where it goes next.

    The API decides its page size: it may serve fewer files than `limit` asks
    for (its own maximum) or more. So the next offset follows what a page held,
    a `total` the API sends decides the end, and without one a short page is
    confirmed by one more request: only an empty page ends that listing.

    Offsets always grow, so an API that ignores or wraps `offset` would loop
    forever: a page with the same files as an earlier one is an error instead,
    before its records go out (`PageCycleCheck`).
    """

    def __init__(self, page_size: int, *, shifted: bool = False) -> None:
        """Page `page_size` files at a time; `shifted` if it already moved."""
        self.page_size = page_size
        #: Whether `total` fell between two pages: files were deleted during the
        #: sync, later offsets moved down, and files may have been skipped.
        self.shifted = shifted
        self._last: Page | None = None
        self._cycle_check = PageCycleCheck()
        #: False once the API served files past its own `total`.
        self._total_is_true = True
        self._told_page_size = False
        self._served_before: int | None = None
        self._last_total: int | None = None

    def seen(self, page: Page) -> None:
        """Take in a page as it arrives, before its records go out.

        Raises:
            PaginationLoopError: If it holds the same files as an earlier page.
        """
        earlier = self._cycle_check.seen_before(page)
        if earlier is not None:
            msg = (
                f"The API answered offset {page.offset} with the same files as "
                f"offset {earlier}: it ignores or wraps `offset`, so paging would "
                "never end."
            )
            raise PaginationLoopError(msg)
        if page.total is not None:
            self.shifted |= page.total < (self._last_total or 0)
            self._last_total = page.total
        self._last = page

    def has_more(self, page: Page) -> bool:
        """Whether pages follow `page`, once its records are out."""
        self._tell_page_size(page)
        total = self.known_total(page)
        if total is not None and page.end > total:
            # The API has more files than it says: page on to an empty page.
            self._total_is_true = False
            total = None
            logger.warning(
                "The API reported total=%d but sent %d files already; "
                "paging on until an empty page",
                page.total,
                page.end,
            )
        return total is None or page.end < total

    def _tell_page_size(self, page: Page) -> None:
        """Say once that the API serves its own page size, when a page shows it.

        The page before this one held other than `limit` files and was not
        the last: that is the API's page size, not the end of the listing.
        """
        before, self._served_before = self._served_before, len(page.files)
        if before is None or before == self.page_size or self._told_page_size:
            return
        self._told_page_size = True
        logger.info(
            "The API serves %s%d files a page (page_size asks for %d): the next "
            "offset follows what each page held",
            "at most " if before < self.page_size else "",
            before,
            self.page_size,
        )

    def offsets_after(self, page: Page, most: int) -> list[int]:
        """Return the offsets of up to `most` pages after `page`, if `total` says.

        They are planned on the page's length (the API decides its page size);
        after a page shorter than the one before, which may be the end whatever
        `total` says, only the next one.
        """
        total = self.known_total(page)
        if total is None or not page.files:
            return []
        shrank = len(page.files) < (self._served_before or 0)
        later = range(page.end, total, len(page.files))
        return list(later[: 1 if shrank else most])

    def known_total(self, page: Page) -> int | None:
        """Return the `total` that decides the end, if the API sends a true one."""
        return page.total if self._total_is_true else None

    def shortfall(self) -> str | None:
        """Say how the listing fell short of its `total`, if it ended before it.

        Files deleted during the sync (`shifted`) explain a shortfall, and
        are handled on their own.
        """
        if self._last is None or self.shifted:
            return None
        page = self._last
        total = self.known_total(page)
        if total is None or page.end >= total:
            return None
        return (
            f"The API reported total={total} files, but its listing ended at "
            f"offset {page.end} (an empty page): {total - page.end} files were "
            "not served. The sync fails so that nothing is taken as complete; "
            "run it again, and if it ends the same way the API stops listing "
            f"past offset {page.end}: tell its provider."
        )


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
        self._first: tuple[tuple[int, int], int] | None = None
        self._saved: tuple[int, int] | None = None
        self._saved_offset = 0
        self._span = 1
        self._steps = 0

    def seen_before(self, page: Page) -> int | None:
        """Return the offset of an earlier page with the same files, if this is one."""
        fingerprint = (len(page.files), hash(tuple(f["file_id"] for f in page.files)))
        if self._first is None:
            self._first = (fingerprint, page.offset)
        elif fingerprint == self._first[0]:
            return self._first[1]
        if fingerprint == self._saved:
            return self._saved_offset
        self._steps += 1
        if self._steps >= self._span:
            self._saved, self._saved_offset = fingerprint, page.offset
            self._span *= 2
            self._steps = 0
        return None
