"""The tap's RECORDs hold to the SCHEMA it sends, so a target need not check again.

`meltano.yml` runs target-postgres with `validate_records: false`: it trusts
the tap's output. This proves the trust on a large sync of every kind of value
the sandbox serves (nulls, a missing `modified_at`, naive and offset
date-times, fractional seconds, non-ASCII names), with a date-time check
stricter than the target's.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING

from jsonschema import Draft7Validator, FormatChecker

from tap_filestore.sandbox import Sandbox
from tests.conftest import run_cli

if TYPE_CHECKING:
    from pathlib import Path

FILES = 30_000
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
CHECKER = FormatChecker(formats=())


@CHECKER.checks("date-time")
def is_rfc3339(value: object) -> bool:
    """An RFC 3339 date-time with an offset, which PostgreSQL reads as an instant.

    Not a string: the type check's concern (formats apply to strings only).
    """
    if not isinstance(value, str):
        return True
    if not RFC3339.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def test_the_date_time_check_can_fail() -> None:
    assert CHECKER.conforms("2024-02-29T23:59:59.5+02:00", "date-time")
    for bad in ("2024-02-29T23:59:59", "2024-02-30T00:00:00Z", "yesterday"):
        assert not CHECKER.conforms(bad, "date-time"), bad


def test_every_record_of_a_large_sync_conforms_to_the_schema_it_sent(
    tmp_path: Path,
) -> None:
    with Sandbox(FILES, seed=7) as api:
        done = run_cli(config=api.config(), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    (schema,) = [m["schema"] for m in messages if m["type"] == "SCHEMA"]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    validator = Draft7Validator(schema, format_checker=CHECKER)

    wrong = [
        (record["file_id"], error.message)
        for record in records
        for error in validator.iter_errors(record)
    ]
    extra = [r["file_id"] for r in records if set(r) != set(schema["properties"])]

    assert len(records) == FILES
    assert wrong == []
    assert extra == []
    # Each kind of value the check must see was there to be checked.
    assert any(r["file_name"] is None for r in records)
    assert any(not r["file_name"].isascii() for r in records if r["file_name"])
    for field in ("created_at", "modified_at"):
        assert any(r[field] is None for r in records), field
        assert any(r[field] and "." in r[field] for r in records), field
