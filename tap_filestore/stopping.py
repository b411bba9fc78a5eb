"""Stopping honestly: on a signal or a closed output, no false success, no hang.

The SDK answers SIGTERM and SIGINT by writing the state and exiting 0, as if
the sync had finished. Here a signal stops the sync where it is: the records
already written go out (a write in progress ends first, so no line is cut in
half), no STATE follows them, and the process exits with 128 + the signal's
number and one line that says so.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import typing as t

from tap_filestore.errors import SyncStoppedError
from tap_filestore.session import abort_requests

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

logger = logging.getLogger("tap-filestore")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Exit status after a closed output: 128 + SIGPIPE, as a shell reports it.
CLOSED_OUTPUT_EXIT = 128 + signal.SIGPIPE


def stop_on_signals() -> None:
    """Make SIGTERM and SIGINT stop the sync (from the main thread)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop)


class _Output:
    """Whether output is being written, and a stop that waits for it to end."""

    writing = False
    stopped: SyncStoppedError | None = None


@contextlib.contextmanager
def whole_lines() -> Iterator[None]:
    """Write output that a signal cannot cut short: it stops the sync after.

    A signal that interrupts a write to a full pipe would otherwise end it part
    way through a line, and the target would fail on that line before it
    confirmed the last STATE it loaded, so the next run would start over.
    """
    _Output.writing = True
    try:
        yield
    finally:
        _Output.writing = False
    if (stopped := _Output.stopped) is not None:
        _Output.stopped = None
        raise stopped


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
    if _Output.writing:
        _Output.stopped = stopped  # the write goes on, then `whole_lines` raises
        return
    raise stopped


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


def exit_at_once(stopped: SyncStoppedError) -> t.NoReturn:
    """Log why the sync stopped and end the process now.

    Requests still running in other threads, or waiting to retry, are not
    waited for: what they would fetch can no longer be emitted.
    """
    logger.error("%s", stopped)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(stopped.exit_code)
