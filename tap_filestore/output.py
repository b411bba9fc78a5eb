"""Singer message output: msgspec encoding, RECORDs written in blocks."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import typing as t
from datetime import datetime, timezone

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import SingerMessageType
from typing_extensions import override

from tap_filestore.errors import SyncStoppedError

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.singerlib.encoding.simple import Message

#: RECORD bytes gathered before they are written out.
BLOCK_BYTES = 64 * 1024
#: Exit status after a closed output: 128 + SIGPIPE, as a shell reports it.
CLOSED_OUTPUT_EXIT = 128 + signal.SIGPIPE
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


class _Writing:
    """Whether output is being written, and a stop that waits for it to end."""

    now = False
    stopped: SyncStoppedError | None = None


@contextlib.contextmanager
def whole_lines() -> Iterator[None]:
    """Write output that a signal cannot cut short: it stops the sync after.

    A signal that interrupts a write to a full pipe would otherwise end it part
    way through a line, and the target would fail on that line before it
    confirmed the last STATE it loaded, so the next run would start over.
    """
    _Writing.now = True
    try:
        yield
    finally:
        _Writing.now = False
    if (stopped := _Writing.stopped) is not None:
        _Writing.stopped = None
        raise stopped


def stop_after_write(stopped: SyncStoppedError) -> bool:
    """Keep `stopped` to raise once the write in progress ends, if one is.

    Returns:
        Whether a write was in progress.
    """
    if _Writing.now:
        _Writing.stopped = stopped
    return _Writing.now


def output_closed() -> SyncStoppedError:
    """Return the error for an output nobody reads any more."""
    # Nothing more can be written: point stdout at nothing, so that the
    # interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    msg = (
        "The output closed (the target exited or stopped reading): the sync was "
        "stopped. Check the target's own error."
    )
    return SyncStoppedError(msg, exit_code=CLOSED_OUTPUT_EXIT)
