"""OAuth2 client-credentials authentication for the file-storage API."""

from __future__ import annotations

import math
import threading
import typing as t
from datetime import datetime, timezone
from http import HTTPStatus

import requests
from singer_sdk.authenticators import OAuthAuthenticator
from typing_extensions import override

from tap_filestore.errors import AuthenticationError
from tap_filestore.redact import add_secret

if t.TYPE_CHECKING:
    from collections.abc import Callable

#: Lifetime assumed when the token endpoint sends no `expires_in`.
DEFAULT_TOKEN_LIFETIME_S = 3600
#: A token is renewed this long before it expires, or 10% of its lifetime if shorter.
TOKEN_REFRESH_MARGIN_S = 60
TOKEN_REFRESH_MARGIN_RATIO = 0.1


class ClientCredentialsAuthenticator(OAuthAuthenticator):
    """One token per lifetime for the whole tap, renewed early or on a 401.

    Fills the SDK's gaps: the token endpoint's transient failures become
    `RetriableAPIError` (so the request path's retry policy covers them), a
    rejected client becomes one clear `AuthenticationError`, and a token the
    API refused (`refused`) is replaced on the next request.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_url: str,
        scope: str | None,
        send: Callable[[requests.Request], requests.Response],
    ) -> None:
        """Create the authenticator; no token is fetched until the first request."""
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            auth_endpoint=token_url,
            oauth_scopes=scope,
            default_expiration=DEFAULT_TOKEN_LIFETIME_S,
        )
        #: Sends the token request through the request path, which retries
        #: the answers it can retry (`RetriableAPIError`).
        self._send = send
        self._lock = threading.Lock()

    @property
    @override
    def oauth_request_body(self) -> dict[str, t.Any]:
        scope = {"scope": self.oauth_scopes} if self.oauth_scopes else {}
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            **scope,
        }

    @override
    def is_token_valid(self) -> bool:
        if self.access_token is None or self.last_refreshed is None:
            return False
        lifetime = self.expires_in or DEFAULT_TOKEN_LIFETIME_S
        margin = min(TOKEN_REFRESH_MARGIN_S, lifetime * TOKEN_REFRESH_MARGIN_RATIO)
        age = (datetime.now(timezone.utc) - self.last_refreshed).total_seconds()
        return age < lifetime - margin

    @override
    def update_access_token(self) -> None:
        self.logger.info("Requesting a new access token from %s", self.auth_endpoint)
        requested_at = datetime.now(timezone.utc)
        payload = self.oauth_request_payload
        response = self._send(
            requests.Request("POST", self.auth_endpoint, data=payload)
        )
        status = response.status_code
        endpoint = f"The token endpoint {self.auth_endpoint}"
        if response.is_redirect:
            msg = (
                f"{endpoint} redirected ({status}) to "
                f"{response.headers.get('Location')}: the tap does not send the "
                "client secret on. Set token_url to the address that issues tokens."
            )
            raise AuthenticationError(msg)
        if status == HTTPStatus.NOT_FOUND:
            msg = f"{endpoint} was not found (404). Check token_url (and base_url)."
            raise AuthenticationError(msg)
        if status >= HTTPStatus.BAD_REQUEST:
            msg = (
                f"{endpoint} refused the client: "
                f"{status} {_oauth_error(response)}. "
                "Check client_id, client_secret, scope and token_url."
            )
            raise AuthenticationError(msg)
        token, expires_in = self._read_token_answer(response)
        add_secret(token)
        self.access_token = token
        self.expires_in = expires_in
        self.last_refreshed = requested_at

    def _read_token_answer(self, response: requests.Response) -> tuple[str, int | None]:
        """Return the token and its lifetime (None: unknown) from a 2xx answer."""
        try:
            answer = response.json()
        except (ValueError, RecursionError):
            answer = None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token.strip():
            msg = (
                f"The token endpoint {self.auth_endpoint} answered "
                f"{response.status_code} without an access_token string. "
                "Check token_url."
            )
            raise AuthenticationError(msg)
        return token, self._lifetime(answer.get("expires_in"))

    def _lifetime(self, expires_in: object) -> int | None:
        """Read `expires_in` as seconds, numeric strings included."""
        if expires_in is None:
            return None
        number = not isinstance(expires_in, bool)
        try:
            seconds = float(expires_in) if number else math.nan  # type: ignore[arg-type]
        except (TypeError, ValueError):
            seconds = math.nan
        if not math.isfinite(seconds) or seconds <= 0:
            self.logger.warning(
                "The token endpoint sent expires_in=%r, not a number of seconds: "
                "renewing the token after %d s",
                expires_in,
                DEFAULT_TOKEN_LIFETIME_S,
            )
            return None
        return int(seconds)

    @override
    def authenticate_request(
        self, request: requests.PreparedRequest
    ) -> requests.PreparedRequest:
        with self._lock:
            if not self.is_token_valid():
                self.update_access_token()
            request.headers["Authorization"] = f"Bearer {self.access_token}"
        return request

    def refused(self, request: requests.PreparedRequest) -> None:
        """Forget the token the API refused (401) on `request`, if still current.

        The SDK treats a 401 as fatal; a token revoked or expired early is not.
        """
        with self._lock:
            sent = request.headers.get("Authorization")
            if sent == f"Bearer {self.access_token}":
                self.access_token = None


def _oauth_error(response: requests.Response) -> str:
    """Return the OAuth `error` code of an answer, never its whole body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError, RecursionError):
        error = None
    return str(error) if error else response.reason
