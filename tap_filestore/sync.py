"""One sync of the `files` stream: what it knows, and what it decides.

A `SyncRun` is made afresh for each sync, so nothing of one sync's state
carries into the next. It decides which records go out, what a checkpoint
holds, when a STATE is due and how the sync ends; the stream carries those
decisions out through the SDK.
"""

from __future__ import annotations

import dataclasses
import enum
import typing as t

from tap_filestore.state import Checkpoint

if t.TYPE_CHECKING:
    from tap_filestore.pagination import Page

#: While a sync pages in RECORD mode, a STATE (with its checkpoint) follows
#: at least every this many records and seconds (in BATCH mode, every BATCH).
CHECKPOINT_EVERY_RECORDS = 10_000
CHECKPOINT_EVERY_S = 60.0


class Ending(enum.Enum):
    """How a sync whose pages ran out ends."""

    #: Files moved while it paged: the bookmark stays, nothing is retired.
    SHIFTED = enum.auto()
    #: The listing ended before the `total` the API reported: the sync fails.
    INCOMPLETE = enum.auto()
    #: Every file is out: the bookmark advances.
    COMPLETE = enum.auto()
    #: Every file is out, and the sync carried them all: its version retires
    #: the rows of files gone.
    ACTIVATE = enum.auto()


@dataclasses.dataclass
class SyncRun:
    """What one sync knows and decides."""

    #: The earliest `modified_at` it emits (None: every file).
    since: str | None
    #: When it started (its signpost; a resumed sync's first part's).
    started: str
    #: Whether it started without a bookmark, so carries every file.
    fresh_start: bool
    #: Whether its records go to batch files (STATE after each BATCH).
    batching: bool
    #: Where its paging starts (after a checkpoint), and whether the listing
    #: shifted before that (the bookmark then stays where it was).
    start_offset: int = 0
    shifted: bool = False
    #: The greatest `modified_at` emitted (both parts of a resumed sync).
    newest: str | None = None
    #: The last page parsed, with its last file's id: out in full once the
    #: page after it is asked for.
    last_page: tuple[Page, str] | None = None
    #: When the last STATE went out (monotonic seconds), and after how many records.
    last_state_at: float = 0.0
    emitted_at_state: int = 0
    #: The table version to activate once every record is out.
    version_to_activate: int | None = None
    #: The first file whose text had to be replaced, if any.
    replaced_text_in: str | None = None

    def keeps(self, modified: str | None) -> bool:
        """Whether a record with this `modified_at` goes out (counted if so)."""
        if modified is None:
            return True
        if self.since and modified < self.since:
            return False
        if self.newest is None or modified > self.newest:
            self.newest = modified
        return True

    def checkpoint(
        self, page: Page, file_id: str, version: int | None, *, shifted: bool
    ) -> Checkpoint:
        """Return the checkpoint once every file up to `page`'s last is out."""
        return Checkpoint(
            offset=page.end,
            file_id=file_id,
            page=len(page.files),
            started=self.started,
            since=self.since,
            version=version,
            seen=self.newest,
            shrank=shifted,
        )

    def state_due(self, now: float, emitted: int) -> bool:
        """Whether a STATE goes out with the checkpoint just taken.

        In RECORD mode, every `CHECKPOINT_EVERY_RECORDS` records or
        `CHECKPOINT_EVERY_S` seconds; in BATCH mode the SDK writes one after
        each BATCH instead (a checkpoint must not cover a file not announced).
        """
        if self.batching or (
            emitted - self.emitted_at_state < CHECKPOINT_EVERY_RECORDS
            and now - self.last_state_at < CHECKPOINT_EVERY_S
        ):
            return False
        self.last_state_at, self.emitted_at_state = now, emitted
        return True

    def ending(self, *, shortfall: str | None, shifted: bool) -> Ending:
        """Return how the sync ends, once its pages ran out.

        Args:
            shortfall: What the listing lacks of its `total`, if anything.
            shifted: Whether the listing shifted while the sync paged.
        """
        if shifted:
            return Ending.SHIFTED
        if shortfall:
            return Ending.INCOMPLETE
        return Ending.ACTIVATE if self.fresh_start else Ending.COMPLETE
