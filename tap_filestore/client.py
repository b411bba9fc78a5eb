"""The request path: one owner sends every request and learns from the answers."""

from __future__ import annotations

import functools
import logging
import math
import re
import ssl
import time
import typing as t
from email.utils import parsedate_to_datetime
from functools import partial
from http import HTTPStatus
from urllib.parse import urlsplit

import requests
from singer_sdk import metrics
from singer_sdk.exceptions import RetriableAPIError

from tap_filestore import config
from tap_filestore.auth import ClientCredentialsAuthenticator
from tap_filestore.errors import (
    APIRequestError,
    AuthenticationError,
    CertificateError,
    RetriesExhaustedError,
)
from tap_filestore.pacing import Pacer
from tap_filestore.pagination import decode_page
from tap_filestore.prefetch import PageFetcher
from tap_filestore.progress import PROGRESS_INTERVAL_S
from tap_filestore.redact import redact
from tap_filestore.session import GuardedSession, origin

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from singer_sdk.streams.rest import HTTPRequest

    from tap_filestore.pacing import Clock
    from tap_filestore.pagination import Page
    from tap_filestore.prefetch import RequestAt

logger = logging.getLogger(__name__)

#: The statuses retried, of page and token requests alike (the contract's list).
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses that say the API is strained: fewer pages in flight.
STRAIN_STATUSES = frozenset({429, 503})
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


class FilesClient:
    """Every request of the tap, page and token: paced, authenticated, retried, checked.

    The feedback between the parts lives here: a 429 or 503 halves the pages
    in flight, a 429 teaches the pacer a rate, a `Retry-After` pauses every
    request, and a 401 re-authenticates and sends the request once more.
    Pages after the current one are fetched ahead (`PageFetcher`).

    Args:
        settings: The tap's config (checked); the request path reads its own.
        clock: What retries, the pacer and the pages in flight read and sleep on.
        send: Sends a prepared request (keyword `allow_redirects`) and returns
            the answer, whatever its status; the session's `send` by default.
    """

    def __init__(
        self,
        settings: Mapping[str, t.Any],
        *,
        clock: Clock = time,
        send: Callable[..., requests.Response] | None = None,
    ) -> None:
        """Create the client; nothing is sent until a page is asked for."""
        self.settings = settings
        self.clock = clock
        self._timeout = float(settings["request_timeout"])
        self._max_retries = int(settings["max_retries"])
        self._transport = send
        self._fetcher: PageFetcher | None = None
        #: What the last request was prepared from (all but its query), and it.
        self._request_shape: (
            tuple[tuple[t.Any, ...], requests.PreparedRequest] | None
        ) = None
        self._next_metric_at = -math.inf
        #: Requests (tries) and retries sent so far.
        self.requests = self.retries = 0

    @functools.cached_property
    def session(self) -> GuardedSession:
        """The HTTP session: deadlines, credentials kept home, bodies capped."""
        return GuardedSession(config.base_url(self.settings), self._timeout)

    @functools.cached_property
    def pacer(self) -> Pacer:
        """Holds every request to the rate allowed, and to the API's pauses."""
        per_second = self.settings.get("max_requests_per_second")
        return Pacer(float(per_second) if per_second else None, clock=self.clock)

    @functools.cached_property
    def authenticator(self) -> ClientCredentialsAuthenticator:
        """The one token of the tap, fetched through this client."""
        settings = self.settings
        return ClientCredentialsAuthenticator(
            client_id=str(settings["client_id"]),
            client_secret=str(settings["client_secret"]),
            token_url=config.token_url(settings),
            scope=settings.get("scope"),
            send=self._send_token,
        )

    @property
    def most_in_flight(self) -> int:
        """The most page requests in flight at once (`max_concurrent_requests`)."""
        return int(self.settings["max_concurrent_requests"])

    def page(self, offset: int, request_at: RequestAt) -> Page:
        """Return the page at `offset`, fetched ahead or now, decoded.

        Args:
            offset: Where the page starts.
            request_at: Builds the page request for an offset.
        """
        if self._fetcher is None:
            self._fetcher = PageFetcher(
                self._with_retries, self.most_in_flight, self.clock
            )
        return decode_page(self._fetcher.fetch(offset, request_at), offset)

    def fetch_ahead(self, offsets: list[int], request_at: RequestAt) -> None:
        """Request the pages at `offsets` ahead, dropping others planned before."""
        if self._fetcher is not None:
            self._fetcher.fetch_ahead(offsets, request_at)

    def prepare(self, http: HTTPRequest) -> requests.PreparedRequest:
        """Prepare a page request (no body); each try is authenticated as it goes.

        Page requests differ in their query alone: each is a copy of one
        prepared without it, a third of the cost of preparing anew.
        """
        shape = (http.method, http.url, tuple(http.headers.items()))
        if self._request_shape is None or self._request_shape[0] != shape:
            request = requests.Request(http.method, http.url, headers=http.headers)
            self._request_shape = (shape, self.session.prepare_request(request))
        prepared = self._request_shape[1].copy()
        if query := http.encode_params():
            url = str(prepared.url)
            prepared.url = f"{url}{'&' if '?' in url else '?'}{query}"
        return prepared

    def close(self) -> None:
        """End the listing: pages fetched ahead that nobody asked for are dropped."""
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None

    def _with_retries(self, request: requests.PreparedRequest) -> requests.Response:
        """Send a page request until it is answered, or the retries run out."""
        retry = 0
        while True:
            try:
                return self._attempt(request)
            except RETRYABLE_EXCEPTIONS as exc:  # noqa: PERF203  (one per try)
                if (failure := certificate_failure(exc)) is not None:
                    raise CertificateError(_untrusted(exc, failure)) from None
                if retry == self._max_retries:
                    raise RetriesExhaustedError(self._exhausted(request, exc)) from None
                retry += 1
                self.clock.sleep(self._before_retry(retry, exc))

    def _attempt(self, request: requests.PreparedRequest) -> requests.Response:
        """Send a page request once (twice after a 401) and check the answer."""
        self.requests += 1
        self.authenticator.authenticate_request(request)
        response = self._send(request, allow_redirects=True)
        if (
            response.status_code == HTTPStatus.UNAUTHORIZED
            and "Authorization" in response.request.headers
        ):
            # A token revoked or expired early: one more try with a fresh one.
            # (Answered by a redirect target of another origin, which never
            # had the token, there is no reason to hand it one.)
            logger.info("The API answered 401: fetching a new token and retrying")
            self.authenticator.refused(request)
            response.close()
            self.authenticator.authenticate_request(request)
            response = self._send(request, allow_redirects=True)
        _check(response)
        return response

    def _send_token(self, request: requests.Request) -> requests.Response:
        """Send a token request (a redirect would carry the secret elsewhere)."""
        prepared = self.session.prepare_request(request)
        response = self._send(prepared, allow_redirects=False)
        if response.status_code in RETRYABLE_STATUSES:
            msg = f"token endpoint {request.url} answered {response.status_code}"
            raise RetriableAPIError(msg, response)
        return response

    def _send(
        self, request: requests.PreparedRequest, *, allow_redirects: bool
    ) -> requests.Response:
        """Send a request when the pacer lets it go; count what the API accepted."""
        self.pacer.wait()
        send = self._transport or partial(self.session.send, timeout=self._timeout)
        response = send(request, allow_redirects=allow_redirects)
        if (now := self.clock.monotonic()) >= self._next_metric_at:
            # The SDK logs one a request: 10,000 lines for a million files.
            self._next_metric_at = now + PROGRESS_INTERVAL_S
            _log_request_duration(request, response)
        if response.status_code != HTTPStatus.TOO_MANY_REQUESTS:
            self.pacer.accepted(response.elapsed.total_seconds())
        return response

    def _before_retry(self, retry: int, exc: BaseException) -> float:
        """Learn from a failed try; return the seconds to wait before `retry`.

        Retry n waits `backoff_factor ** n` seconds, or what `Retry-After` asks
        for if longer. A 429 or 503 halves the pages in flight; a 429 teaches
        the pacer a rate; a `Retry-After` on either holds every request.
        """
        self.retries += 1
        response = getattr(exc, "response", None)
        hint = None if response is None else self._retry_after(response)
        if response is not None and response.status_code in STRAIN_STATUSES:
            if self._fetcher is not None:
                self._fetcher.strained(f"{response.status_code} {response.reason}")
            if response.status_code == HTTPStatus.TOO_MANY_REQUESTS:
                self.pacer.rate_limited(response.elapsed.total_seconds())
            if hint:
                # Every request waits, not only the one that was told to.
                self.pacer.pause(hint)
        wait = max(float(self.settings["backoff_factor"]) ** retry, hint or 0.0)
        logger.info(
            "Retry %d of %d in %.1f s after %s",
            retry,
            self._max_retries,
            wait,
            _describe(exc),
        )
        return wait

    def _retry_after(self, response: requests.Response) -> float | None:
        """Return the seconds `Retry-After` asks for, at most `MAX_RETRY_AFTER_S`.

        It may be delta-seconds or an HTTP date; None if it asks for no wait.
        """
        value = (response.headers.get("Retry-After") or "").strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - self.clock.time()
            except (TypeError, ValueError):
                return None
        if seconds <= 0:
            return None
        if seconds > MAX_RETRY_AFTER_S:
            logger.warning(
                "Retry-After asks for %s s; waiting %.0f s instead",
                value,
                MAX_RETRY_AFTER_S,
            )
        return min(seconds, MAX_RETRY_AFTER_S)

    def _exhausted(self, request: requests.PreparedRequest, exc: BaseException) -> str:
        """Say which request failed after every retry, and what to check."""
        attempts = self._max_retries + 1
        token_url = config.token_url(self.settings)
        if _same_endpoint(_failed_url(exc), token_url):
            return (
                f"The token endpoint {token_url} (host {urlsplit(token_url).netloc}) "
                f"failed after {attempts} attempts: {_describe(exc)}. Check token_url "
                "(its default is base_url/oauth/token) and try again later, or "
                "raise max_retries."
            )
        return (
            f"{request.method} {request.path_url} failed "
            f"after {attempts} attempts: {_describe(exc)}. The API is "
            "unreachable or overloaded: check base_url and try again later, "
            "or raise max_retries."
        )


def _log_request_duration(
    request: requests.PreparedRequest, response: requests.Response
) -> None:
    """Log the SDK's `http_request_duration` METRIC for one request."""
    tags: dict[str, t.Any] = {
        metrics.Tag.ENDPOINT: urlsplit(request.url).path,
        metrics.Tag.HTTP_STATUS_CODE: response.status_code,
        metrics.Tag.STATUS: "succeeded" if response.ok else "failed",
    }
    seconds = response.elapsed.total_seconds()
    point = metrics.Point("timer", metrics.Metric.HTTP_REQUEST_DURATION, seconds, tags)
    metrics.log(metrics.get_metrics_logger(), point)


def _check(response: requests.Response) -> None:
    """Classify an answer: retryable (raise `RetriableAPIError`), fatal, or fine."""
    status = response.status_code
    if status < HTTPStatus.BAD_REQUEST:
        return
    if status in RETRYABLE_STATUSES:
        raise RetriableAPIError(redact(f"{status} {response.reason}"), response)
    where = f"{response.request.method} {response.request.path_url}"
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
        return (
            f"{response.status_code} {response.reason} from {response.request.path_url}"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return "no complete answer within request_timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = _OS_ERROR.search(str(exc))
        return (
            f"connection failed ({reason.group(1) if reason else type(exc).__name__})"
        )
    return f"{type(exc).__name__}: {exc}"
