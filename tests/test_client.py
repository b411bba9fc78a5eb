"""The request path's feedback loop, with a fake `send` and a manual clock.

No sandbox, no sockets, no patched modules: `FilesClient` takes what sends a
request and the clock it reads and sleeps on.
"""

from __future__ import annotations

import json
import logging
import typing as t
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import requests

from tap_filestore.client import FilesClient
from tap_filestore.errors import AuthenticationError, RetriesExhaustedError

if t.TYPE_CHECKING:
    from tap_filestore.pagination import Page

#: A checked config, as the tap hands it over.
CONFIG: dict[str, t.Any] = {
    "base_url": "https://api.test",
    "client_id": "client",
    "client_secret": "client-secret-value",
    "request_timeout": 5.0,
    "max_retries": 3,
    "backoff_factor": 2.0,
    "max_concurrent_requests": 1,
}
PAGE = {"files": [{"file_id": "a"}, {"file_id": "b"}], "total": 2}


class ManualClock:
    """A monotonic clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class FakeAPI:
    """Answers token and page requests from scripts, noting when each came."""

    clock: ManualClock
    #: Page answers in order, (status, headers); 200 once they run out.
    pages: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    #: (clock time, method, Authorization header) of every request.
    seen: list[tuple[float, str, str | None]] = field(default_factory=list)
    issued: int = 0

    def send(
        self, request: requests.PreparedRequest, *, allow_redirects: bool
    ) -> requests.Response:
        assert allow_redirects == (request.method == "GET")
        auth = request.headers.get("Authorization")
        self.seen.append((self.clock.now, str(request.method), auth))
        if request.method == "POST":
            status = self.tokens.pop(0) if self.tokens else 200
            self.issued += status == 200
            body = {"access_token": f"token-{self.issued}", "expires_in": 3600}
            return _answer(request, status, {}, body)
        status, headers = self.pages.pop(0) if self.pages else (200, {})
        return _answer(request, status, headers, PAGE if status == 200 else {})


def _answer(
    request: requests.PreparedRequest,
    status: int,
    headers: dict[str, str],
    body: object,
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = {200: "OK", 401: "Unauthorized"}.get(status, "Error")
    response.headers.update(headers)
    # An answer built whole, as requests builds a read one.
    response._content = json.dumps(body).encode()
    response._content_consumed = True  # type: ignore[attr-defined]
    response.request = request
    response.url = str(request.url)
    response.elapsed = timedelta(milliseconds=20)
    return response


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI(ManualClock())


def fetch_first_page(api: FakeAPI, **settings: t.Any) -> tuple[FilesClient, Page]:
    client = FilesClient({**CONFIG, **settings}, clock=api.clock, send=api.send)

    def request_at(offset: int) -> requests.PreparedRequest:
        url = f"{CONFIG['base_url']}/v1/files?offset={offset}"
        return client.session.prepare_request(requests.Request("GET", url))

    try:
        page = client.page(0, request_at)
    finally:
        client.close()
    return client, page


def page_requests(api: FakeAPI) -> list[tuple[float, str, str | None]]:
    return [seen for seen in api.seen if seen[1] == "GET"]


def test_retryable_statuses_are_retried_with_exponential_waits(api: FakeAPI) -> None:
    api.pages = [(500, {}), (502, {}), (504, {})]

    client, page = fetch_first_page(api)

    assert [file["file_id"] for file in page.files] == ["a", "b"]
    assert api.clock.slept == [2.0, 4.0, 8.0]
    assert (client.requests, client.retries) == (4, 3)


def test_a_429_with_retry_after_waits_it_pauses_and_teaches_a_rate(
    api: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.pages = [(429, {"Retry-After": "30"})]

    with caplog.at_level(logging.INFO):
        fetch_first_page(api)

    first, retried = page_requests(api)
    assert retried[0] - first[0] == 30.0  # Retry-After, longer than the backoff
    assert "Rate limited (429): pacing requests at" in caplog.text
    assert "Retry 1 of 3 in 30.0 s after 429" in caplog.text


def test_a_503_halves_the_pages_in_flight(
    api: FakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.pages = [(503, {})]

    with caplog.at_level(logging.INFO):
        fetch_first_page(api, max_concurrent_requests=8)

    assert "Pages in flight: 4 -> 2 (503 Error)" in caplog.text
    assert "Rate limited" not in caplog.text  # only a 429 teaches a rate


def test_a_401_fetches_a_new_token_and_sends_the_request_once_more(
    api: FakeAPI,
) -> None:
    api.pages = [(401, {})]

    client, page = fetch_first_page(api)

    assert [file["file_id"] for file in page.files] == ["a", "b"]
    assert [auth for _, _, auth in page_requests(api)] == [
        "Bearer token-1",
        "Bearer token-2",
    ]
    assert api.clock.slept == []  # not a retry: no backoff
    assert (client.requests, client.retries) == (1, 0)


def test_a_401_to_a_fresh_token_is_one_clear_error(api: FakeAPI) -> None:
    api.pages = [(401, {}), (401, {})]

    with pytest.raises(AuthenticationError, match="even with a freshly issued token"):
        fetch_first_page(api)

    assert api.issued == 2


def test_a_failing_token_endpoint_is_retried_like_any_request(api: FakeAPI) -> None:
    api.tokens = [503, 500]

    _, page = fetch_first_page(api)

    assert [file["file_id"] for file in page.files] == ["a", "b"]
    assert api.clock.slept == [2.0, 4.0]
    assert [method for _, method, _ in api.seen] == ["POST", "POST", "POST", "GET"]


def test_retries_run_out_naming_the_request_and_the_attempts(api: FakeAPI) -> None:
    api.pages = [(500, {})] * 4

    with pytest.raises(RetriesExhaustedError) as failure:
        fetch_first_page(api)

    assert str(failure.value).startswith(
        "GET /v1/files?offset=0 failed after 4 attempts: 500 Error from /v1/files"
    )
    assert CONFIG["client_secret"] not in str(failure.value)


def test_a_published_rate_spaces_every_request_token_included(api: FakeAPI) -> None:
    fetch_first_page(api, max_requests_per_second=2.0)

    (token_at, _, _), (page_at, _, _) = api.seen
    assert page_at - token_at >= 0.5
