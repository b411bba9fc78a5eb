"""Stopping honestly: on a signal, no false success, no hang.

The SDK answers SIGTERM and SIGINT by writing the state and exiting 0, as if
the sync had finished. Here a signal stops the sync where it is: the records
already written go out (a write in progress ends first, so no line is cut in
half), no STATE follows them, and the process exits with 128 + the signal's
number and one line that says so.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import typing as t

from tap_filestore.errors import SyncStoppedError
from tap_filestore.output import stop_after_write
from tap_filestore.session import abort_requests

if t.TYPE_CHECKING:
    from types import FrameType

logger = logging.getLogger("tap-filestore")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT stop the sync (from the main thread)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)


def _stop(signum: int, _frame: FrameType | None) -> None:
    # A second signal while stopping ends the process the default way.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_DFL)
    abort_requests()
    name = signal.Signals(signum).name
    msg = (
        f"The sync was stopped by {name} before it finished: the records sent "
        "so far are kept, and the next run resumes from the last STATE."
    )
    stopped = SyncStoppedError(msg, exit_code=128 + signum)
    if not stop_after_write(stopped):
        raise stopped


def exit_at_once(stopped: SyncStoppedError) -> t.NoReturn:
    """Log why the sync stopped and end the process now.

    Requests still running in other threads, or waiting to retry, are not
    waited for: what they would fetch can no longer be emitted.
    """
    logger.error("%s", stopped)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(stopped.exit_code)
