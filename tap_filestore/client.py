"""The base stream: authentication, paging, retries and answer checks."""

from __future__ import annotations

import functools
import os
import re
import ssl
import time
import typing as t
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import urlsplit

import backoff
import requests
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_filestore.errors import (
    APIRequestError,
    AuthenticationError,
    CertificateError,
    RetriesExhaustedError,
)
from tap_filestore.pagination import FilesPaginator
from tap_filestore.prefetch import PageFetcher
from tap_filestore.progress import SyncProgress
from tap_filestore.redact import redact
from tap_filestore.session import GuardedSession, origin

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

    from backoff.types import Details
    from singer_sdk.helpers.types import Context

    from tap_filestore.auth import ClientCredentialsAuthenticator
    from tap_filestore.output import BufferedMsgSpecWriter
    from tap_filestore.tap import TapFileStore

#: The statuses retried, of page and token requests alike (the contract's list).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses that say the API is strained: fewer pages in flight.
STRAIN_STATUSES = frozenset(
    {HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE}
)
#: A `Retry-After` longer than this is treated as this, with a warning.
MAX_RETRY_AFTER_S = 600.0
RETRYABLE_EXCEPTIONS = (
    ConnectionResetError,
    RetriableAPIError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


class FileStoreStream(RESTStream[int]):
    """A stream of the file-storage API: OAuth2, offset pages, contract retries."""

    paginator: FilesPaginator | None = None
    fetcher: PageFetcher | None = None

    @property
    @override
    def url_base(self) -> str:
        return str(self.config["base_url"]).rstrip("/")

    def __init__(self, tap: TapFileStore) -> None:
        """Create the stream; it shares the tap's authenticator and writer."""
        super().__init__(tap)
        self._authenticator = tap.authenticator
        #: Holds page and token requests to the rate limit and the API's pauses.
        self.pacer = tap.pacer
        #: Where the tap's messages wait to be written out.
        self.writer = t.cast("BufferedMsgSpecWriter", tap.message_writer)

    @property
    @override
    def authenticator(self) -> ClientCredentialsAuthenticator:
        return self._authenticator

    @property
    @override
    def timeout(self) -> float:  # type: ignore[override]
        return float(self.config["request_timeout"])

    @functools.cached_property
    @override
    def requests_session(self) -> requests.Session:
        session = GuardedSession(self.url_base, self.timeout, self.pacer)
        # requests scans os.environ for proxy settings on every request;
        # resolve them once for the API host instead.
        session.proxies.update(requests.utils.get_environ_proxies(self.url_base))
        session.verify = _ca_bundle_from_environment() or session.verify
        session.trust_env = False
        return session

    @property
    def page_size(self) -> int:
        """Files asked for per page (`limit`)."""
        return int(self.config["page_size"])

    @functools.cached_property
    def progress(self) -> SyncProgress:
        """Counters of this sync, logged as progress and summary lines."""
        return SyncProgress(self.logger, self.name)

    @override
    def build_prepared_request(
        self, *args: t.Any, **kwargs: t.Any
    ) -> requests.PreparedRequest:
        # Unlike the SDK, leave authentication to `_request`: it runs inside the
        # retry loop, so a failing token endpoint is retried like any request.
        request = requests.Request(*args, **kwargs)
        request.headers.setdefault("User-Agent", self.user_agent)
        return self.requests_session.prepare_request(request)

    @override
    def get_new_paginator(self) -> FilesPaginator:
        self.paginator = FilesPaginator(self.page_size)
        return self.paginator

    @override
    def get_url_params(
        self, context: Context | None, next_page_token: int | None
    ) -> dict[str, t.Any]:
        return {"offset": next_page_token or 0, "limit": self.page_size}

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, t.Any]]:
        page = t.cast("FilesPaginator", self.paginator).page(response)
        self.progress.page_received(len(page.files), page.total)
        return page.files

    @override
    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status < HTTPStatus.BAD_REQUEST:
            return
        if status in RETRYABLE_STATUSES:
            raise RetriableAPIError(redact(f"{status} {response.reason}"), response)
        where = f"{response.request.method} {_path(response)}"
        if status == HTTPStatus.UNAUTHORIZED:
            if "Authorization" not in response.request.headers:
                msg = (
                    f"{where} was redirected to {response.url} and refused there "
                    "(401): the tap sends the access token only to base_url's "
                    "origin. Set base_url to the address the API redirects to, "
                    "if you trust it."
                )
            else:
                msg = (
                    f"{where} was refused (401) even with a freshly issued token "
                    f"({_api_error_text(response)}): the client is not allowed to "
                    "read files. Check its grants and scope."
                )
            raise AuthenticationError(msg)
        msg = f"{where} failed: {status} {response.reason}: {_api_error_text(response)}"
        raise APIRequestError(msg)

    @override
    def request_decorator(
        self, func: Callable[..., requests.Response]
    ) -> Callable[..., requests.Response]:
        def attempt(*args: t.Any, **kwargs: t.Any) -> requests.Response:
            self.progress.requests += 1
            return func(*args, **kwargs)

        with_retries = backoff.on_exception(
            self.backoff_wait_generator,
            RETRYABLE_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            jitter=None,
            logger=None,
            giveup=lambda exc: certificate_failure(exc) is not None,
        )(attempt)

        def send(prepared_request: requests.PreparedRequest) -> requests.Response:
            try:
                return with_retries(prepared_request, None)
            except RETRYABLE_EXCEPTIONS as exc:
                if (failure := certificate_failure(exc)) is not None:
                    raise CertificateError(_untrusted(exc, failure)) from None
                raise RetriesExhaustedError(
                    self._exhausted(prepared_request, exc)
                ) from None

        fetcher = PageFetcher(send, int(self.config["max_concurrent_requests"]))
        self.fetcher = fetcher

        @functools.wraps(func)
        def request(
            prepared_request: requests.PreparedRequest, context: Context | None
        ) -> requests.Response:
            paginator = t.cast("FilesPaginator", self.paginator)
            response = fetcher.fetch(prepared_request, paginator.current_value)
            page = paginator.page(response)
            fetcher.fetch_ahead(
                page,
                paginator.known_total(page),
                lambda offset: self.prepare_request(context, next_page_token=offset),
            )
            return response

        return request

    def _exhausted(
        self, page_request: requests.PreparedRequest, exc: BaseException
    ) -> str:
        """Say which request failed after every retry, and what to check."""
        attempts = self.backoff_max_tries()
        token_url = self.authenticator.auth_endpoint
        if _same_endpoint(_failed_url(exc), token_url):
            return (
                f"The token endpoint {token_url} (host {urlsplit(token_url).netloc}) "
                f"failed after {attempts} attempts: {_describe(exc)}. Check token_url "
                "(its default is base_url/oauth/token) and try again later, or "
                "raise max_retries."
            )
        return (
            f"{page_request.method} {page_request.path_url} failed "
            f"after {attempts} attempts: {_describe(exc)}. The API is "
            "unreachable or overloaded: check base_url and try again later, "
            "or raise max_retries."
        )

    @override
    def backoff_max_tries(self) -> int:
        # The SDK counts tries; the contract counts retries after the first try.
        return int(self.config["max_retries"]) + 1

    @override
    def backoff_wait_generator(self) -> Generator[float, t.Any, None]:
        factor = float(self.config["backoff_factor"])
        exception = yield 0.0
        retry = 0
        while True:
            retry += 1
            wait = factor**retry
            hint = self._retry_after(exception)
            exception = yield max(wait, hint or 0.0)

    @override
    def backoff_handler(self, details: Details) -> None:
        self.progress.retries += 1
        exception = details["exception"]
        response = getattr(exception, "response", None)
        if response is not None and response.status_code in STRAIN_STATUSES:
            if self.fetcher:
                self.fetcher.strained(f"{response.status_code} {response.reason}")
            if response.status_code == HTTPStatus.TOO_MANY_REQUESTS:
                self.pacer.rate_limited(response.elapsed.total_seconds())
            if hint := _retry_after_hint(response):
                # Every request waits, not only the one that was told to.
                self.pacer.pause(hint)
        self.logger.info(
            "Retry %d of %d in %.1f s after %s",
            details["tries"],
            self.backoff_max_tries() - 1,
            details["wait"],
            _describe(exception),
        )

    def _retry_after(self, exception: BaseException | None) -> float | None:
        """Return the wait a `Retry-After` header asks for, if a usable one."""
        response = getattr(exception, "response", None)
        seconds = None if response is None else _retry_after_hint(response)
        if seconds == MAX_RETRY_AFTER_S:
            self.logger.warning(
                "Retry-After asks for %s s; waiting %.0f s instead",
                response.headers["Retry-After"],  # type: ignore[union-attr]
                MAX_RETRY_AFTER_S,
            )
        return seconds


def _retry_after_hint(response: requests.Response) -> float | None:
    """Return the seconds `Retry-After` asks for, at most `MAX_RETRY_AFTER_S`."""
    value = response.headers.get("Retry-After")
    seconds = _parse_retry_after(value.strip()) if value else None
    if seconds is None or seconds <= 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_S)


def _ca_bundle_from_environment() -> str | None:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")


def _parse_retry_after(value: str) -> float | None:
    """Read `Retry-After` as delta-seconds or an HTTP date; None if neither."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _path(response: requests.Response) -> str:
    return response.request.path_url if response.request else response.url


def _api_error_text(response: requests.Response) -> str:
    """Return what the API said about an error, short and on one line."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = response.text
    if isinstance(body, dict):
        body = body.get("message") or body.get("error_description") or body.get("error")
    return " ".join(str(body or response.reason).split())[:300]


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """Return the certificate check an exception failed on, if it did.

    It will not heal by retrying: the tap needs to be told whom to trust.
    """
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        cause = pending.pop()
        if not isinstance(cause, BaseException) or id(cause) in seen:
            continue
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        seen.add(id(cause))
        pending += [*cause.args, getattr(cause, "reason", None), cause.__cause__]
    return None


def _untrusted(exc: BaseException, failure: ssl.SSLCertVerificationError) -> str:
    """Say whose certificate failed, why, and how to trust a private CA."""
    host = urlsplit(_failed_url(exc) or "").netloc
    return (
        f"The TLS certificate of {host} failed verification (certificate verify "
        f"failed: {failure.verify_message or failure.reason}). Nothing was sent "
        "to it. If the API uses a private CA, set REQUESTS_CA_BUNDLE to a PEM "
        "file holding that CA's certificate; otherwise check base_url and token_url."
    )


def _same_endpoint(url: str | None, endpoint: str) -> bool:
    """Whether `url` is `endpoint`, whatever its query."""
    return origin(url) == origin(endpoint) and (
        urlsplit(url or "").path == urlsplit(endpoint).path
    )


def _failed_url(exc: BaseException) -> str | None:
    """Return the URL of the request an exception is about, if it says."""
    response = getattr(exc, "response", None)
    request = getattr(exc, "request", None) or getattr(response, "request", None)
    return getattr(request, "url", None)


def _describe(exc: BaseException) -> str:
    """Say in a few words why a request failed."""
    if isinstance(exc, RetriableAPIError) and exc.response is not None:
        response = exc.response
        return f"{response.status_code} {response.reason} from {_path(response)}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "no complete answer within request_timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = _OS_ERROR.search(str(exc))
        return (
            f"connection failed ({reason.group(1) if reason else type(exc).__name__})"
        )
    return f"{type(exc).__name__}: {exc}"
