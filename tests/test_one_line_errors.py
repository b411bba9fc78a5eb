"""One failure, one line, the right culprit (issue 9, class 9).

Whatever fails, the tap prints exactly one ERROR line (the SDK's own "An
unhandled error occurred while syncing" is not repeated), exits 1, and the
line names the request that failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import error_lines, run_cli

if TYPE_CHECKING:
    from pathlib import Path

    from tap_filestore.sandbox import Sandbox


def setup_unreachable_token_endpoint(api: Sandbox) -> dict[str, Any]:
    return {"token_url": "http://127.0.0.1:9/oauth/token"}


def setup_missing_token_endpoint(api: Sandbox) -> dict[str, Any]:
    return {"token_url": f"{api.base_url}/oauth/missing"}


def setup_rejected_client(_api: Sandbox) -> dict[str, Any]:
    return {"client_secret": "not-the-secret"}


def setup_page_refused(api: Sandbox) -> dict[str, Any]:
    api.inject("status", status=400, skip=1)
    return {}


def setup_page_overloaded(api: Sandbox) -> dict[str, Any]:
    api.inject("status", status=503, times=10)
    return {}


def setup_page_malformed(api: Sandbox) -> dict[str, Any]:
    api.inject("malformed", body="not_json", skip=1)
    return {}


def setup_page_nested_too_deeply(api: Sandbox) -> dict[str, Any]:
    api.inject("malformed", content=b"[" * 200_000 + b"]" * 200_000, skip=1)
    return {}


def setup_total_larger_than_the_data(api: Sandbox) -> dict[str, Any]:
    api.total_override = 1000  # for 250 files
    return {}


def setup_pages_cycling(api: Sandbox) -> dict[str, Any]:
    api.wrap_offset_at = 200
    return {"page_size": 50}


FAILURES = {
    setup_unreachable_token_endpoint: (
        "The token endpoint http://127.0.0.1:9/oauth/token (host 127.0.0.1:9) "
        "failed after 2 attempts: connection failed"
    ),
    setup_missing_token_endpoint: "/oauth/missing was not found (404). Check token_url",
    setup_rejected_client: "refused the client: 401 invalid_client",
    setup_page_refused: "GET /v1/files?offset=100&limit=100 failed: 400",
    setup_page_overloaded: "GET /v1/files?offset=0&limit=100 failed after 2 attempts",
    setup_page_malformed: "The page at offset 100 of /v1/files is not JSON",
    setup_page_nested_too_deeply: (
        "The page at offset 100 of /v1/files is JSON nested too deeply to decode"
    ),
    setup_total_larger_than_the_data: (
        "The API reported total=1000 files, but its listing ended at offset 250 "
        "(an empty page): 750 files were not served"
    ),
    setup_pages_cycling: "same files as offset",
}


@pytest.mark.parametrize("setup", FAILURES, ids=lambda f: f.__name__[6:])
def test_a_failed_sync_prints_exactly_one_error_line_naming_the_culprit(
    sandbox: Sandbox, tmp_path: Path, setup: object
) -> None:
    overrides = setup(sandbox)  # type: ignore[operator]
    config = sandbox.config(backoff_factor=0.01, max_retries=1, **overrides)

    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 1
    errors = error_lines(run.stderr)
    assert len(errors) == 1, errors
    assert FAILURES[setup] in errors[0]  # type: ignore[index]
    assert "Traceback" not in run.stderr
