"""The command line as users and Meltano call it: modes, config sources, errors."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import error_lines, run_cli, state_at

if TYPE_CHECKING:
    from pathlib import Path

    from tap_filestore.sandbox import Sandbox

SETTINGS = {
    "client_id",
    "client_secret",
    "base_url",
    "token_url",
    "scope",
    "start_date",
    "page_size",
    "max_retries",
    "backoff_factor",
    "request_timeout",
    "max_concurrent_requests",
    "lookback_window",
    "modified_since_param",
    "batch_record_metadata",
}
MISSING = object()


def test_about_json_lists_every_setting_and_marks_the_secret(tmp_path: Path) -> None:
    run = run_cli("--about", "--format", "json", tmp_path=tmp_path)

    about = json.loads(run.stdout)
    properties = about["settings"]["properties"]
    assert set(properties) >= SETTINGS
    assert properties["client_secret"]["secret"] is True
    assert set(about["settings"]["required"]) == {"client_id", "client_secret"}
    assert {"catalog", "state", "discover", "about"} <= set(about["capabilities"])


def test_about_markdown_is_a_settings_table(tmp_path: Path) -> None:
    run = run_cli("--about", "--format", "markdown", tmp_path=tmp_path)

    assert run.returncode == 0
    for setting in SETTINGS:
        assert f"| {setting} |" in run.stdout


def test_discover_prints_the_files_catalog(
    config: dict[str, Any], tmp_path: Path
) -> None:
    run = run_cli("--discover", config=config, tmp_path=tmp_path)

    (stream,) = json.loads(run.stdout)["streams"]
    assert stream["tap_stream_id"] == "files"
    assert stream["key_properties"] == ["file_id"]
    assert stream["replication_key"] == "modified_at"


def test_test_mode_checks_token_and_first_page(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path
) -> None:
    run = run_cli("--test", config=config, tmp_path=tmp_path)

    assert run.returncode == 0
    assert len(sandbox.token_requests()) == 1
    assert len(sandbox.page_requests()) == 1


def test_test_mode_fails_on_bad_credentials(
    config: dict[str, Any], tmp_path: Path
) -> None:
    run = run_cli(
        "--test", config={**config, "client_secret": "nope"}, tmp_path=tmp_path
    )

    assert run.returncode == 1
    assert "invalid_client" in error_lines(run.stderr)[-1]


def test_config_env_reads_tap_filestore_variables(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    env = {
        "TAP_FILESTORE_CLIENT_ID": sandbox.client_id,
        "TAP_FILESTORE_CLIENT_SECRET": sandbox.client_secret,
        "TAP_FILESTORE_BASE_URL": sandbox.base_url,
        "TAP_FILESTORE_PAGE_SIZE": "50",
    }

    run = run_cli("--config", "ENV", tmp_path=tmp_path, env=env)

    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert sum(m["type"] == "RECORD" for m in records) == 250
    assert {r.params["limit"] for r in sandbox.page_requests()} == {"50"}


def test_a_state_file_resumes_from_its_bookmark(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path
) -> None:
    bookmark = "2024-12-01T00:00:00.000000+00:00"
    state = tmp_path / "state.json"
    state.write_text(json.dumps(state_at(bookmark)))

    run = run_cli("--state", str(state), config=config, tmp_path=tmp_path)

    records = [
        json.loads(x)["record"] for x in run.stdout.splitlines() if '"RECORD"' in x
    ]
    assert 0 < len(records) < 250
    assert all(
        r["modified_at"] is None or r["modified_at"] >= bookmark for r in records
    )


def test_a_successful_sync_exits_0_with_progress_summary(
    config: dict[str, Any], tmp_path: Path
) -> None:
    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 0
    assert "files: synced 250 records (250 fetched) with 3 requests, 0 retries" in (
        run.stderr
    )
    assert "METRIC" in run.stderr


BAD_CONFIGS = [
    ({"client_id": MISSING}, "'client_id' is a required property"),
    ({"client_secret": MISSING}, "'client_secret' is a required property"),
    ({"client_id": ""}, "client_id"),
    ({"client_id": 42}, "client_id"),
    ({"client_secret": ["s"]}, "client_secret"),
    ({"base_url": 8080}, "base_url"),
    ({"token_url": False}, "token_url"),
    ({"scope": {"read": True}}, "scope"),
    ({"request_timeout": "sixty"}, "request_timeout"),
    ({"request_timeout": "0"}, "request_timeout"),
    ({"backoff_factor": "-1.5"}, "backoff_factor"),
    ({"max_concurrent_requests": "4"}, "max_concurrent_requests"),
    ({"lookback_window": "1h"}, "lookback_window"),
    ({"lookback_window": 1.5}, "lookback_window"),
    ({"page_size": True}, "page_size"),
    ({"token_url": "https://"}, "token_url"),
    ({"base_url": "http://exa mple.com"}, "base_url"),
    ({"page_size": 0}, "page_size"),
    ({"page_size": 1001}, "page_size"),
    ({"page_size": "100"}, "page_size"),
    ({"page_size": None}, "page_size"),
    ({"max_retries": -1}, "max_retries"),
    ({"max_retries": 1.5}, "max_retries"),
    ({"backoff_factor": 0}, "backoff_factor"),
    ({"backoff_factor": "fast"}, "backoff_factor"),
    ({"request_timeout": -3}, "request_timeout"),
    ({"max_concurrent_requests": 17}, "max_concurrent_requests"),
    ({"max_concurrent_requests": 0}, "max_concurrent_requests"),
    ({"lookback_window": -1}, "lookback_window"),
    ({"modified_since_param": 5}, "modified_since_param"),
    ({"colour": "blue"}, "'colour' was unexpected"),
    ({"base_url": "api.example.com"}, "base_url"),
    ({"base_url": "ftp://api.example.com"}, "base_url"),
    ({"token_url": "not a url"}, "token_url"),
    ({"start_date": "yesterday"}, "start_date"),
    ({"start_date": 20240101}, "start_date"),
]


@pytest.mark.parametrize(("overrides", "names"), BAD_CONFIGS)
def test_a_bad_config_exits_1_with_one_line_naming_the_problem(
    tmp_path: Path, overrides: dict[str, Any], names: str
) -> None:
    config = {"client_id": "c", "client_secret": "s", **overrides}
    config = {k: v for k, v in config.items() if v is not MISSING}

    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 1
    (line,) = error_lines(run.stderr)
    assert "Invalid config" in line
    assert names in line
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize("content", ["not json", "[1, 2]", ""])
def test_an_unreadable_config_file_is_a_usage_error(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)

    run = run_cli("--config", str(path), tmp_path=tmp_path)

    assert run.returncode == 2
    assert "Invalid value for '--config': cannot read the config" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unreachable_host_exits_1_with_one_line(tmp_path: Path) -> None:
    config = {
        "client_id": "c",
        "client_secret": "s",
        "base_url": "http://127.0.0.1:9",
        "max_retries": 1,
        "backoff_factor": 0.01,
    }

    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 1
    last = error_lines(run.stderr)[-1]
    assert last.endswith(
        "The token endpoint http://127.0.0.1:9/oauth/token (host 127.0.0.1:9) "
        "failed after 2 attempts: connection failed (Connection refused). Check "
        "token_url (its default is base_url/oauth/token) and try again later, "
        "or raise max_retries."
    )
    assert "Traceback" not in run.stderr


def test_a_malformed_answer_exits_1_without_a_state_message(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path
) -> None:
    sandbox.inject("malformed", body="no_files", skip=1)

    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 1
    assert "offset 100" in error_lines(run.stderr)[-1]
    assert '"STATE"' not in run.stdout
    assert "Traceback" not in run.stderr
