"""The HTTP session of every request: a deadline each, credentials kept home.

requests' `timeout` bounds each socket read, not a request: a server that drips
its answer keeps a request alive for as long as it likes. Here a watchdog shuts
the socket of a request still running at its deadline, and the request fails as
a timeout (which the retry policy retries). And requests drops `Authorization`
on a redirect to another host, but not to another port or scheme: here it is
dropped on any redirect that leaves the session's origin.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import typing as t
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from typing_extensions import override
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from tap_filestore.config import MAX_PAGES_IN_FLIGHT
from tap_filestore.errors import BodyTooLargeError

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from urllib3.response import BaseHTTPResponse


#: Connections kept alive per host: the most pages in flight at once.
MAX_CONNECTIONS = MAX_PAGES_IN_FLIGHT
#: The most bytes one answer may hold once decompressed: a page of 1,000 files
#: is well under 1 MiB, and a decompression bomb must not exhaust the host.
MAX_BODY_BYTES = 64 * 1024 * 1024


def origin(url: str | None) -> tuple[str, str, int | None]:
    """Return the (scheme, host, port) of a URL, default ports filled in."""
    parts = urlsplit(url or "")
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class RequestDeadlineError(requests.exceptions.ReadTimeout):
    """A request did not complete (connect, headers and body) within its deadline."""


class _Watch:
    """The deadline of one request, and the connections it has used."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self.done = False
        self._connections: list[HTTPConnection] = []
        # Reentrant: a signal handler may expire the watch while its own
        # thread is attaching a connection to it.
        self._lock = threading.RLock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            late = self.expired
        if late:
            _shut(connection)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            connections = list(self._connections)
        for connection in connections:
            _shut(connection)


def _shut(connection: HTTPConnection) -> None:
    """Wake a read blocked on the connection's socket: it sees the end of the stream."""
    sock = connection.sock
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread that expires the watches whose deadline has passed.

    It is woken only for a deadline earlier than the one it sleeps until: a
    request after request (each deadline later than the last) costs no wake-up.
    Idle, it wakes every `IDLE_WAKE_S`.
    """

    IDLE_WAKE_S = 1.0

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._running: set[_Watch] = set()
        self._thread: threading.Thread | None = None
        self._wakes_at = -math.inf

    def arm(self, watch: _Watch) -> None:
        with self._wake:
            self._running.add(watch)
            if watch.deadline < self._wakes_at:
                self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="request-deadlines", daemon=True
                )
                self._thread.start()

    def disarm(self, watch: _Watch) -> None:
        with self._wake:
            watch.done = True
            self._running.discard(watch)

    def abort_all(self) -> None:
        """Expire every request still running (the sync is stopping)."""
        with self._wake:
            running = list(self._running)
        for watch in running:
            watch.expire()

    def _run(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                for watch in [w for w in self._running if w.deadline <= now]:
                    self._running.discard(watch)
                    watch.expire()
                self._wakes_at = min(
                    (watch.deadline for watch in self._running),
                    default=now + self.IDLE_WAKE_S,
                )
                self._wake.wait(self._wakes_at - now)


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()


def abort_requests() -> None:
    """Make every request in flight, in any thread, fail now."""
    _WATCHDOG.abort_all()


class _WatchedConnectionMixin:
    """A connection that puts itself under the current request's watch."""

    def request(self, *args: t.Any, **kwargs: t.Any) -> None:
        if (watch := _current_watch()) is not None:
            watch.attach(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        if (watch := _current_watch()) is not None and watch.expired:
            _shut(self)  # type: ignore[arg-type]


def _current_watch() -> _Watch | None:
    return getattr(_CURRENT, "watch", None)


class _WatchedHTTPConnection(_WatchedConnectionMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnectionMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _CappedBody:
    """An answer's body that may not grow past `MAX_BODY_BYTES` as it is read.

    requests reads a body through its `raw.stream()`, decompressing as it
    goes: past the ceiling the reading stops, the connection is closed, and
    the request fails with one line naming it.
    """

    def __init__(self, raw: BaseHTTPResponse, where: str) -> None:
        self._raw = raw
        self._where = where

    def stream(
        self, amt: int = 2**16, *, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        read = 0
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            read += len(chunk)
            if read > MAX_BODY_BYTES:
                self._raw.close()
                msg = (
                    f"The answer to {self._where} is larger than "
                    f"{MAX_BODY_BYTES // 2**20} MiB once decompressed: the tap "
                    "stopped reading it. A page of files is far smaller; the API "
                    "or a proxy sent something else (check base_url)."
                )
                raise BodyTooLargeError(msg)
            yield chunk

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._raw, name)


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections obey the watch of the request they serve.

    It also caps the size of the bodies it hands out (`_CappedBody`).
    """

    @override
    def build_response(
        self, req: requests.PreparedRequest, resp: BaseHTTPResponse
    ) -> requests.Response:
        response = super().build_response(req, resp)
        response.raw = _CappedBody(resp, f"{req.method} {req.path_url}")
        return response

    @override
    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    @override
    def proxy_manager_for(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class GuardedSession(requests.Session):
    """A session whose requests end by a deadline and keep credentials at `home`.

    Args:
        home: URL whose origin alone may receive the `Authorization` header.
        deadline: Seconds one request may take in all, redirects included.
    """

    def __init__(self, home: str, deadline: float) -> None:
        """Create the session."""
        super().__init__()
        self.home = origin(home)
        self.deadline = deadline
        # requests scans os.environ for proxies on every request: read them
        # (for `home`) and the CA bundle once.
        self.trust_env = False
        self.proxies.update(requests.utils.get_environ_proxies(home))
        self.verify = (
            os.environ.get("REQUESTS_CA_BUNDLE")
            or os.environ.get("CURL_CA_BUNDLE")
            or True
        )
        # One kept-alive connection for each page that may be in flight.
        adapter = _WatchedAdapter(pool_maxsize=MAX_CONNECTIONS)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    @override
    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> t.Any:
        if _current_watch() is not None:
            # A redirect within a request: same deadline.
            return super().send(request, **kwargs)
        with self._watched() as watch:
            try:
                return super().send(request, **kwargs)
            except (requests.exceptions.RequestException, OSError) as exc:
                if not watch.expired:
                    raise
                msg = f"no complete answer within {self.deadline:g} s"
                raise RequestDeadlineError(msg, request=request) from exc

    @override
    def rebuild_auth(
        self, prepared_request: requests.PreparedRequest, response: requests.Response
    ) -> None:
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        if origin(prepared_request.url) != self.home:
            prepared_request.headers.pop("Authorization", None)

    @contextmanager
    def _watched(self) -> Iterator[_Watch]:
        watch = _Watch(self.deadline)
        _CURRENT.watch = watch
        _WATCHDOG.arm(watch)
        try:
            yield watch
        finally:
            _WATCHDOG.disarm(watch)
            _CURRENT.watch = None
