"""Date-times as the API sends them, normalized to one comparable form."""

from __future__ import annotations

from datetime import datetime, timezone

import pendulum

#: A UTC date-time's length without its offset, and what pads its fraction
#: to microseconds.
_FRACTION_PADS = {19: ".000000", 23: "000", 26: ""}
_FRACTION_MARKS = ("", ".")
_fromisoformat = datetime.fromisoformat
_UTC = timezone.utc


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
    if type(value) is str:
        # UTC (or no offset) already, the form of most date-times an API
        # sends: check the date and time, then only pad the fraction, at a
        # third of the cost of converting it. (`fromisoformat` reads other
        # layouts too, a week date among them: hence the separators.)
        if value[-1:] == "Z":
            head = value[:-1]
        elif value.endswith("+00:00"):
            head = value[:-6]
        else:
            head = value
        pad = _FRACTION_PADS.get(len(head))
        if (
            pad is not None
            and head[10] == "T"
            and head[4] == head[7] == "-"
            and head[13] == head[16] == ":"
            and head[19:20] in _FRACTION_MARKS
        ):
            _fromisoformat(head)  # the date and the time are real
            return head + pad + "+00:00"
        try:
            # An offset: one conversion, as `format_instant(parse_instant())`.
            moment = _fromisoformat(value)
            if moment.tzinfo is not None:
                return moment.astimezone(_UTC).isoformat(timespec="microseconds")
        except (ValueError, OverflowError):
            pass  # (parse_instant says why)
    return format_instant(parse_instant(value))
