"""Singer message output: msgspec encoding, flushed when it matters."""

from __future__ import annotations

import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.singerlib import SingerMessageType
from typing_extensions import override

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message


class BufferedMsgSpecWriter(MsgSpecWriter):
    """Encode with msgspec; flush stdout for every message but RECORD.

    The SDK's writers flush after every record, a system call each. RECORDs may
    wait in the buffer: STATE (which claims them) and every other message flush
    it, so a target never holds a STATE before the records it covers, and a tap
    killed with records still buffered has emitted no STATE for them.
    """

    @override
    def write_message(self, message: Message) -> None:
        sys.stdout.buffer.write(self.format_message(message))
        if message.type != SingerMessageType.RECORD:
            sys.stdout.flush()
