"""Every private singer-sdk name the tap uses, and why: nowhere else.

The SDK has no public hook for these. Each is checked by
`tests/test_sdk_private.py`, which fails naming the SDK change if one moves.
Checked against singer-sdk 0.54.9 and 0.55.0b7.
"""

from __future__ import annotations

import itertools
import logging
import typing as t

from singer_sdk import Tap, metrics
from singer_sdk.streams import Stream

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator

    from singer_sdk.helpers import _batch
    from singer_sdk.helpers.types import Context

    # What the SDK passes to `Stream.get_batches` (types only), for streams.py.
    BatchConfig = _batch.BatchConfig
    BatchEncoding = _batch.BaseBatchFileEncoding

#: The keys of a stream's interim bookmark and of its sync's signpost in its
#: state (`helpers._state`).
PROGRESS_MARKERS = "progress_markers"
SIGNPOST = "replication_key_signpost"


def set_table_version(stream: Stream, version: int) -> None:
    """Stamp the stream's RECORDs with a table version (`Stream._stream_version`).

    The SDK sets it only when it sends ACTIVATE_VERSION itself, before the first
    record; the tap sends it after the last one.
    """
    stream._stream_version = version  # noqa: SLF001


def table_version(stream: Stream) -> int | None:
    """Return the table version the stream's RECORDs carry."""
    return stream._stream_version  # noqa: SLF001


def write_activate_version(stream: Stream, version: int) -> None:
    """Send ACTIVATE_VERSION (`Stream._write_activate_version_message`)."""
    stream._write_activate_version_message(version)  # noqa: SLF001


def record_chunks(
    stream: Stream, context: Context | None, sizes: Iterable[int]
) -> Iterator[Iterator[dict[str, t.Any]]]:
    """Yield the stream's records in chunks, sized by `sizes` in turn, writing nothing.

    What `Stream._sync_records(write_messages=False)` (the loop the SDK's own
    `get_batches` batches) does for a stream without partitions or children,
    except the bookmark: the stream advances it itself, as its records go out
    (`advance_progress_bookmark`), instead of the SDK once a record, most of
    the tap's time per record. Each chunk is an iterator, so that a chunk need
    not be held in memory: take all of it before asking for the next. The
    bookmark is finalized when the records run out. A dry run (`--test`)
    keeps the SDK's loop, which enforces its limit.
    """
    sizes = iter(sizes)
    if stream.ABORT_AT_RECORD_COUNT is not None:
        loop = iter(stream._sync_records(context, write_messages=False))  # noqa: SLF001
        while chunk := list(itertools.islice(loop, next(sizes))):
            yield iter(chunk)
        return
    stream._write_starting_replication_value(context)  # noqa: SLF001
    records = (
        record
        for row in stream.get_records(context)
        # The tap yields dicts: the SDK's (record, context) tuples are deprecated.
        if (record := stream.post_process(t.cast("dict[str, t.Any]", row), context))
        is not None
    )
    with stream.get_record_counter() as counter, stream.get_sync_timer():
        # `islice` pulls no record past the chunk.
        for first in records:
            yield _counted(counter, itertools.chain((first,), records), next(sizes))
    stream._finalize_state(stream.get_context_state(context))  # noqa: SLF001


def _counted(
    counter: metrics.Counter, records: Iterator[dict[str, t.Any]], size: int
) -> Iterator[dict[str, t.Any]]:
    """Yield the first `size` records; count them once all are out."""
    count = 0
    for count, record in enumerate(itertools.islice(records, size), 1):  # noqa: B007
        yield record
    counter.increment(count)


def advance_progress_bookmark(
    stream: Stream, context: Context | None, value: str
) -> None:
    """Count `value` as seen this sync, as the SDK does for each record.

    The greatest value counted is the bookmark once the sync is finalized. A
    resumed sync counts what its first part saw: the SDK drops the progress
    markers of the state a sync starts from.
    """
    key = t.cast("str", stream.replication_key)
    stream._increment_stream_state({key: value}, context=context)  # noqa: SLF001


def drop_progress_bookmark(stream_state: dict[str, t.Any]) -> None:
    """Forget the greatest replication value seen so far this sync.

    The SDK finalizes its progress markers into the bookmark at the end of a
    sync; with them gone, the bookmark stays where the sync started.
    """
    markers = stream_state.get(PROGRESS_MARKERS, {})
    markers.pop("replication_key", None)
    markers.pop("replication_key_value", None)


class LeanRecordSync(Stream):
    """Syncs records in chunks, written straight out, when nothing changes them.

    `Stream._sync_records` walks the selection mask and the stream maps,
    builds a message object and advances the bookmark for every record: most
    of the tap's time per record. Where neither selection nor maps can change
    a record (subclasses say so in `records_go_out_as_they_are`), the records
    are taken in chunks instead (`record_chunks`, which leaves the same state)
    and handed to `write_records`. A dry run (`--test`) keeps the SDK's loop.
    """

    records_go_out_as_they_are = False
    #: Records the bookmark advances by at a time.
    CHUNK_RECORDS = 10_000

    def write_records(self, records: Iterator[dict[str, t.Any]]) -> None:
        """Write a RECORD message for each record, as the SDK's loop would."""
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
        for chunk in record_chunks(self, context, itertools.repeat(self.CHUNK_RECORDS)):
            self.write_records(chunk)
        self._write_state_message()  # as the SDK's loop ends


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
