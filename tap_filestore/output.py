"""Singer message output: msgspec encoding, RECORDs written in blocks."""

from __future__ import annotations

import sys
import typing as t
from datetime import datetime, timezone

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import SingerMessageType
from typing_extensions import override

from tap_filestore.stopping import output_closed, whole_lines

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from singer_sdk.singerlib.encoding.simple import Message

#: RECORD bytes gathered before they are written out.
BLOCK_BYTES = 64 * 1024
_ENCODER = msgspec.json.Encoder()


class BufferedMsgSpecWriter(MsgSpecWriter):
    """Encode with msgspec; write RECORDs in blocks, every other message at once.

    The SDK's writers write and flush each record: a system call a record, two
    under `PYTHONUNBUFFERED`. RECORDs wait here instead: STATE (which claims
    them) and every other message write out what waits before themselves, then
    flush, so a target never holds a STATE before the records it covers, and a
    tap killed with records still waiting has emitted no STATE for them.
    """

    def __init__(self) -> None:
        """Start with nothing waiting."""
        super().__init__()
        self._waiting = bytearray()
        self.last_type: str | None = None

    @override
    def write_message(self, message: Message) -> None:
        self._waiting += self.format_message(message)
        self.last_type = message.type
        if (
            message.type != SingerMessageType.RECORD
            or len(self._waiting) >= BLOCK_BYTES
        ):
            self.flush()

    def write_records(
        self, stream: str, records: Iterable[dict[str, t.Any]], version: int | None
    ) -> None:
        """Write RECORD messages for `records`, as `write_message` would.

        The same lines, without a message object and its dict for each record.
        """
        waiting, encode, now = self._waiting, _ENCODER.encode_into, datetime.now
        message: dict[str, t.Any] = {"type": "RECORD", "stream": stream, "record": None}
        if version is not None:
            message["version"] = version
        for record in records:
            message["record"] = record
            message["time_extracted"] = now(timezone.utc)
            encode(message, waiting, -1)
            waiting += b"\n"
            if len(waiting) >= BLOCK_BYTES:
                self.flush()
        if message["record"] is not None:
            self.last_type = SingerMessageType.RECORD

    def flush(self) -> None:
        """Write out the waiting messages and flush stdout.

        Raises:
            SyncStoppedError: If nobody reads the output any more.
        """
        try:
            with whole_lines(), memoryview(self._waiting) as waiting:
                # A write to a full pipe that a signal interrupts returns short.
                written = 0
                while written < len(waiting):
                    written += sys.stdout.buffer.write(waiting[written:])
                sys.stdout.flush()
        except BrokenPipeError:
            raise output_closed() from None
        finally:
            self._waiting.clear()
