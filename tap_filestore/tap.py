"""tap-filestore: the Singer tap for the file-storage API."""

from __future__ import annotations

import copy
import io
import ipaddress
import logging
import sys
import time
import typing as t
from functools import cached_property
from pathlib import Path, PurePath
from urllib.parse import urlsplit

import click
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities
from typing_extensions import override

from tap_filestore import redact
from tap_filestore.auth import ClientCredentialsAuthenticator
from tap_filestore.batches import batch_config_problems
from tap_filestore.client import RETRYABLE_STATUSES
from tap_filestore.errors import (
    FileStoreError,
    InvalidConfigError,
    InvalidStateError,
    SyncStoppedError,
)
from tap_filestore.output import BufferedMsgSpecWriter
from tap_filestore.pacing import Clock, Pacer
from tap_filestore.sdk_private import install_log_filters
from tap_filestore.state import check_state, parse_state
from tap_filestore.stopping import exit_at_once, stop_on_signals
from tap_filestore.streams import FilesStream
from tap_filestore.timestamps import parse_instant

if t.TYPE_CHECKING:
    from types import TracebackType

    from singer_sdk.streams import Stream

DEFAULT_BASE_URL = "https://api.example.com"
#: Measured with benchmarks/ (README, Performance): as fast as one at a time on
#: loopback, about 4x faster with 20 ms per page.
DEFAULT_MAX_CONCURRENT_REQUESTS = 16


#: A positive number, or its decimal text: Meltano hands a number set from the
#: environment over as text (its `decimal` kind cannot be written as JSON).
POSITIVE_NUMBER = th.CustomType(
    {
        "type": ["number", "string"],
        "exclusiveMinimum": 0,
        "pattern": r"^\s*[0-9]*\.?[0-9]+\s*$",
    }
)


class TapFileStore(Tap):
    """Extracts the `files` collection of the file-storage API."""

    name = "tap-filestore"
    package_name = "tap-filestore"
    message_writer_class = BufferedMsgSpecWriter
    #: What the pacer reads and sleeps on (a test hands in its own).
    clock: Clock = time
    capabilities: t.ClassVar = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        TapCapabilities.TEST,
        PluginCapabilities.ACTIVATE_VERSION,
        PluginCapabilities.BATCH,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    config_jsonschema = th.PropertiesList(
        th.Property(
            "client_id",
            th.StringType(min_length=1),
            required=True,
            description="OAuth2 client id.",
        ),
        th.Property(
            "client_secret",
            th.StringType(min_length=1),
            required=True,
            secret=True,
            description="OAuth2 client secret; never logged.",
        ),
        th.Property(
            "base_url",
            th.URIType,
            default=DEFAULT_BASE_URL,
            description="API root, e.g. https://api.example.com.",
        ),
        th.Property(
            "token_url",
            th.URIType,
            description="OAuth2 token endpoint. Default: {base_url}/oauth/token.",
        ),
        th.Property("scope", th.StringType, description="Optional OAuth2 scope."),
        th.Property(
            "start_date",
            th.DateTimeType,
            description="Earliest modified_at to extract on a first run (ISO 8601).",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1, maximum=1000),
            default=100,
            description="Files per page: the `limit` sent with each page request.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=3,
            description="Retries of one request after a retryable failure.",
        ),
        th.Property(
            "backoff_factor",
            POSITIVE_NUMBER,
            default=2,
            description="Retry n waits backoff_factor ** n seconds, or Retry-After.",
        ),
        th.Property(
            "request_timeout",
            POSITIVE_NUMBER,
            default=60,
            description="Seconds one HTTP request may take in all (connect, "
            "headers, body) before it is abandoned and retried.",
        ),
        th.Property(
            "max_concurrent_requests",
            th.IntegerType(minimum=1, maximum=16),
            default=DEFAULT_MAX_CONCURRENT_REQUESTS,
            description="Most page requests in flight at once, once `total` is "
            "known and if the API takes 3 ms or more to answer a page: the tap "
            "starts with 4 and adapts (more while answers stay healthy, half on "
            "429, 503 or slowing answers); 1 means one at a time. Records are "
            "still emitted in order.",
        ),
        th.Property(
            "max_requests_per_second",
            POSITIVE_NUMBER,
            description="Most requests (page and token together) the tap starts "
            "in any one second, for an API with a published quota. Unset: no limit.",
        ),
        th.Property(
            "lookback_window",
            th.IntegerType(minimum=0),
            default=0,
            description="Seconds before the bookmark an incremental run starts from, "
            "to catch late or shifted changes.",
        ),
        th.Property(
            "modified_since_param",
            th.StringType(min_length=1),
            description="Query parameter by which the API filters on modified_at; "
            "unset: the tap filters itself.",
        ),
        additional_properties=False,
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Create the tap; a bad config or state raises one clear error."""
        if isinstance(kwargs.get("catalog"), dict):
            kwargs["catalog"] = _honour_replication_method(kwargs["catalog"])
        if isinstance(state := kwargs.get("state"), (str, PurePath)):
            path = Path(state)
            kwargs["state"] = state = parse_state(_read_text(path), str(path))
        if state is not None:
            check_state(state)
        try:
            super().__init__(*args, **kwargs)
        except ConfigValidationError as exc:
            raise InvalidConfigError(_config_problem(exc.errors)) from None
        redact.add_client_credentials(
            str(self.config.get("client_id", "")),
            str(self.config.get("client_secret", "")),
        )
        if kwargs.get("validate_config", True):
            self._check_values()
            self._warn_of_clear_text()
        # The SDK's Tap.__init__ binds SIGTERM and SIGINT to its own handler
        # (a STATE, then exit 0 -- a false success): rebind them to ours.
        stop_on_signals()

    @override
    def discover_streams(self) -> list[Stream]:
        return [FilesStream(self)]

    @cached_property
    def authenticator(self) -> ClientCredentialsAuthenticator:
        """The one authenticator every stream and request of this tap shares."""
        base_url = str(self.config.get("base_url", DEFAULT_BASE_URL)).rstrip("/")
        return ClientCredentialsAuthenticator(
            client_id=self.config["client_id"],
            client_secret=self.config["client_secret"],
            token_url=self.config.get("token_url") or f"{base_url}/oauth/token",
            scope=self.config.get("scope"),
            timeout=float(self.config["request_timeout"]),
            retryable_statuses=RETRYABLE_STATUSES,
            pacer=self.pacer,
        )

    @cached_property
    def pacer(self) -> Pacer:
        """Holds every request of this tap to `max_requests_per_second` and pauses."""
        per_second = self.config.get("max_requests_per_second")
        return Pacer(float(per_second) if per_second else None, clock=self.clock)

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        # --test and --discover run in click callbacks, before the SDK installs
        # its hook: install ours now (and again in `invoke`, after the SDK's).
        prepare_process()
        return command

    @classmethod
    @override
    def invoke(cls, *, state: t.IO[str] | None = None, **kwargs: t.Any) -> None:
        """Run the sync; end the process at once if it is stopped."""
        sys.excepthook = _report_error
        if state is not None:
            # Read here to name the file in the error if it is not JSON.
            text = state.read()
            parse_state(text, getattr(state, "name", "--state"))
            state = io.StringIO(text)
        try:
            super().invoke(state=state, **kwargs)
        except SyncStoppedError as exc:
            exit_at_once(exc)

    @classmethod
    @override
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> t.Any:
        try:
            return super().cb_config(ctx, param, value)
        except (OSError, TypeError, ValueError) as exc:
            msg = f"cannot read the config ({exc}); pass a JSON object file or ENV"
            raise click.BadParameter(msg) from None

    def _check_values(self) -> None:
        """Check what the SDK's JSON Schema does not: nulls, URLs and date-times."""
        problems = [
            f"{key}: null is not allowed; leave it out to get the default"
            for key, value in self.config.items()
            if value is None
        ]
        problems += [
            f"{key}: {self.config[key]!r} is not an http(s) URL"
            for key in ("base_url", "token_url")
            if self.config.get(key) and not _is_http_url(str(self.config[key]))
        ]
        problems += [
            f"{key}: {self.config[key]!r} is not a number above 0"
            for key in ("backoff_factor", "request_timeout", "max_requests_per_second")
            if isinstance(self.config.get(key), str) and float(self.config[key]) <= 0
        ]
        if start_date := self.config.get("start_date"):
            try:
                parse_instant(str(start_date))
            except ValueError:
                problems.append(
                    f"start_date: {start_date!r} is not an ISO 8601 date-time"
                )
        if batch_config := self.config.get("batch_config"):
            problems += batch_config_problems(batch_config)
        if problems:
            raise InvalidConfigError(_config_problem(problems))

    def _warn_of_clear_text(self) -> None:
        """Warn when credentials would cross a network unencrypted."""
        destinations = {
            "The access token": str(self.config.get("base_url", DEFAULT_BASE_URL)),
            "The client secret": self.authenticator.auth_endpoint,
        }
        for secret, url in destinations.items():
            if _travels_in_clear_text(url):
                self.logger.warning(
                    "%s goes to %s over plain http, to a host that is not this "
                    "machine: it travels in clear text. Use https.",
                    secret,
                    url,
                )


def prepare_process() -> None:
    """Make the process ready for a run from the command line (idempotent).

    Secrets masked in every log record, the SDK's noisy log lines quieted,
    and one line for an uncaught error. Nothing of it happens at import or
    when a `TapFileStore` is built (which binds SIGTERM and SIGINT, since the
    SDK's constructor binds them to a handler that exits 0).
    """
    prepare_logging()
    sys.excepthook = _report_error


def prepare_logging() -> None:
    """Mask secrets in every log record and quiet the SDK's noisy lines."""
    redact.install()
    install_log_filters(f"tap-filestore.{FilesStream.name}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"Cannot read the state file {path}: {exc}. Pass a readable JSON file."
        raise InvalidStateError(msg) from None


def _travels_in_clear_text(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def _honour_replication_method(catalog: dict[str, t.Any]) -> dict[str, t.Any]:
    """Let stream metadata choose the replication method, as Meltano's `metadata:` does.

    The SDK prefers the entry's `replication_method` (which its own discovery
    fills in) and never reads the Singer `replication-method` metadata, so
    `replication-method: FULL_TABLE` would be ignored.
    """
    catalog = copy.deepcopy(catalog)
    for entry in catalog.get("streams", []):
        for item in entry.get("metadata", []):
            meta = item.get("metadata", {})
            chosen = meta.get("replication-method") or meta.get(
                "forced-replication-method"
            )
            if not item.get("breadcrumb") and chosen:
                entry["replication_method"] = chosen
    return catalog


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        has_host = bool(parts.hostname)
    except ValueError:
        return False
    no_spaces = not any(c.isspace() for c in value)
    return parts.scheme in {"http", "https"} and has_host and no_spaces


def _config_problem(errors: list[str]) -> str:
    return (
        f"Invalid config: {'; '.join(errors)}. "
        "See `tap-filestore --about` for the settings."
    )


def _report_error(
    exc_type: type[BaseException],
    exc: BaseException,
    traceback: TracebackType | None,
) -> None:
    """Log a known failure as its one-line message; anything else with a traceback."""
    logger = logging.getLogger(TapFileStore.name)
    if isinstance(exc, FileStoreError):
        logger.error("%s", exc)
        logger.debug("Traceback", exc_info=(exc_type, exc, traceback))
    elif isinstance(exc, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, traceback)
    else:
        logger.error(
            "Unexpected %s: %s",
            exc_type.__name__,
            exc,
            exc_info=(exc_type, exc, traceback),
        )
