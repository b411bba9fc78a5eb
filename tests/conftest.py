"""Fixtures: a real sandbox API per test, and ways to run the tap against it."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pytest

from tap_filestore.sandbox import Sandbox
from tap_filestore.sandbox.server import CLIENT_SECRET
from tap_filestore.tap import TapFileStore, prepare_logging
from tap_filestore.timestamps import format_instant
from tests.leaks import CHILD_OUTPUTS, leaked
from tests.meltano_cli import require_plugin, unavailable
from tests.pipeline import source
from tests.postgres import Cluster, PostgresUnavailableError, start_cluster

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime
    from pathlib import Path

#: Quick retries, and one page at a time so that injected faults hit known pages.
FAST_RETRIES = {
    "backoff_factor": 0.01,
    "request_timeout": 5,
    "max_concurrent_requests": 1,
}
_SANDBOXES: list[Sandbox] = []


@dataclass
class SyncResult:
    """The Singer messages of one sync."""

    messages: list[dict[str, Any]]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m["record"] for m in self.of_type("RECORD")]

    @property
    def ids(self) -> list[str]:
        return [r["file_id"] for r in self.records]

    @property
    def state(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self.of_type("STATE")[-1]["value"])

    @property
    def bookmark(self) -> str | None:
        return cast(
            "str | None",
            self.state["bookmarks"]["files"].get("replication_key_value"),
        )


def error_lines(stderr: str) -> list[str]:
    """Return the ERROR lines of a tap's stderr."""
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def state_at(bookmark: str) -> dict[str, Any]:
    """Return a state whose `files` bookmark is `bookmark`."""
    return {
        "bookmarks": {
            "files": {
                "replication_key": "modified_at",
                "replication_key_value": bookmark,
            }
        }
    }


def sync(
    config: dict[str, Any],
    *,
    state: dict[str, Any] | None = None,
    catalog: dict[str, Any] | None = None,
) -> SyncResult:
    """Run the tap in this process and return what it wrote to stdout."""
    with captured_stdout() as out:
        tap = TapFileStore(
            config=config, state=state, catalog=catalog, parse_env_config=False
        )
        tap.sync_all()
    return SyncResult([json.loads(line) for line in out.getvalue().splitlines()])


@contextmanager
def captured_stdout() -> Iterator[io.BytesIO]:
    """Capture what the tap writes to stdout (its writer writes bytes)."""
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8")
    try:
        with redirect_stdout(text):
            yield raw
    finally:
        text.flush()
        text.detach()


def run_cli(
    *args: str,
    config: dict[str, Any] | None = None,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    wrapper: Sequence[str] = (),
    entry: Sequence[str] = ("-m", "tap_filestore"),
) -> subprocess.CompletedProcess[str]:
    """Run `tap-filestore` as a user does, in a child process.

    `wrapper` runs it (`setpriv ... --`, a shell that sets the umask); `entry`
    is what Python runs (`-c SCRIPT` to run it with a fault injected).
    """
    argv = [*wrapper, sys.executable, *entry, *args]
    if config is not None:
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        argv += ["--config", str(path)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    CHILD_OUTPUTS.extend((done.stdout, done.stderr))
    return done


def expected_records(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Compute, from the dataset's instants, the records the tap must emit."""

    def emitted(moment: datetime | None) -> str | None:
        return None if moment is None else format_instant(moment)

    return {
        file_id: {
            **row,
            "created_at": emitted(row["created_at"]),
            "modified_at": emitted(row["modified_at"]),
        }
        for file_id, row in source(sandbox).items()
    }


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL for the session (and Meltano with target-postgres)."""
    require_plugin("loaders", "target-postgres")
    try:
        server = start_cluster()
    except PostgresUnavailableError as exc:
        unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox API with 250 files, stopped after the test."""
    with Sandbox(250) as api:
        yield api


@pytest.fixture
def config(sandbox: Sandbox) -> dict[str, Any]:
    """A tap config for the sandbox, with quick retries."""
    return sandbox.config(**FAST_RETRIES)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The waits before retries, as the tap logs them; none is slept for real.

    The tap's clock skips every sleep (the pauses of `Retry-After` and the
    pacer's too); after the test, each retry wait is checked to be one the
    tap slept, in order.
    """
    clock = SkippingClock()
    monkeypatch.setattr(TapFileStore, "clock", clock)
    retries = RetryWaits()
    logger = logging.getLogger("tap_filestore.client")
    logger.addHandler(retries)
    try:
        yield retries.waits
    finally:
        logger.removeHandler(retries)
    slept = iter(clock.slept)
    assert all(wait in slept for wait in retries.waits), (retries.waits, clock.slept)


class RetryWaits(logging.Handler):
    """Collects the wait of each "Retry n of m in s" line of the request path."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.waits: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("Retry %d of %d in"):
            # "Retry %d of %d in %.1f s after %s": the third argument is the wait.
            self.waits.append(cast("tuple[int, int, float, str]", record.args)[2])


class SkippingClock:
    """A monotonic clock whose `sleep` moves it on instead of waiting."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def time(self) -> float:
        return time.time() + sum(self.slept)

    def monotonic(self) -> float:
        return time.monotonic() + sum(self.slept)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture(scope="session", autouse=True)
def _process_as_the_cli_prepares_it() -> None:
    """Mask secrets and quiet the SDK in-process, as the command line does.

    The excepthook stays pytest's: the tests that need the tap's run it as a
    child process.
    """
    prepare_logging()


@pytest.fixture(scope="session", autouse=True)
def _track_sandboxes() -> Iterator[None]:
    """Remember every sandbox started, to know every secret and token issued."""
    start = Sandbox.start

    def tracked_start(self: Sandbox) -> Sandbox:
        _SANDBOXES.append(self)
        return start(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Sandbox, "start", tracked_start)
        yield


@pytest.fixture(autouse=True)
def _no_secret_leaks(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    """Fail the test whose logs (at DEBUG) or output show a secret or a token."""
    caplog.set_level(logging.DEBUG)
    CHILD_OUTPUTS.clear()
    yield
    captured = capsys.readouterr()
    secrets = {CLIENT_SECRET}
    for api in _SANDBOXES:
        secrets |= {api.client_secret, *api.issued_tokens}
    outputs = [caplog.text, captured.out, captured.err, *CHILD_OUTPUTS]
    found = leaked(secrets, outputs)
    assert not found, f"{len(found)} secret(s) or token(s) leaked into the output"
