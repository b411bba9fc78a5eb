"""Every private singer-sdk name the tap uses, and why: nowhere else.

The SDK has no public hook for these. Each is checked by
`tests/test_sdk_private.py`, which fails naming the SDK change if one moves.
Checked against singer-sdk 0.54.9 and 0.55.0b7.
"""

from __future__ import annotations

import contextlib
import logging
import typing as t

from singer_sdk import Tap
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.singerlib import ActivateVersionMessage
from singer_sdk.streams import Stream

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from singer_sdk import metrics
    from singer_sdk.helpers import _batch
    from singer_sdk.helpers.types import Context, TapState
    from singer_sdk.singerlib import Message

    # What the SDK passes to `Stream.get_batches` (types only), for streams.py.
    BatchConfig = _batch.BatchConfig
    BatchEncoding = _batch.BaseBatchFileEncoding

#: The keys of a stream's interim bookmark and of its sync's signpost in its
#: state (`helpers._state`).
PROGRESS_MARKERS = "progress_markers"
SIGNPOST = "replication_key_signpost"


class MessageWriter(t.Protocol):
    """The tap's message writer."""

    def write_message(self, message: Message) -> None:
        """Send `message`."""
        ...


class StateWriter(t.Protocol):
    """The tap's `state_writer`."""

    def write_state(self, state: TapState) -> None:
        """Send a STATE message with `state`, unless it was the last sent."""
        ...


class SdkBookkeeping:
    """A stream's state and metrics as the SDK keeps them, for a sync it runs itself.

    The SDK advances a bookmark once a record (`Stream._increment_stream_state`),
    most of the tap's time per record; the sync advances it once a page
    instead, and the SDK makes it the bookmark at the end (`_finalize_state`).
    RECORDs carry the table version the stream holds (`Stream._stream_version`):
    the SDK sets it only when it sends ACTIVATE_VERSION itself, before the
    first record; the sync sends it after the last one. STATE and
    ACTIVATE_VERSION go out through public names.
    """

    def __init__(
        self,
        stream: Stream,
        context: Context | None,
        *,
        writer: MessageWriter,
        state_writer: StateWriter,
        counters: tuple[metrics.Counter, metrics.Counter | None],
    ) -> None:
        """Keep the state of `stream` (in `context`); write through the tap's writers.

        Args:
            stream: The stream.
            context: Its context (None: the stream has no partitions).
            writer: The tap's message writer.
            state_writer: The tap's `state_writer`, which skips a STATE equal
                to the last one it sent.
            counters: The SDK's counters of page requests and of records
                (None where the SDK's record loop counts them).
        """
        self._stream, self._context = stream, context
        self._writer, self._state_writer = writer, state_writer
        self._pages, self._records = counters
        self.state = stream.get_context_state(context)

    def count(self, *, pages: int = 0, records: int = 0) -> None:
        """Count pages requested, or records that went out."""
        if pages:
            self._pages.increment(pages)
        if records and self._records is not None:
            self._records.increment(records)

    def advance_bookmark(self, value: str) -> None:
        """Count `value` as seen this sync, as the SDK does for each record.

        A resumed sync counts what its first part saw: the SDK drops the
        progress markers of the state a sync starts from.
        """
        key = t.cast("str", self._stream.replication_key)
        self._stream._increment_stream_state({key: value}, context=self._context)  # noqa: SLF001

    def keep_starting_bookmark(self) -> None:
        """Forget the greatest replication value seen so far this sync."""
        markers = self.state.get(PROGRESS_MARKERS, {})
        markers.pop("replication_key", None)
        markers.pop("replication_key_value", None)

    def finalize(self) -> None:
        """Make the progress markers the bookmark, capped by the signpost."""
        self._stream._finalize_state(self.state)  # noqa: SLF001

    def stamp(self, version: int) -> None:
        """Make `version` the table version the stream's RECORDs carry."""
        self._stream._stream_version = version  # noqa: SLF001

    def write_state(self) -> None:
        """Send a STATE message with the tap's state, unless it was the last sent."""
        self._state_writer.write_state(self._stream.tap_state)

    def activate(self, version: int) -> None:
        """Send ACTIVATE_VERSION for `version`, under each name the stream goes by."""
        for stream_map in self._stream.stream_maps:
            if not isinstance(stream_map, RemoveRecordTransform):
                message = ActivateVersionMessage(
                    stream=stream_map.stream_alias, version=version
                )
                self._writer.write_message(message)


@contextlib.contextmanager
def record_loop(stream: Stream, context: Context | None) -> Iterator[metrics.Counter]:
    """Do the SDK's part around a record loop the stream runs itself.

    What `Stream._sync_records` does around its loop: note the starting
    bookmark, and count the records (with the counter yielded) and time the
    sync. The sync finalizes the bookmark itself.
    """
    stream._write_starting_replication_value(context)  # noqa: SLF001
    with stream.get_record_counter() as counter, stream.get_sync_timer():
        yield counter


class OwnRecordLoop(Stream):
    """Runs the stream's own record loop (`sync_records`) in place of the SDK's.

    `Stream._sync_records` walks the selection mask and the stream maps, and
    builds a message object and advances the bookmark for every record: most
    of the tap's time per record. Where neither selection nor maps can change
    a record (subclasses say so in `records_go_out_as_they_are`), the stream
    writes its records itself. A dry run (`--test`) keeps the SDK's loop.
    """

    records_go_out_as_they_are = False

    def sync_records(self, context: Context | None) -> None:
        """Write every record of the sync, and its STATE, as the SDK's loop would."""
        raise NotImplementedError

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[str, t.Any], None, None]:
        if (
            not (write_messages and self.records_go_out_as_they_are)
            or context
            or self.partitions
            or self.ABORT_AT_RECORD_COUNT is not None
        ):
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        self.sync_records(context)


class SignalsLeftAlone(Tap):
    """Keeps the SDK's constructor from binding SIGTERM and SIGINT.

    `PluginBase._setup_signal_handlers` binds them to a handler that writes
    STATE and exits 0, a false success, and does it in the process of anyone
    who builds a tap: the command line binds the tap's own (`stopping`).
    """

    def _setup_signal_handlers(self) -> None:
        return


class _DropNullBookmarkWarnings(logging.Filter):
    """The SDK warns once per record with a null `modified_at`; those are expected.

    It also warns that an unsorted stream cannot resume: this one can (its
    STATE carries a checkpoint).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return message != "New replication value is null" and not message.startswith(
            "Stream is assumed to be unsorted"
        )


class _DropFailureNotice(logging.Filter):
    """The SDK logs this before re-raising; the error's own line follows once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("An unhandled error occurred")


def install_log_filters(stream_logger: str) -> None:
    """Quiet the SDK log lines that match its message text (once per process).

    Its null-bookmark warning (one a record), and its failure notice before
    the error's own line (on `stream_logger`).
    """
    loggers = (
        (logging.getLogger("singer_sdk"), _DropNullBookmarkWarnings),
        (logging.getLogger(stream_logger), _DropFailureNotice),
    )
    for logger, kind in loggers:
        if not any(isinstance(known, kind) for known in logger.filters):
            logger.addFilter(kind())
