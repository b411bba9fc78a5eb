"""Stopping is honest (issue 9, class 5).

SIGTERM or SIGINT mid-sync: the tap stops promptly, writes no STATE after the
signal, and exits 128 + the signal's number with one line saying it stopped.
A closed stdout: exit at once, one line naming the closed output, no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tap_filestore.output import CLOSED_OUTPUT_EXIT
from tap_filestore.sandbox import Sandbox
from tests.conftest import FAST_RETRIES, error_lines, state_at
from tests.leaks import CHILD_OUTPUTS

BOOKMARK = "2000-01-01T00:00:00.000000+00:00"
#: Guards against a hang only: a stopped tap exits in well under a second.
HANG_GUARD_S = 30


def start_tap(
    api: Sandbox, tmp_path: Path, **overrides: object
) -> subprocess.Popen[str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(api.config(**{**FAST_RETRIES, **overrides})))
    state = tmp_path / "state.json"
    state.write_text(json.dumps(state_at(BOOKMARK)))
    argv = [sys.executable, "-m", "tap_filestore", "--config", str(config)]
    return subprocess.Popen(
        [*argv, "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("in_flight", [1, 4])
def test_a_signal_stops_the_sync_with_no_state_after_it_and_a_non_zero_exit(
    tmp_path: Path, signum: signal.Signals, in_flight: int
) -> None:
    with Sandbox(3000) as api:
        api.latency = 0.02  # requests are in flight when the signal comes
        tap: list[subprocess.Popen[str]] = []
        api.inject("call", skip=5, action=lambda: os.kill(tap[0].pid, signum))
        tap.append(start_tap(api, tmp_path, max_concurrent_requests=in_flight))
        out, err = tap[0].communicate(timeout=HANG_GUARD_S)
        CHILD_OUTPUTS.extend((out, err))
        pages_requested = len(api.page_requests())

    assert tap[0].returncode == 128 + signum
    (line,) = error_lines(err)
    assert f"stopped by {signal.Signals(signum).name}" in line
    assert "Traceback" not in err
    messages = [json.loads(m) for m in out.splitlines()]  # every line complete
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert all(
        s["bookmarks"]["files"]["replication_key_value"] == BOOKMARK for s in states
    )
    assert 0 < sum(m["type"] == "RECORD" for m in messages) < 3000
    assert pages_requested < 30  # it stopped instead of syncing on


def test_a_closed_output_ends_the_tap_at_once_with_one_line(tmp_path: Path) -> None:
    with Sandbox(20_000) as api:
        tap = start_tap(api, tmp_path, page_size=1000)
        assert tap.stdout is not None
        tap.stdout.readline()  # the tap is writing: now the reader goes away
        tap.stdout.close()
        _, err = tap.communicate(timeout=HANG_GUARD_S)
        CHILD_OUTPUTS.append(err)
        pages_requested = len(api.page_requests())

    assert tap.returncode == CLOSED_OUTPUT_EXIT
    (line,) = error_lines(err)
    assert "The output closed" in line
    assert "Traceback" not in err
    assert "Exception ignored" not in err
    assert pages_requested < 20


def blocked_writing(pid: int) -> bool:
    """Whether the process's main thread waits for room in its output pipe."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_write")
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_write_leaves_no_half_line_for_the_target(
    tmp_path: Path, signum: signal.Signals
) -> None:
    # A slow target: the tap fills the pipe and waits, part way through a
    # block of records, when the signal comes.
    with Sandbox(20_000) as api:
        tap = start_tap(api, tmp_path, page_size=1000)
        try:
            deadline = time.monotonic() + HANG_GUARD_S
            while not blocked_writing(tap.pid):
                assert time.monotonic() < deadline, "the tap never filled its output"
                time.sleep(0.01)
            os.kill(tap.pid, signum)
        finally:
            out, err = tap.communicate(timeout=HANG_GUARD_S)
            CHILD_OUTPUTS.extend((out, err))

    assert tap.returncode == 128 + signum
    assert out.endswith("\n")
    messages = [json.loads(line) for line in out.splitlines()]  # every line whole
    assert sum(m["type"] == "RECORD" for m in messages) < 20_000
    (line,) = error_lines(err)
    assert f"stopped by {signal.Signals(signum).name}" in line
