"""Credentials never leave their origins (issue 9, class 1).

The bearer token goes only to base_url's origin, the client secret only to
token_url's: through redirects of any kind and number, the tap's re-send after
a 401, and fetching ahead. Plain http to another host is warned about.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.errors import AuthenticationError
from tap_filestore.sandbox import Sandbox
from tap_filestore.tap import TapFileStore
from tests.conftest import FAST_RETRIES, sync

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def elsewhere() -> Iterator[Sandbox]:
    """A second API on another port: another origin."""
    with Sandbox(10) as api:
        yield api


def credentials_seen(api: Sandbox) -> list[str]:
    return [
        r.authorization or "client_secret"
        for r in api.requests
        if r.authorization or r.secret_sent
    ]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("in_flight", [1, 4])
def test_a_page_redirected_to_another_origin_gets_no_token(
    sandbox: Sandbox, elsewhere: Sandbox, status: int, in_flight: int
) -> None:
    sandbox.latency = 0.005  # slow enough to fetch ahead
    sandbox.inject("redirect", status=status, location=elsewhere.base_url, skip=1)
    config = sandbox.config(**{**FAST_RETRIES, "max_concurrent_requests": in_flight})

    with pytest.raises(AuthenticationError, match=r"redirected to .* refused there"):
        sync({**config, "page_size": 50})

    assert elsewhere.page_requests(), "the redirect was not followed"
    assert credentials_seen(elsewhere) == []


def test_a_redirect_chain_back_home_never_hands_the_token_to_a_hop(
    sandbox: Sandbox, elsewhere: Sandbox
) -> None:
    sandbox.inject("redirect", status=302, location=elsewhere.base_url)
    elsewhere.inject("redirect", status=307, location=sandbox.base_url)

    with pytest.raises(AuthenticationError):
        sync(sandbox.config(**FAST_RETRIES))

    assert len(elsewhere.page_requests()) == 1
    assert credentials_seen(elsewhere) == []


def test_a_redirect_within_the_origin_keeps_the_token(sandbox: Sandbox) -> None:
    sandbox.inject("redirect", status=308, location=sandbox.base_url)

    result = sync(sandbox.config(**FAST_RETRIES))

    assert len(result.records) == 250
    first, redirected = sandbox.page_requests()[:2]
    assert first.status == 308
    assert redirected.authorization == first.authorization is not None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_token_request_does_not_follow_a_redirect_with_the_secret(
    sandbox: Sandbox, elsewhere: Sandbox, status: int
) -> None:
    sandbox.inject(
        "redirect", endpoint="token", status=status, location=elsewhere.base_url
    )

    with pytest.raises(AuthenticationError, match=f"redirected \\({status}\\) to"):
        sync(sandbox.config(**FAST_RETRIES))

    assert elsewhere.requests == []


@pytest.mark.parametrize(
    ("overrides", "warned"),
    [
        ({"base_url": "http://files.example.com"}, ["access token", "client secret"]),
        (
            {
                "base_url": "http://files.example.com",
                "token_url": "https://login.example.com/token",
            },
            ["access token"],
        ),
        ({"token_url": "http://10.1.2.3/token"}, ["client secret"]),
        ({"base_url": "https://files.example.com"}, []),
        ({"base_url": "http://127.0.0.1:8765"}, []),
        ({"base_url": "http://localhost:8765"}, []),
        ({"base_url": "http://[::1]:8765"}, []),
    ],
)
def test_plain_http_to_another_host_is_warned_about_at_start_up(
    caplog: pytest.LogCaptureFixture, overrides: dict[str, Any], warned: list[str]
) -> None:
    config = {"client_id": "id", "client_secret": "a-secret-value", **overrides}

    with caplog.at_level(logging.WARNING):
        TapFileStore(config=config, parse_env_config=False)

    lines = [r.getMessage() for r in caplog.records if "clear text" in r.getMessage()]
    assert [w for w in warned if any(w in line for line in lines)] == warned
    assert len(lines) == len(warned)
