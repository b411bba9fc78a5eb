"""The settings: their schema, the checks JSON Schema cannot say, what they mean."""

from __future__ import annotations

import ipaddress
import typing as t
from urllib.parse import urlsplit

from singer_sdk import typing as th

from tap_filestore.batches import batch_config_problems
from tap_filestore.errors import InvalidConfigError
from tap_filestore.timestamps import parse_instant

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

DEFAULT_BASE_URL = "https://api.example.com"
#: The most page requests in flight at once, and the default: measured with
#: benchmarks/ (docs/performance.md), as fast as one at a time on loopback,
#: about 4x faster with 20 ms per page.
MAX_PAGES_IN_FLIGHT = DEFAULT_MAX_CONCURRENT_REQUESTS = 16

#: A positive number, or its decimal text: Meltano hands a number set from the
#: environment over as text (its `decimal` kind cannot be written as JSON).
POSITIVE_NUMBER = th.CustomType(
    {
        "type": ["number", "string"],
        "exclusiveMinimum": 0,
        "pattern": r"^\s*[0-9]*\.?[0-9]+\s*$",
    }
)

SCHEMA = th.PropertiesList(
    th.Property(
        "client_id",
        th.StringType(min_length=1),
        title="Client ID",
        required=True,
        description="OAuth2 client id.",
    ),
    th.Property(
        "client_secret",
        th.StringType(min_length=1),
        title="Client Secret",
        required=True,
        secret=True,
        description="OAuth2 client secret; never logged.",
    ),
    th.Property(
        "base_url",
        th.URIType,
        title="Base URL",
        default=DEFAULT_BASE_URL,
        description="API root, e.g. https://api.example.com.",
    ),
    th.Property(
        "token_url",
        th.URIType,
        title="Token URL",
        description="OAuth2 token endpoint. Default: {base_url}/oauth/token.",
    ),
    th.Property(
        "scope", th.StringType, title="Scope", description="Optional OAuth2 scope."
    ),
    th.Property(
        "start_date",
        th.DateTimeType,
        title="Start Date",
        description="Earliest modified_at to extract on a first run (ISO 8601).",
    ),
    th.Property(
        "page_size",
        th.IntegerType(minimum=1, maximum=1000),
        title="Page Size",
        default=100,
        description="Files per page: the `limit` sent with each page request.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        title="Max Retries",
        default=3,
        description="Retries of one request after a retryable failure.",
    ),
    th.Property(
        "backoff_factor",
        POSITIVE_NUMBER,
        title="Backoff Factor",
        default=2,
        description="Retry n waits backoff_factor ** n seconds, or Retry-After.",
    ),
    th.Property(
        "request_timeout",
        POSITIVE_NUMBER,
        title="Request Timeout",
        default=60,
        description="Seconds one HTTP request may take in all (connect, "
        "headers, body) before it is abandoned and retried.",
    ),
    th.Property(
        "max_concurrent_requests",
        th.IntegerType(minimum=1, maximum=MAX_PAGES_IN_FLIGHT),
        title="Max Concurrent Requests",
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
        title="Max Requests Per Second",
        description="Most requests (page and token together) the tap starts "
        "in any one second, for an API with a published quota. Unset: no limit.",
    ),
    th.Property(
        "lookback_window",
        th.IntegerType(minimum=0),
        title="Lookback Window",
        default=0,
        description="Seconds before the bookmark an incremental run starts from, "
        "to catch late or shifted changes.",
    ),
    th.Property(
        "modified_since_param",
        th.StringType(min_length=1),
        title="Modified Since Parameter",
        description="Query parameter by which the API filters on modified_at; "
        "unset: the tap filters itself.",
    ),
    th.Property(
        "batch_record_metadata",
        th.BooleanType,
        title="Batch Record Metadata",
        default=False,
        description="With batch_config: write the `_sdc_*` columns a loader adds "
        "to RECORD rows (its add_record_metadata) into each batch row. Turn it on "
        "when the loader's add_record_metadata is on (target-postgres's default); "
        "a first or full BATCH sync sends ACTIVATE_VERSION only with it on.",
    ),
    additional_properties=False,
).to_dict()


def base_url(config: Mapping[str, t.Any]) -> str:
    """Return the API root, without a trailing slash."""
    return str(config.get("base_url", DEFAULT_BASE_URL)).rstrip("/")


def token_url(config: Mapping[str, t.Any]) -> str:
    """Return the token endpoint: `token_url`, or `base_url/oauth/token`."""
    return str(config.get("token_url") or f"{base_url(config)}/oauth/token")


def check(config: Mapping[str, t.Any]) -> None:
    """Check what the JSON Schema does not: nulls, URLs, numbers, date-times.

    Raises:
        InvalidConfigError: Naming every problem found.
    """
    problems = [
        f"{key}: null is not allowed; leave it out to get the default"
        for key, value in config.items()
        if value is None
    ]
    problems += [
        f"{key}: {config[key]!r} is not an http(s) URL"
        for key in ("base_url", "token_url")
        if config.get(key) and not _is_http_url(str(config[key]))
    ]
    problems += [
        f"{key}: {config[key]!r} is not a number above 0"
        for key in ("backoff_factor", "request_timeout", "max_requests_per_second")
        if isinstance(config.get(key), str) and float(config[key]) <= 0
    ]
    if start_date := config.get("start_date"):
        try:
            parse_instant(str(start_date))
        except ValueError:
            problems.append(f"start_date: {start_date!r} is not an ISO 8601 date-time")
    if "batch_config" in config:
        problems += batch_config_problems(config["batch_config"])
    if problems:
        raise InvalidConfigError(problem(problems))


def problem(errors: list[str]) -> str:
    """Say what is wrong with the config, and where the settings are described."""
    return (
        f"Invalid config: {'; '.join(errors)}. "
        "See `tap-filestore --about` for the settings."
    )


def warn_of_clear_text(config: Mapping[str, t.Any], logger: logging.Logger) -> None:
    """Warn when credentials would cross a network unencrypted."""
    destinations = {
        "The access token": base_url(config),
        "The client secret": token_url(config),
    }
    for secret, url in destinations.items():
        if _travels_in_clear_text(url):
            logger.warning(
                "%s goes to %s over plain http, to a host that is not this "
                "machine: it travels in clear text. Use https.",
                secret,
                url,
            )


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


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        has_host = bool(parts.hostname)
    except ValueError:
        return False
    no_spaces = not any(c.isspace() for c in value)
    return parts.scheme in {"http", "https"} and has_host and no_spaces
