"""Progress lines during a sync and the summary line after it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tap_filestore import progress
from tap_filestore.sandbox import Sandbox
from tests.conftest import FAST_RETRIES, run_cli, sync

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if "files fetched in" in r.getMessage()
    ]


def test_progress_lines_wait_for_the_interval(
    config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        sync({**config, "page_size": 10})

    assert progress_lines(caplog) == []


def test_progress_shows_count_pages_rate_percentage_and_eta(
    config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL_S", 0.0)

    with caplog.at_level(logging.INFO):
        sync({**config, "page_size": 100})

    lines = progress_lines(caplog)
    assert len(lines) == 3
    assert lines[0].startswith("files: 100 files fetched in 1 pages, ")
    assert "files/s, 40% of 250, ETA " in lines[0]
    assert "100% of 250, ETA 0 s" in lines[-1]


def test_without_total_progress_has_no_percentage(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL_S", 0.0)

    with Sandbox(150, include_total=False) as api, caplog.at_level(logging.INFO):
        sync(api.config(**FAST_RETRIES))

    lines = progress_lines(caplog)
    assert lines[0].startswith("files: 100 files fetched in 1 pages")
    assert all("%" not in line and "ETA" not in line for line in lines)


def test_the_summary_counts_records_requests_and_retries(
    sandbox: Sandbox,
    config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    waits: list[float],
) -> None:
    sandbox.inject("status", status=503, skip=1, times=2)

    with caplog.at_level(logging.INFO):
        sync({**config, "start_date": "2024-06-01T00:00:00Z"})

    summary = [r.getMessage() for r in caplog.records if "synced" in r.getMessage()]
    assert len(summary) == 1
    emitted = int(summary[0].split()[2])
    assert 0 < emitted < 250
    assert (
        f"synced {emitted} records (250 fetched) with 5 requests, 2 retries in "
        in (summary[0])
    )
    assert summary[0].endswith(" records/s")
    assert len(waits) == 2


def test_request_duration_metrics_come_once_per_interval_and_counters_stay(
    config: dict[str, Any], tmp_path: Path
) -> None:
    run = run_cli(config={**config, "page_size": 10}, tmp_path=tmp_path)

    assert run.returncode == 0, run.stderr
    metrics = [line for line in run.stderr.splitlines() if "METRIC" in line]
    durations = [line for line in metrics if "http_request_duration" in line]
    assert len(durations) == 1  # 25 page requests, well within one interval
    assert any("http_request_count" in line for line in metrics)
    assert any("record_count" in line for line in metrics)
