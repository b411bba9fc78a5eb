"""OAuth2 client credentials: one token per lifetime, renewal, refusal, secrecy."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, cast

import pytest

from tap_filestore.auth import DEFAULT_TOKEN_LIFETIME_S
from tap_filestore.errors import AuthenticationError, RetriesExhaustedError
from tap_filestore.sandbox import Sandbox
from tap_filestore.tap import TapFileStore
from tests.conftest import FAST_RETRIES, expected_records, run_cli, sync
from tests.leaks import leaked

if TYPE_CHECKING:
    from pathlib import Path

    from tap_filestore.streams import FilesStream


def test_one_token_serves_a_whole_multi_page_sync(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    result = sync({**config, "page_size": 10})

    assert len(sandbox.page_requests()) == 25
    assert len(sandbox.token_requests()) == 1
    assert len(result.records) == 250


def test_the_token_request_is_client_credentials_with_scope(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    sync({**config, "scope": "files.read"})

    (token_request,) = sandbox.token_requests()
    assert token_request.method == "POST"
    assert token_request.params == {
        "grant_type": "client_credentials",
        "client_id": sandbox.client_id,
        "scope": "files.read",
    }


def test_pages_carry_the_bearer_token(sandbox: Sandbox, config: dict[str, Any]) -> None:
    tap = TapFileStore(config=config, parse_env_config=False)
    stream = cast("FilesStream", tap.streams["files"])

    page = tap.client.page(0, lambda offset: stream.page_request(offset, None))

    assert page.files
    (request,) = sandbox.page_requests()
    assert request.authorization == f"Bearer {sandbox.issued_tokens[-1]}"


def test_a_token_is_renewed_before_it_expires() -> None:
    with Sandbox(60, token_ttl=2) as api:
        for _ in range(6):
            api.inject("slow", delay=0.6)

        result = sync(api.config(page_size=10, **FAST_RETRIES))

        assert len(result.records) == 60
        assert len(api.token_requests()) >= 2
        assert all(r.status == 200 for r in api.page_requests())


def test_a_missing_expires_in_gets_the_default_lifetime() -> None:
    with Sandbox(30, token_ttl=None) as api:
        tap = TapFileStore(config=api.config(page_size=10), parse_env_config=False)
        sync(api.config(page_size=10))
        auth = tap.client.authenticator
        auth.update_access_token()

        assert auth.expires_in is None
        assert auth.is_token_valid()
        assert len(api.token_requests()) == 2  # one per tap: the sync and this one
        assert DEFAULT_TOKEN_LIFETIME_S == 3600


def test_a_revoked_token_is_replaced_and_the_request_retried_once(
    sandbox: Sandbox, config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.inject("revoke", skip=1)

    with caplog.at_level(logging.INFO):
        result = sync(config)

    assert sorted(result.ids) == sorted(expected_records(sandbox))
    assert len(sandbox.token_requests()) == 2
    assert [r.status for r in sandbox.page_requests()] == [200, 401, 200, 200]
    assert "answered 401: fetching a new token" in caplog.text


def test_a_401_to_a_fresh_token_fails_clearly(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    sandbox.inject("status", status=401, times=2)

    with pytest.raises(
        AuthenticationError, match="refused \\(401\\) even with a freshly"
    ):
        sync(config)
    assert len(sandbox.page_requests()) == 2


def test_a_rejected_client_fails_at_once_with_a_clear_message(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    with pytest.raises(AuthenticationError) as failure:
        sync({**config, "client_secret": "wrong"})

    assert "refused the client: 401 invalid_client" in str(failure.value)
    assert "Check client_id, client_secret" in str(failure.value)
    assert len(sandbox.token_requests()) == 1
    assert waits == []


def test_token_endpoint_errors_are_retried_like_any_request(
    sandbox: Sandbox, config: dict[str, Any], waits: list[float]
) -> None:
    sandbox.inject("status", endpoint="token", status=503, times=2)

    result = sync({**config, "backoff_factor": 2})

    assert waits == [2, 4]
    assert len(result.records) == 250
    assert [r.status for r in sandbox.token_requests()] == [503, 503, 200]


def test_an_unreachable_token_endpoint_fails_after_the_retries(
    config: dict[str, Any], waits: list[float]
) -> None:
    with pytest.raises(RetriesExhaustedError, match="connection failed"):
        sync({**config, "token_url": "http://127.0.0.1:9/oauth/token"})
    assert len(waits) == 3


def test_a_token_answer_without_access_token_fails_clearly(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    sandbox.inject("malformed", endpoint="token", body="no_files")

    with pytest.raises(AuthenticationError, match="without an access_token string"):
        sync(config)


@pytest.mark.parametrize("scenario", ["success", "revoked", "rejected", "retried"])
def test_no_secret_or_token_reaches_any_output_even_at_debug(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path, scenario: str
) -> None:
    if scenario == "revoked":
        sandbox.inject("revoke", skip=1)
    if scenario == "retried":
        sandbox.inject("status", endpoint="token", status=500)
    if scenario == "rejected":
        sandbox.client_secret = "rotated-secret-9b7"  # noqa: S105

    run = run_cli(
        config=config, tmp_path=tmp_path, env={"TAP_FILESTORE_LOGLEVEL": "DEBUG"}
    )

    output = run.stdout + run.stderr
    assert "DEBUG" in output
    assert (run.returncode != 0) == (scenario == "rejected")
    assert config["client_secret"] not in output
    assert sandbox.client_secret not in output
    for token in sandbox.issued_tokens:
        assert token not in output


def test_the_leak_check_finds_a_secret_or_token_in_any_output() -> None:
    secrets = {"s3cret-value", "tok-abc"}

    assert leaked(secrets, ["fine", "x tok-abc y"]) == {"tok-abc"}
    assert leaked(secrets, ["Authorization: Bearer s3cret-value"]) == {"s3cret-value"}
    assert leaked(secrets, ["nothing here", ""]) == set()


# Token answers are checked (issue 9, class 7)


@pytest.mark.parametrize(
    "body",
    [
        b'{"token_type": "Bearer"}',
        b'{"access_token": ""}',
        b'{"access_token": "   "}',
        b'{"access_token": null}',
        b'{"access_token": 12345678}',
        b'{"access_token": ["a-token-in-a-list"]}',
        b'["access_token"]',
        b"<html>login page</html>",
    ],
)
def test_a_token_answer_without_a_usable_access_token_is_one_clear_error(
    sandbox: Sandbox, config: dict[str, Any], body: bytes
) -> None:
    sandbox.inject("malformed", endpoint="token", content=body)

    with pytest.raises(AuthenticationError) as failure:
        sync(config)

    assert str(failure.value) == (
        f"The token endpoint {sandbox.base_url}/oauth/token answered 200 without "
        "an access_token string. Check token_url."
    )
    assert sandbox.page_requests() == []


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [("3600", 3600), ("120.5", 120), (900, 900), ("soon", None), (True, None)],
)
def test_expires_in_as_a_numeric_string_is_a_lifetime(
    sandbox: Sandbox,
    config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    expires_in: object,
    lifetime: int | None,
) -> None:
    answer = {"access_token": "issued-elsewhere-token", "expires_in": expires_in}
    sandbox.inject("malformed", endpoint="token", content=json.dumps(answer).encode())
    tap = TapFileStore(config=config, parse_env_config=False)

    with caplog.at_level(logging.WARNING):
        tap.client.authenticator.update_access_token()

    assert tap.client.authenticator.expires_in == lifetime
    assert tap.client.authenticator.is_token_valid()
    assert ("not a number of seconds" in caplog.text) == (lifetime is None)
