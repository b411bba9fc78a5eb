"""One sync of the `files` stream: its page loop, checkpoints, STATE and end.

A `FilesSync` is made afresh for each sync and handed what it works with:
the request path's owner (`Pages`), the builder of a page request, the
stream's state as the SDK keeps it (`Bookkeeping`) and the clock. It decides
where the sync starts (the bookmark, or a checkpoint found again), which
records go out, what a checkpoint holds and when a STATE carries one, and how
the sync ends: the same way whether its records go out as RECORD messages or
in batch files.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import typing as t
from datetime import datetime, timedelta, timezone

from tap_filestore.errors import IncompleteListingError
from tap_filestore.pagination import Listing
from tap_filestore.progress import SyncProgress
from tap_filestore.sdk_private import SIGNPOST
from tap_filestore.state import CHECKPOINT, Checkpoint
from tap_filestore.timestamps import format_instant, parse_instant

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import requests

    from tap_filestore.pacing import Clock
    from tap_filestore.pagination import Page
    from tap_filestore.prefetch import RequestAt

logger = logging.getLogger(__name__)

#: While a sync pages in RECORD mode, a STATE (with its checkpoint) follows
#: at least every this many records and seconds (in BATCH mode, every BATCH).
CHECKPOINT_EVERY_RECORDS = 10_000
CHECKPOINT_EVERY_S = 60.0

Record = dict[str, t.Any]
#: Builds the request for the page at an offset, of the files modified since
#: a time (None: of every file).
PageRequest = t.Callable[[int, str | None], "requests.PreparedRequest"]


class Pages(t.Protocol):
    """What a sync reads its pages from: the request path's owner (`FilesClient`)."""

    #: Requests (tries) and retries sent so far.
    requests: int
    retries: int

    @property
    def most_in_flight(self) -> int:
        """The most page requests in flight at once."""
        ...

    def page(self, offset: int, request_at: RequestAt) -> Page:
        """Return the page at `offset`, fetched ahead or now."""
        ...

    def fetch_ahead(self, offsets: list[int], request_at: RequestAt) -> None:
        """Request the pages at `offsets` ahead."""
        ...

    def close(self) -> None:
        """Drop the pages fetched ahead that nobody asked for."""
        ...


class Bookkeeping(t.Protocol):
    """The stream's state and metrics as the SDK keeps them (`SdkBookkeeping`)."""

    #: The stream's state: its bookmark, and this sync's checkpoint.
    state: dict[str, t.Any]

    def count(self, *, pages: int = 0, records: int = 0) -> None:
        """Count pages requested, or records that went out."""
        ...

    def advance_bookmark(self, value: str) -> None:
        """Count `value` as the greatest `modified_at` out so far."""
        ...

    def keep_starting_bookmark(self) -> None:
        """Forget what this sync counted: the bookmark stays where it was."""
        ...

    def finalize(self) -> None:
        """Make what this sync counted the bookmark (capped by the signpost)."""
        ...

    def stamp(self, version: int) -> None:
        """Make `version` the table version the stream's RECORDs carry."""
        ...

    def write_state(self) -> None:
        """Send a STATE message with the tap's state now."""
        ...

    def activate(self, version: int) -> None:
        """Send ACTIVATE_VERSION for `version`."""
        ...


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    """What a sync is asked to do, known before it starts."""

    #: The `limit` of each page request.
    page_size: int
    #: Whether the sync keeps a bookmark (INCREMENTAL) or carries every file.
    incremental: bool
    #: How far before the bookmark it starts, and where a first sync starts.
    lookback_s: int = 0
    start_date: str | None = None
    #: Whether its records go to batch files: the SDK then sends a STATE
    #: after each BATCH, and none may go out between them.
    batching: bool = False
    #: Whether a sync that carried every file may retire the rows of files
    #: gone (ACTIVATE_VERSION).
    retires_rows: bool = True


class FilesSync:
    """One sync: from its start (or a checkpoint) to its last STATE.

    Args:
        settings: What the sync is asked to do.
        pages: Where the pages come from.
        page_request: Builds the request for the page at an offset, of the
            files modified since a time (None: of every file).
        book: The stream's state, as the SDK keeps it.
        clock: The tap's clock (wall time and monotonic).
    """

    def __init__(
        self,
        settings: SyncSettings,
        *,
        pages: Pages,
        page_request: PageRequest,
        book: Bookkeeping,
        clock: Clock,
    ) -> None:
        """Make the sync; nothing is sent until its records are asked for."""
        self.settings = settings
        self._pages, self._book, self._clock = pages, book, clock
        bookmark = _bookmark(book.state) if settings.incremental else None
        #: Whether it started without a bookmark, so carries every file.
        self.fresh_start = bookmark is None
        #: The earliest `modified_at` it emits (None: every file).
        self.since = (
            modified_since(bookmark, settings.lookback_s, settings.start_date)
            if settings.incremental
            else None
        )
        self._request_at: RequestAt = lambda offset: page_request(offset, self.since)
        self.progress = SyncProgress(logger, "files", clock)
        self._started_at = datetime.fromtimestamp(clock.time(), timezone.utc)
        #: When it started (its signpost; a resumed sync's first part's).
        self.started = format_instant(self._started_at)
        #: The table version its RECORDs carry (a sync without a bookmark's).
        self.version: int | None = None
        #: The greatest `modified_at` emitted (both parts of a resumed sync).
        self.newest: str | None = None
        self._listing = Listing(settings.page_size)
        self._replaced_text_in: str | None = None
        self._last_state_at = clock.monotonic()
        self._emitted_at_state = 0

    def records(self) -> Iterator[Record]:
        """Begin the sync; return the records it emits, in the API's order.

        Beginning sends a request if the state holds a checkpoint: to find it
        again. After each page but the last, once its records are out, a
        checkpoint goes into the state, and a STATE carries it when one is due.
        """
        return self._paged_from(self._begin())

    def _paged_from(self, offset: int) -> Iterator[Record]:
        """Yield the records of each page from `offset` on, until the last."""
        try:
            while True:
                page = self._pages.page(offset, self._request_at)
                self._listing.seen(page)
                ahead = self._listing.offsets_after(page, self._pages.most_in_flight)
                self._pages.fetch_ahead(ahead, self._request_at)
                self.progress.page_received(len(page.files), page.total)
                self._book.count(pages=1)
                self._warn_of_replaced_text(page)
                if not page.files:
                    return
                yield from self._kept(page.files)
                if not self._listing.has_more(page):
                    return
                self._checkpoint(page)
                offset = page.end
        finally:
            self._pages.close()

    def chunks(self, sizes: Iterable[int]) -> Iterator[Iterator[Record]]:
        """Yield the records in chunks, sized by `sizes` in turn.

        Each chunk is an iterator, so that a chunk need not be held in memory:
        take all of it before asking for the next.
        """
        sizes, records = iter(sizes), self.records()
        for first in records:
            # `islice` pulls no record past the chunk.
            yield itertools.islice(itertools.chain((first,), records), next(sizes))

    def finish(self) -> None:
        """End the sync once every record is out (or in an announced file).

        The bookmark advances, or stays after a shifted listing; a sync that
        carried every file retires the rows of files gone; a STATE goes last.

        Raises:
            IncompleteListingError: If the listing ended before its `total`.
        """
        if shortfall := self._listing.shortfall():
            raise IncompleteListingError(shortfall)
        self._book.state.pop(CHECKPOINT, None)
        if shifted := self._listing.shifted:
            # Files deleted mid-sync move every later file to a lower offset,
            # so the page after the deletion skipped some; files added ahead
            # of a resumed sync's checkpoint were never sent with its version.
            self._book.keep_starting_bookmark()
            logger.warning(
                "files: the listing shifted while this sync paged through it "
                "(files deleted, or added ahead of where it was), so some may "
                "have been skipped: the bookmark stays where this sync started, "
                "no rows are retired, and the next sync reads from there again"
            )
        else:
            self._advance_bookmark()
        self._book.finalize()
        if not shifted and self.version is not None:
            self._activate(self.version)
        self._book.write_state()
        logger.info(
            "%s",
            self.progress.summary_line(self._pages.requests, self._pages.retries),
        )

    def _begin(self) -> int:
        """Begin this sync, or resume the one a trusted checkpoint names.

        A checkpoint that does not belong to its state is dropped with a
        warning, and one whose file is gone starts the sync again: either way
        the sync starts from the bookmark, with the bookmark's filter (a
        trusted checkpoint's is the same) and a signpost of now.

        Returns:
            The offset to page from.
        """
        now, state, offset, version = self._started_at, self._book.state, 0, None
        resume = self._trusted_checkpoint(now)
        if resume and (found := self._find(resume)) is not None:
            offset, shifted = found
            self._listing.shifted = shifted
            # Never a signpost (the bookmark's cap) later than this run's start.
            self.started = format_instant(min(parse_instant(resume.started), now))
            self.newest = resume.seen
            self.fresh_start, version = resume.version is not None, resume.version
            self._advance_bookmark()
        elif resume:
            state.pop(CHECKPOINT)
        if self.settings.incremental:
            # The bookmark's cap, whatever the SDK wrote (it writes none for
            # a replication key the catalog does not call a date-time).
            state[SIGNPOST] = self.started
        if self.fresh_start:
            self.version = (
                version if version is not None else int(now.timestamp() * 1000)
            )
            self._book.stamp(self.version)
        return offset

    def _trusted_checkpoint(self, now: datetime) -> Checkpoint | None:
        """Return the state's checkpoint if it belongs to the state; else drop it."""
        resume = Checkpoint.of(self._book.state)
        if resume is None:
            return None
        problem = resume.distrust(
            since=self.since, bookmarked=not self.fresh_start, now=now
        )
        if problem is None:
            return resume
        self._book.state.pop(CHECKPOINT)
        logger.warning(
            "files: the state's checkpoint does not belong to it (%s): it is "
            "ignored, and the sync starts from the bookmark",
            problem,
        )
        return None

    def _find(self, resume: Checkpoint) -> tuple[int, bool] | None:
        """Find the last file a checkpoint names.

        Files deleted or added before it since move it: the page around its
        offset is read, and it is found by its id.

        Returns:
            The offset after it, and whether the listing shifted; None (with a
            warning) if it is not there: the sync starts again from offset 0.
        """
        probe = max(0, resume.offset - 1 - resume.page // 2)
        ids = [
            record["file_id"]
            for record in self._pages.page(probe, self._request_at).files
        ]
        if resume.file_id not in ids:
            logger.warning(
                "files: cannot resume the sync of %s: file %s is no longer near "
                "offset %d; starting that sync again from offset 0",
                resume.started,
                resume.file_id,
                resume.offset,
            )
            return None
        after = probe + ids.index(resume.file_id) + 1
        # Files deleted before the checkpoint (those after it moved down) or
        # added before it (the first part's version lacks them): the first part
        # may have missed some (the shifting-offsets rule).
        shifted = resume.shrank or after != resume.offset
        logger.info(
            "files: resuming the sync of %s after file %s at offset %d",
            resume.started,
            resume.file_id,
            after,
        )
        return after, shifted

    def _kept(self, records: list[Record]) -> Iterator[Record]:
        """Yield the records at or after `since`, counting the newest."""
        since, newest, emitted = self.since, self.newest, 0
        for record in records:
            modified = record["modified_at"]
            if modified is not None:
                if since and modified < since:
                    continue
                if newest is None or modified > newest:
                    newest = self.newest = modified
            emitted += 1
            yield record
        self.progress.emitted += emitted
        self._book.count(records=emitted)

    def _checkpoint(self, page: Page) -> None:
        """Record that every file up to `page`'s last is out; STATE when due.

        In RECORD mode a STATE is due every `CHECKPOINT_EVERY_RECORDS` records
        or `CHECKPOINT_EVERY_S` seconds; in BATCH mode the SDK sends one after
        each BATCH instead (a checkpoint must not cover a file not announced).
        """
        self._advance_bookmark()
        Checkpoint(
            offset=page.end,
            file_id=page.files[-1]["file_id"],
            page=len(page.files),
            started=self.started,
            since=self.since,
            version=self.version,
            seen=self.newest,
            shrank=self._listing.shifted,
        ).write(self._book.state)
        now = self._clock.monotonic()
        if self.settings.batching or (
            self.progress.emitted - self._emitted_at_state < CHECKPOINT_EVERY_RECORDS
            and now - self._last_state_at < CHECKPOINT_EVERY_S
        ):
            return
        self._last_state_at, self._emitted_at_state = now, self.progress.emitted
        self._book.write_state()

    def _advance_bookmark(self) -> None:
        """Count the greatest `modified_at` out so far towards the bookmark."""
        if self.newest is not None and self.settings.incremental:
            self._book.advance_bookmark(self.newest)

    def _activate(self, version: int) -> None:
        """Let the target retire the rows of files the API no longer lists.

        Only at the end: sent first, it would retire every row before the sync
        had loaded any, and a sync that then failed would leave the table empty.
        """
        if self.settings.retires_rows:
            self._book.activate(version)
            return
        logger.info(
            "files: rows of files gone from the API are not retired: batch rows "
            "carry no _sdc_table_version unless batch_record_metadata is on"
        )

    def _warn_of_replaced_text(self, page: Page) -> None:
        """Warn, once a sync, that text UTF-8 cannot carry was replaced."""
        if self._replaced_text_in is None and page.replaced_text_in is not None:
            self._replaced_text_in = page.replaced_text_in
            logger.warning(
                "files: file %s (and maybe others) has text that UTF-8 cannot "
                "carry (a lone surrogate escape): replaced with U+FFFD",
                page.replaced_text_in,
            )


def modified_since(
    bookmark: str | None, lookback_s: int, start_date: str | None
) -> str | None:
    """Return the earliest `modified_at` a sync emits, if any.

    The bookmark less the lookback, not before `start_date`; on a first sync
    `start_date`.
    """
    candidates = []
    if bookmark:
        candidates.append(parse_instant(bookmark) - timedelta(seconds=lookback_s))
    if start_date:
        candidates.append(parse_instant(start_date))
    return format_instant(max(candidates)) if candidates else None


def _bookmark(stream_state: dict[str, t.Any]) -> str | None:
    """Return the bookmark a stream's state holds, if any."""
    if stream_state.get("replication_key") != "modified_at":
        return None
    return stream_state.get("replication_key_value")
