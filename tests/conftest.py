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
from types import SimpleNamespace
from typing import TYPE_CHECKING

import backoff._sync
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
    from collections.abc import Iterator
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

    messages: list[dict]

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def records(self) -> list[dict]:
        return [m["record"] for m in self.of_type("RECORD")]

    @property
    def ids(self) -> list[str]:
        return [r["file_id"] for r in self.records]

    @property
    def state(self) -> dict:
        return self.of_type("STATE")[-1]["value"]

    @property
    def bookmark(self) -> str | None:
        return self.state["bookmarks"]["files"].get("replication_key_value")


def error_lines(stderr: str) -> list[str]:
    """Return the ERROR lines of a tap's stderr."""
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def state_at(bookmark: str) -> dict:
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
    config: dict, *, state: dict | None = None, catalog: dict | None = None
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
    *args: str, config: dict | None = None, tmp_path: Path, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `tap-filestore` as a user does, in a child process."""
    argv = [sys.executable, "-m", "tap_filestore", *args]
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


def expected_records(sandbox: Sandbox) -> dict[str, dict]:
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
def cluster() -> Cluster:
    """A throwaway PostgreSQL for the session (and Meltano with target-postgres)."""
    require_plugin("loaders", "target-postgres")
    try:
        server = start_cluster()
    except PostgresUnavailableError as exc:
        unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture
def sandbox() -> Sandbox:
    """A sandbox API with 250 files, stopped after the test."""
    with Sandbox(250) as api:
        yield api


@pytest.fixture
def config(sandbox: Sandbox) -> dict:
    """A tap config for the sandbox, with quick retries."""
    return sandbox.config(**FAST_RETRIES)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the retry waits the tap asks for instead of sleeping them."""
    asked: list[float] = []
    clock = SimpleNamespace(sleep=asked.append, monotonic=time.monotonic)
    monkeypatch.setattr(backoff._sync, "time", clock)
    # The pause a `Retry-After` puts on every request passes at once too.
    monkeypatch.setattr(TapFileStore, "clock", SkippingClock())
    return asked


class SkippingClock:
    """A monotonic clock whose `sleep` moves it on instead of waiting."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.skipped += seconds


@pytest.fixture(scope="session", autouse=True)
def _process_as_the_cli_prepares_it() -> None:
    """Mask secrets and quiet the SDK in-process, as `tap.prepare_process` does.

    The excepthook stays pytest's: the tests that need the tap's run it as a
    child process.
    """
    prepare_logging()


@pytest.fixture(scope="session", autouse=True)
def _track_sandboxes() -> None:
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
) -> None:
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
