"""Every private singer-sdk name the tap uses, and why: nowhere else.

The SDK has no public hook for these. Each is checked by
`tests/test_sdk_private.py`, which fails naming the SDK change if one moves.
Checked against singer-sdk 0.54.9 and 0.55.0b7.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timezone

from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams import Stream

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from singer_sdk.helpers import _batch
    from singer_sdk.helpers.types import Context

    # What the SDK passes to `Stream.get_batches` (types only), for streams.py.
    BatchConfig = _batch.BatchConfig
    BatchEncoding = _batch.BaseBatchFileEncoding

#: The key of a stream's interim bookmark in its state (`helpers._state`).
PROGRESS_MARKERS = "progress_markers"


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


def sync_records_quietly(stream: Stream, context: Context | None) -> Iterable[dict]:
    """Yield the records the SDK's record loop passes, writing no message.

    `Stream._sync_records(write_messages=False)` is what the SDK's own
    `get_batches` batches: selection, `post_process` and state bookkeeping
    included, the bookmark finalized when the records run out.
    """
    return stream._sync_records(context, write_messages=False)  # noqa: SLF001


def drop_progress_bookmark(stream_state: dict) -> None:
    """Forget the greatest replication value seen so far this sync.

    The SDK finalizes its progress markers into the bookmark at the end of a
    sync; with them gone, the bookmark stays where the sync started.
    """
    markers = stream_state.get(PROGRESS_MARKERS, {})
    markers.pop("replication_key", None)
    markers.pop("replication_key_value", None)


class DirectRecordMessages(Stream):
    """Builds RECORD messages directly when neither selection nor maps apply.

    `Stream._generate_record_messages` walks the selection mask and the stream
    maps for every record, a fifth of the tap's time per record. Subclasses say
    in `records_go_out_as_they_are` when neither can change a record.
    """

    records_go_out_as_they_are = False

    def _generate_record_messages(
        self, record: dict
    ) -> Generator[RecordMessage, None, None]:
        if not self.records_go_out_as_they_are:
            yield from super()._generate_record_messages(record)
            return
        yield RecordMessage(
            stream=self.name,
            record=record,
            version=self._stream_version,
            time_extracted=datetime.now(timezone.utc),
        )
