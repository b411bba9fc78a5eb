"""A real threaded HTTP server that speaks the file-storage API of the contract."""

from __future__ import annotations

import base64
import gzip
import json
import math
import random
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
import typing as t
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from typing_extensions import Self

from tap_filestore.sandbox.dataset import EPOCH, Dataset

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret-5f3c9e1d7a"  # noqa: S105
DEFAULT_TOKEN_TTL_S = 3600
MAX_PAGE_SIZE = 1000
MALFORMED_BODIES = {
    "not_json": b"<html>upstream proxy error</html>",
    "no_files": b'{"items": [], "total": 0}',
    "files_not_list": b'{"files": {"file_id": "x"}, "total": 1}',
    "no_file_id": b'{"files": [{"file_name": "orphan.txt"}], "total": 1}',
    "truncated_json": b'{"files": [{"file_id": "fil_',
    "lone_surrogates": b'{"files": [{"file_id": "fil_\\ud800", "file_name": '
    b'"half \\udc00 of a pair", "created_at": null, "modified_at": null}], '
    b'"total": 1}',
}


@dataclass
class Fault:
    """A misbehaviour the sandbox applies to the next matching requests.

    kind is one of: `status` (answer `status`, with `retry_after` if set),
    `reset` (drop the connection without an answer), `truncate` (promise more
    bytes than sent, then close), `slow` (wait `delay` seconds first),
    `malformed` (answer 200 with `content`, or `MALFORMED_BODIES[body]`),
    `revoke` (revoke every token, then answer as usual: 401 for a files
    request), `gzip` (answer 200 with `content` as a gzip-encoded body: see
    `gzip_bomb`), `call` (run `action`, e.g. a dataset edit, then answer as usual),
    `redirect` (answer `status` with `Location: {location}{path and query}`),
    `drip` (answer an empty page one byte every `delay` seconds), `echo`
    (answer `status` quoting the request's credentials in the body, the reason
    and a header).
    """

    kind: str
    endpoint: str = "files"
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    delay: float = 0.0
    body: str = "not_json"
    skip: int = 0
    action: Callable[[], object] | None = None
    location: str = ""
    content: bytes | None = None


@dataclass
class LoggedRequest:
    """One request the sandbox answered."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)
    #: The `Authorization` header the request carried, if any.
    authorization: str | None = None
    #: Whether the request's body carried a `client_secret`.
    secret_sent: bool = False
    #: When the request arrived (`at` is when it was answered).
    arrived: float = 0.0
    #: Page requests being answered when it arrived, itself included.
    in_flight: int = 0


class Sandbox:
    """The API's state: dataset, tokens, faults, switches and a request log."""

    def __init__(  # noqa: PLR0913
        self,
        files: int = 1000,
        *,
        seed: int = 42,
        include_total: bool = True,
        token_ttl: int | None = DEFAULT_TOKEN_TTL_S,
        modified_since_param: str = "modified_since",
        host: str = "127.0.0.1",
        port: int = 0,
        certificate: tuple[str, str] | None = None,
    ) -> None:
        """Create a sandbox; `start()` begins serving.

        `certificate` (a PEM certificate file and its key file) serves https.
        """
        self.dataset = Dataset(files, seed=seed)
        self.include_total = include_total
        self.total_override: int | None = None
        #: The most files a page holds, whatever `limit` asks: an API's own cap.
        self.serve_at_most: int | None = None
        #: The fewest files a page holds, whatever `limit` asks: an API that
        #: sends more than asked.
        self.serve_at_least: int | None = None
        #: Connections accepted (TLS handshakes included, failed or not).
        self.connections = 0
        self.ignore_offset = False
        #: Offsets at or past `wrap_offset_at` wrap around to `wrap_offset_to`,
        #: as a broken cursor does.
        self.wrap_offset_at: int | None = None
        self.wrap_offset_to = 0
        #: Seconds every page answer waits, as a distant API's round trip does,
        #: give or take the fraction `jitter` of it.
        self.latency = 0.0
        self.jitter = 0.0
        #: Requests a second the client may send, in bursts of up to as many;
        #: above it the answer is 429 with `Retry-After`. None: no limit.
        self.rate_limit: float | None = None
        self._budget = math.inf
        self._budget_at = time.monotonic()
        self._in_flight = 0
        self._counted = 0
        self.token_ttl = token_ttl
        self.modified_since_param = modified_since_param
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.faults: list[Fault] = []
        self.requests: list[LoggedRequest] = []
        self.issued_tokens: list[str] = []
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.sandbox = self  # type: ignore[attr-defined]
        self._scheme = "http"
        if certificate:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*certificate)
            # The handshake runs in the handler's thread, not the accept loop.
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self._scheme = "https"
        self._thread: threading.Thread | None = None
        self._precomputed: dict[tuple[int, int, int], bytes] = {}

    @property
    def base_url(self) -> str:
        """Return the root URL clients use."""
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def config(self, **overrides: object) -> dict[str, t.Any]:
        """Return a tap config that points at this sandbox."""
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "base_url": self.base_url,
            **overrides,
        }

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="filestore-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        """Start on entering a `with` block."""
        return self.start()

    def __exit__(self, *_: object) -> None:
        """Stop on leaving a `with` block."""
        self.stop()

    def inject(self, kind: str, **options: object) -> Fault:
        """Queue a fault (see `Fault`) and return it."""
        fault = Fault(kind, **options)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def revoke_tokens(self) -> None:
        """Invalidate every issued token, as a provider does on key rotation."""
        with self._lock:
            self._tokens.clear()

    def page_requests(self) -> list[LoggedRequest]:
        """Return the logged `/v1/files` requests."""
        return [r for r in self.requests if r.path == "/v1/files"]

    def token_requests(self) -> list[LoggedRequest]:
        """Return the logged token requests."""
        return [r for r in self.requests if r.path == "/oauth/token"]

    def take_fault(self, endpoint: str) -> Fault | None:
        """Return the fault to apply to this request, if any, and use it up."""
        with self._lock:
            for fault in self.faults:
                if fault.endpoint != endpoint:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def take_stats(self) -> dict[str, float]:
        """Count the requests answered since the last call, by status.

        `seconds` is from the first one's arrival to the last one's answer.
        """
        with self._lock:
            answered, self._counted = self.requests[self._counted :], len(self.requests)
        counts: dict[str, float] = {"requests": len(answered)}
        for request in answered:
            counts[str(request.status)] = counts.get(str(request.status), 0) + 1
        if answered:
            counts["seconds"] = answered[-1].at - min(r.arrived for r in answered)
        return counts

    def over_rate_limit(self) -> int | None:
        """Spend one request of the budget; if none is left, return seconds to wait."""
        if not self.rate_limit:
            return None
        with self._lock:
            now = time.monotonic()
            self._budget = min(
                self.rate_limit,
                self._budget + (now - self._budget_at) * self.rate_limit,
            )
            self._budget_at = now
            if self._budget >= 1:
                self._budget -= 1
                return None
            return max(1, math.ceil((1 - self._budget) / self.rate_limit))

    def answer_delay(self) -> float:
        """Return how long this page answer waits: `latency`, give or take `jitter`."""
        spread = self.jitter * random.uniform(-1.0, 1.0)  # noqa: S311
        return self.latency * (1.0 + spread)

    @contextmanager
    def page_in_flight(self) -> Iterator[int]:
        """Count a page request while it is answered; yield the count, itself in."""
        with self._lock:
            self._in_flight += 1
            count = self._in_flight
        try:
            yield count
        finally:
            with self._lock:
                self._in_flight -= 1

    def issue_token(self) -> tuple[str, int | None]:
        """Create an access token and return it with its lifetime."""
        token = secrets.token_urlsafe(24)
        ttl = self.token_ttl
        with self._lock:
            self._tokens[token] = time.monotonic() + (ttl or 10**9)
            self.issued_tokens.append(token)
        return token, ttl

    def token_is_valid(self, token: str) -> bool:
        """Return whether `token` was issued, not revoked and not expired."""
        expiry = self._tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def precompute(self, limit: int) -> None:
        """Render every unfiltered page of `limit` files now, so serving is a lookup.

        The benchmarks use it to keep the sandbox from being the bottleneck.
        """
        version = self.dataset.version
        self._precomputed = {
            (version, offset, limit): _render_page(
                self, version, offset, limit, None, self.include_total, None
            )
            for offset in range(0, max(len(self.dataset), 1), limit)
        }
        _render_page.cache_clear()

    def page(self, offset: int, limit: int, since_us: int | None) -> bytes:
        """Return the body of one page of files."""
        if self.ignore_offset:
            offset = 0
        limit = min(limit, self.serve_at_most or limit)
        limit = max(limit, self.serve_at_least or limit)
        if self.wrap_offset_at and offset >= self.wrap_offset_at:
            start, end = self.wrap_offset_to, self.wrap_offset_at
            offset = start + (offset - start) % (end - start)
        key = (self.dataset.version, offset, limit)
        if (
            since_us is None
            and self.total_override is None
            and key in self._precomputed
        ):
            return self._precomputed[key]
        return _render_page(
            self,
            self.dataset.version,
            offset,
            limit,
            since_us,
            self.include_total,
            self.total_override,
        )

    def listing(self, since_us: int | None) -> list[int] | range:
        """Return the indexes a listing returns, filtered by `modified_since`."""
        return _listing(self, self.dataset.version, since_us)


@lru_cache(maxsize=8)
def _listing(
    sandbox: Sandbox, _version: int, since_us: int | None
) -> list[int] | range:
    indexes = sandbox.dataset.live_indexes()
    if since_us is None:
        return indexes
    files = sandbox.dataset
    return [
        i
        for i in indexes
        if (modified := files.file(i).modified_us) is None or modified >= since_us
    ]


@lru_cache(maxsize=4096)
def _render_page(  # noqa: PLR0913, PLR0917
    sandbox: Sandbox,
    _version: int,
    offset: int,
    limit: int,
    since_us: int | None,
    include_total: bool,  # noqa: FBT001
    total_override: int | None,
) -> bytes:
    listing = sandbox.listing(since_us)
    files = [sandbox.dataset.file(i).to_api() for i in listing[offset : offset + limit]]
    body: dict[str, t.Any] = {"files": files}
    if include_total:
        body["total"] = len(listing) if total_override is None else total_override
    return json.dumps(body, ensure_ascii=False).encode()


def gzip_bomb(inflated: int, chunk: int = 16 * 2**20) -> bytes:
    """Return a gzip body that inflates to `inflated` zero bytes, in a few KiB a chunk.

    Gzip members decode one after another, so one compressed chunk repeated
    makes a bomb of any size without compressing it all.
    """
    member = gzip.compress(bytes(chunk), compresslevel=9)
    return member * max(1, inflated // chunk)


def _parse_since(value: str) -> int:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - EPOCH) // _MICROSECOND


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - EPOCH


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (timeout, kill, a certificate it did not
        # trust) is business as usual here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    _secret_sent = False
    _arrived = 0.0
    _in_flight = 0
    server_version = "filestore-sandbox/1"

    @property
    def sandbox(self) -> Sandbox:
        return t.cast("Sandbox", self.server.sandbox)  # type: ignore[attr-defined]

    def log_message(self, *_: object) -> None:  # quiet: the request log says it all
        pass

    def setup(self) -> None:
        self.sandbox.connections += 1
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def do_POST(self) -> None:
        self._arrived = time.monotonic()
        self._in_flight = 0  # a token request: not a page
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        logged = {k: v for k, v in form.items() if k != "client_secret"}
        self._secret_sent = "client_secret" in form
        if path != "/oauth/token":
            self._json(404, {"error": "not_found"}, path, logged)
            return
        if self._rate_limited(path, logged):
            return
        if (fault := self.sandbox.take_fault("token")) and self._apply(
            fault, path, logged
        ):
            return
        if form.get("grant_type") != "client_credentials":
            self._json(400, {"error": "unsupported_grant_type"}, path, logged)
            return
        if (
            form.get("client_id") != self.sandbox.client_id
            or form.get("client_secret") != self.sandbox.client_secret
        ):
            self._json(401, {"error": "invalid_client"}, path, logged)
            return
        token, ttl = self.sandbox.issue_token()
        answer: dict[str, t.Any] = {"access_token": token, "token_type": "Bearer"}
        if ttl:
            answer["expires_in"] = ttl
        self._json(200, answer, path, logged)

    def do_GET(self) -> None:
        self._arrived = time.monotonic()
        self._secret_sent = False
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/_sandbox/stats":
            self._send_stats()
            return
        if url.path != "/v1/files":
            self._json(404, {"error": "not_found"}, url.path, params)
            return
        with self.sandbox.page_in_flight() as count:
            self._in_flight = count
            if not self._rate_limited(url.path, params):
                self._answer_page(url.path, params)

    def _send_stats(self) -> None:
        """Answer how many requests got which status since the last time asked."""
        body = json.dumps(self.sandbox.take_stats()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _rate_limited(self, path: str, params: dict[str, t.Any]) -> bool:
        """Answer 429 if the client is over the rate limit; return whether it was."""
        wait = self.sandbox.over_rate_limit()
        if wait is None:
            return False
        error = {"error": "rate_limited", "message": "too many requests"}
        self._json(429, error, path, params, {"Retry-After": str(wait)})
        return True

    def _answer_page(self, path: str, params: dict[str, t.Any]) -> None:
        if (fault := self.sandbox.take_fault("files")) and self._apply(
            fault, path, params
        ):
            return
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.sandbox.token_is_valid(auth[7:]):
            self._json(401, {"error": "invalid_token"}, path, params)
            return
        try:
            offset = int(params.get("offset", 0))
            limit = int(params.get("limit", 100))
            since = params.get(self.sandbox.modified_since_param)
            since_us = _parse_since(since) if since else None
        except ValueError as exc:
            self._json(
                400, {"error": "invalid_request", "message": str(exc)}, path, params
            )
            return
        if self.sandbox.latency:
            time.sleep(self.sandbox.answer_delay())
        if offset < 0 or not 1 <= limit <= MAX_PAGE_SIZE:
            message = f"offset must be >= 0 and limit 1..{MAX_PAGE_SIZE}"
            self._json(
                400, {"error": "invalid_request", "message": message}, path, params
            )
            return
        self._send(200, self.sandbox.page(offset, limit, since_us), path, params)

    def _apply(
        self, fault: Fault, path: str, params: dict[str, t.Any] | None = None
    ) -> bool:
        """Apply `fault`; return True when it answered the request itself."""
        params = params or {}
        if fault.kind == "slow":
            time.sleep(fault.delay)
        elif fault.kind == "revoke":
            self.sandbox.revoke_tokens()
        elif fault.kind == "call" and fault.action:
            fault.action()
        else:
            self._answer_with(fault, path, params)
            return True
        return False

    def _answer_with(self, fault: Fault, path: str, params: dict[str, t.Any]) -> None:
        """Answer the request as `fault` says, instead of as the API would."""
        answer = getattr(self, f"_answer_{fault.kind}", None)
        if answer is None:
            msg = f"unknown fault kind {fault.kind!r}"
            raise ValueError(msg)
        answer(fault, path, params)

    def _answer_status(self, fault: Fault, path: str, params: dict[str, t.Any]) -> None:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        error = {"error": "sandbox_fault", "message": f"injected {fault.status}"}
        self._json(fault.status, error, path, params, headers)

    def _answer_malformed(
        self, fault: Fault, path: str, params: dict[str, t.Any]
    ) -> None:
        body = MALFORMED_BODIES[fault.body] if fault.content is None else fault.content
        self._send(200, body, path, params)

    def _answer_gzip(self, fault: Fault, path: str, params: dict[str, t.Any]) -> None:
        self._send(
            200, fault.content or b"", path, params, {"Content-Encoding": "gzip"}
        )

    def _answer_reset(self, _fault: Fault, path: str, params: dict[str, t.Any]) -> None:
        self._log(path, params, 0)
        # SO_LINGER 0 makes close() send a TCP reset, as a crashed proxy does.
        self.connection.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.close_connection = True

    def _answer_truncate(
        self, _fault: Fault, path: str, params: dict[str, t.Any]
    ) -> None:
        self._log(path, params, 200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b'{"files": [')
        self.close_connection = True

    def _answer_redirect(
        self, fault: Fault, path: str, params: dict[str, t.Any]
    ) -> None:
        headers = {"Location": f"{fault.location}{self.path}"}
        self._json(fault.status, {"moved": True}, path, params, headers)

    def _answer_echo(self, fault: Fault, path: str, params: dict[str, t.Any]) -> None:
        """Answer `status`, quoting every credential the request carried."""
        credentials = " ".join(
            filter(None, [self.headers.get("Authorization"), self._form_secret()])
        )
        basic = base64.b64encode(
            f"{self.sandbox.client_id}:{self.sandbox.client_secret}".encode()
        ).decode()
        quoted = f"{credentials} Basic {basic}"
        body = json.dumps({"error": quoted, "message": f"rejected {quoted}"}).encode()
        self._log(path, params, fault.status)
        self.send_response(fault.status, f"Rejected {credentials}")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Echo", quoted)
        self.end_headers()
        self.wfile.write(body)

    def _answer_drip(self, fault: Fault, path: str, params: dict[str, t.Any]) -> None:
        """Answer an empty page one byte every `delay` seconds, headers included."""
        self._log(path, params, 200)
        body = json.dumps({"files": [], "total": 0}).encode()
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        for byte in head + body:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(fault.delay)
        self.close_connection = True

    def _form_secret(self) -> str | None:
        return self.sandbox.client_secret if self._secret_sent else None

    def _json(
        self,
        status: int,
        body: dict[str, t.Any],
        path: str,
        params: dict[str, t.Any],
        headers: dict[str, t.Any] | None = None,
    ) -> None:
        self._send(status, json.dumps(body).encode(), path, params, headers)

    def _send(
        self,
        status: int,
        body: bytes,
        path: str,
        params: dict[str, t.Any],
        headers: dict[str, t.Any] | None = None,
    ) -> None:
        self._log(path, params, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _log(self, path: str, params: dict[str, t.Any], status: int) -> None:
        logged = LoggedRequest(
            self.command,
            path,
            params,
            status,
            authorization=self.headers.get("Authorization"),
            secret_sent=self._secret_sent,
            arrived=self._arrived,
            in_flight=self._in_flight,
        )
        self.sandbox.requests.append(logged)
