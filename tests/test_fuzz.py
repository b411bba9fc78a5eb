"""Property-based tests: valid pages give conformant records, the rest clear errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_filestore.errors import MalformedPageError
from tap_filestore.pagination import decode_page
from tap_filestore.streams import FilesStream
from tap_filestore.timestamps import normalize

FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
OFFSETS = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
MOMENTS = st.datetimes(
    min_value=datetime(1901, 1, 1),  # noqa: DTZ001
    max_value=datetime(2099, 12, 31),  # noqa: DTZ001
    # Hypothesis's overloads of `datetimes` have no naive bounds with a strategy
    # of None or a zone, though it accepts them: mypy then rejects the `|`.
    timezones=st.none() | OFFSETS,  # type: ignore[operator]
)


SHOWN = {"seconds": 1_000_000, "milliseconds": 1000, "microseconds": 1}


@st.composite
def iso_date_times(draw: st.DrawFn) -> tuple[str, datetime]:
    """An ISO 8601 string in a form APIs send, and the instant it means."""
    moment = draw(MOMENTS)
    timespec = draw(st.sampled_from(sorted(SHOWN)))
    moment = moment.replace(
        microsecond=moment.microsecond - moment.microsecond % SHOWN[timespec]
    )
    text = moment.isoformat(timespec=timespec)
    if moment.utcoffset() == timedelta(0) and draw(st.booleans()):
        text = text[: -len("+00:00")] + "Z"
    if draw(st.booleans()):
        text = text.replace("T", " ")
    return text, moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@st.composite
def api_files(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A file as the API may send it, and the record the tap must emit."""
    file_id = draw(st.text(min_size=1) | st.integers())
    name = draw(st.none() | st.text())
    sent: dict[str, Any] = {"file_id": file_id, "file_name": name}
    expected: dict[str, Any] = {"file_id": str(file_id), "file_name": name}
    for field in ("created_at", "modified_at"):
        choice = draw(st.sampled_from(["value", "null", "missing"]))
        expected[field] = None
        if choice == "value":
            text, instant = draw(iso_date_times())
            sent[field] = text
            expected[field] = instant.astimezone(timezone.utc).isoformat(
                timespec="microseconds"
            )
        elif choice == "null":
            sent[field] = None
    return sent, expected


def answer(body: bytes, offset: int = 0) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response._content = body
    response.request = requests.Request(
        "GET", f"http://api.test/v1/files?offset={offset}&limit=100"
    ).prepare()
    response.url = cast("str", response.request.url)
    return response


def records_of(body: bytes) -> list[dict[str, Any]]:
    return decode_page(answer(body), 0).files


@FUZZ
@given(st.lists(api_files(), max_size=20), st.none() | st.integers(0, 10**6))
def test_valid_pages_give_schema_conformant_normalized_records(
    files: list[tuple[dict[str, Any], dict[str, Any]]],
    total: int | None,
) -> None:
    body: dict[str, Any] = {"files": [sent for sent, _ in files]}
    if total is not None:
        body["total"] = total

    records = records_of(json.dumps(body).encode())

    assert records == [expected for _, expected in files]
    for record in records:
        assert set(record) == set(FilesStream.schema["properties"])
        assert isinstance(record["file_id"], str)
        for field in ("created_at", "modified_at"):
            if record[field] is not None:
                assert datetime.fromisoformat(record[field]).utcoffset() == timedelta(0)


@FUZZ
@given(st.binary())
def test_bytes_that_are_not_a_page_are_a_clear_error(body: bytes) -> None:
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("files"), list):
        return  # a page after all: covered elsewhere
    with pytest.raises(MalformedPageError, match="offset 0"):
        records_of(body)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(JSON_VALUES)
def test_json_without_a_files_list_is_a_clear_error(value: object) -> None:
    body = {"files": value} if not isinstance(value, list) else {"items": value}

    with pytest.raises(MalformedPageError, match="has no `files` list"):
        records_of(json.dumps(body).encode())


@FUZZ
@given(
    st.lists(api_files(), max_size=5),
    st.one_of(
        st.dictionaries(st.sampled_from(["file_name", "created_at"]), st.text()),
        st.fixed_dictionaries({"file_id": st.none() | st.just("") | st.booleans()}),
        JSON_VALUES.filter(lambda v: not isinstance(v, dict)),
    ),
    st.data(),
)
def test_a_file_without_a_usable_file_id_is_a_clear_error(
    files: list[tuple[dict[str, Any], dict[str, Any]]],
    broken: object,
    data: st.DataObject,
) -> None:
    sent: list[object] = [f for f, _ in files]
    sent.insert(data.draw(st.integers(0, len(sent))), broken)

    with pytest.raises(MalformedPageError, match="without `file_id`"):
        records_of(json.dumps({"files": sent}).encode())


NOT_DATE_TIMES = st.text().filter(lambda s: not s[:4].isdigit()) | st.sampled_from(
    ["2024-13-01T00:00:00Z", "2024-02-30", "9999-12-31T23:59:59-01:00", "12:00", "now"]
)


@FUZZ
@given(NOT_DATE_TIMES, st.sampled_from(["created_at", "modified_at"]))
def test_a_date_time_that_is_not_iso_8601_is_a_clear_error(
    text: str, field: str
) -> None:
    body = {"files": [{"file_id": "a", field: text}]}

    with pytest.raises(MalformedPageError, match="invalid value"):
        records_of(json.dumps(body).encode())


@FUZZ
@given(st.text() | st.integers() | st.floats() | st.booleans())
def test_normalize_returns_utc_or_raises_value_error(value: object) -> None:
    try:
        result = normalize(value)  # type: ignore[arg-type]
    except ValueError:
        return
    assert result is not None
    assert datetime.fromisoformat(result).utcoffset() == timedelta(0)
