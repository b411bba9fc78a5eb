"""Date-times as the API sends them, normalized to one comparable form."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pendulum

#: UTC, or no offset (taken as UTC): only the fraction needs padding.
_UTC_FORM = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?(?:Z|\+00:00)?\Z", re.ASCII
)


def parse_instant(value: str) -> datetime:
    """Parse any ISO 8601 date-time; one without an offset is taken as UTC.

    Raises:
        ValueError: If `value` is not an ISO 8601 date-time within years 1..9999.
    """
    try:
        moment = _parse(value)
        aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc)
    except (OverflowError, TypeError) as exc:
        msg = f"not a date-time in years 1..9999: {value!r}"
        raise ValueError(msg) from exc


def _parse(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        if not value[:4].isdigit():  # pendulum reads a bare time as today
            raise
        # Python 3.10 rejects "Z", and neither version reads every ISO form.
        parsed = pendulum.parse(value)
    if not isinstance(parsed, datetime):
        msg = f"not a date-time: {value!r}"
        raise TypeError(msg)
    return parsed


def format_instant(moment: datetime) -> str:
    """Format an aware datetime in the one form the tap emits and bookmarks.

    Fixed width, UTC and microseconds, so comparing two strings compares instants.
    """
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def normalize(value: str | None) -> str | None:
    """Return `value` as an emitted date-time; None stays None."""
    if value is None:
        return None
    if isinstance(value, str) and (utc := _UTC_FORM.match(value)):
        # UTC already: check the date and time, then only pad the fraction.
        # (A third of the per-record cost of the tap otherwise.)
        datetime.fromisoformat(utc[1])
        return f"{utc[1]}.{(utc[2] or '').ljust(6, '0')}+00:00"
    return format_instant(parse_instant(value))
