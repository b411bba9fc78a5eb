"""A checkpoint in the input state is trusted only when it belongs to its state.

An operator may hand over a state that was edited, merged from elsewhere or
written by a machine whose clock was wrong. Whatever its checkpoint says, the
run reads every file the bookmark covers, never ends on a bookmark later than
its own start, and activates no version it did not carry every file with.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.sandbox import Sandbox
from tap_filestore.state import Checkpoint
from tap_filestore.timestamps import format_instant, parse_instant
from tests.conftest import FAST_RETRIES, run_cli, state_at, sync

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

FILES = 3000
PAGE = 100
#: Where the forged checkpoints say the first part stopped.
OFFSET = 1200


@pytest.fixture
def api() -> Iterator[Sandbox]:
    with Sandbox(FILES) as sandbox:
        yield sandbox


def ago(**delta: float) -> str:
    return format_instant(datetime.now(timezone.utc) - timedelta(**delta))


def config_of(api: Sandbox) -> dict[str, Any]:
    return api.config(**FAST_RETRIES, page_size=PAGE)


def listing(api: Sandbox) -> list[dict[str, Any]]:
    """Every file, in the API's order, as the tap emits it."""
    return sync(config_of(api)).records


def middle_bookmark(records: list[dict[str, Any]]) -> str:
    """A bookmark that leaves about half the files to the next sync."""
    modified = sorted(r["modified_at"] for r in records if r["modified_at"])
    return str(modified[len(modified) // 2])


def checkpointed(
    bookmark: str | None, records: list[dict[str, Any]], **changes: object
) -> dict[str, Any]:
    """A state with `bookmark` and a checkpoint at OFFSET, as a sync writes it."""
    checkpoint = {
        "offset": OFFSET,
        "file_id": records[OFFSET - 1]["file_id"],
        "page": PAGE,
        "started": ago(hours=1),
        "since": bookmark,
        "version": None
        if bookmark
        else int(parse_instant(ago(hours=1)).timestamp()) * 1000,
        "seen": None,
        "shrank": False,
        **changes,
    }
    files: dict[str, Any] = {"checkpoint": checkpoint}
    if bookmark:
        files |= {"replication_key": "modified_at", "replication_key_value": bookmark}
    return {"bookmarks": {"files": files}}


def run(api: Sandbox, tmp_path: Path, state: dict[str, Any]) -> tuple[list[Any], str]:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    done = run_cli("--state", str(path), config=config_of(api), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def final_bookmark(messages: list[dict[str, Any]]) -> str | None:
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return states[-1]["bookmarks"]["files"].get("replication_key_value")  # type: ignore[no-any-return]


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| WARNING" in line]


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param({"since": "later"}, id="its filter is later than the bookmark"),
        pytest.param({"since": None}, id="it has no filter, the bookmark has"),
        pytest.param(
            {"started": "2999-01-01T00:00:00.000000+00:00", "seen": "2999-01-01"},
            id="it started in the future",
        ),
        pytest.param({"version": 9_999_999_999_999}, id="it has a table version"),
    ],
)
def test_a_checkpoint_that_disagrees_with_its_bookmark_is_dropped_with_a_warning(
    api: Sandbox, tmp_path: Path, forgery: dict[str, Any]
) -> None:
    records = listing(api)
    bookmark = middle_bookmark(records)
    if forgery.get("since") == "later":
        forgery["since"] = format_instant(parse_instant(bookmark) + timedelta(days=60))
    if "seen" in forgery:
        forgery["seen"] = forgery["started"]
    expected = sync(config_of(api), state=state_at(bookmark))

    messages, stderr = run(api, tmp_path, checkpointed(bookmark, records, **forgery))

    emitted = {m["record"]["file_id"] for m in messages if m["type"] == "RECORD"}
    assert emitted == set(expected.ids)  # every file the bookmark covers
    assert final_bookmark(messages) == expected.bookmark
    assert "ACTIVATE_VERSION" not in {m["type"] for m in messages}
    (warning,) = warnings_of(stderr)
    assert "checkpoint" in warning
    assert "resuming" not in stderr


def test_a_first_syncs_checkpoint_with_a_version_after_its_start_is_dropped(
    api: Sandbox, tmp_path: Path
) -> None:
    records = listing(api)
    state = checkpointed(None, records, version=9_999_999_999_999)
    before = datetime.now(timezone.utc).timestamp() * 1000

    messages, stderr = run(api, tmp_path, state)

    assert sum(m["type"] == "RECORD" for m in messages) == FILES  # from offset 0
    (version,) = [m["version"] for m in messages if m["type"] == "ACTIVATE_VERSION"]
    assert before <= version <= datetime.now(timezone.utc).timestamp() * 1000
    (warning,) = warnings_of(stderr)
    assert "checkpoint" in warning


def test_a_checkpoint_a_little_ahead_of_this_clock_resumes_and_ends_by_now(
    api: Sandbox, tmp_path: Path
) -> None:
    records = listing(api)
    bookmark = middle_bookmark(records)
    ahead = format_instant(datetime.now(timezone.utc) + timedelta(minutes=1))
    state = checkpointed(bookmark, records, started=ahead, seen="2999-01-01T00:00:00Z")

    messages, stderr = run(api, tmp_path, state)

    assert "resuming the sync of" in stderr
    end = final_bookmark(messages)
    assert end is not None
    assert parse_instant(end) <= datetime.now(timezone.utc)


def test_a_restart_from_offset_0_uses_the_bookmarks_filter_and_this_runs_start(
    api: Sandbox, tmp_path: Path
) -> None:
    records = listing(api)
    bookmark = middle_bookmark(records)
    # A checkpoint that belongs to its bookmark, but whose file is gone now;
    # it had seen a `modified_at` later than any file still listed.
    state = checkpointed(bookmark, records, seen=ago(minutes=90))
    api.dataset.delete([OFFSET - 1])
    expected = sync(config_of(api), state=state_at(bookmark))

    messages, stderr = run(api, tmp_path, state)

    assert "starting that sync again from offset 0" in stderr
    emitted = {m["record"]["file_id"] for m in messages if m["type"] == "RECORD"}
    assert emitted == set(expected.ids)
    assert final_bookmark(messages) == expected.bookmark


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("changes", "bookmarked", "trusted"),
    [
        ({}, True, True),
        ({"since": "2026-03-01T00:00:00Z"}, True, True),  # the same instant
        ({"since": "2026-03-01T00:00:01Z"}, True, False),
        ({"since": None}, True, False),
        ({"started": "2026-06-01T12:04:59Z"}, True, True),  # within the skew
        ({"started": "2026-06-01T12:05:01Z"}, True, False),
        ({"version": 1780315200000}, True, False),  # a version with a bookmark
        ({"since": None, "version": 1780315200000}, False, True),
        ({"since": None, "version": 1780315500000}, False, True),  # at the skew
        ({"since": None, "version": 1780315500001}, False, False),
    ],
)
def test_a_checkpoint_is_trusted_only_when_it_belongs_to_its_state(
    changes: dict[str, Any], *, bookmarked: bool, trusted: bool
) -> None:
    fields: dict[str, Any] = {
        "offset": 1,
        "file_id": "fil_1",
        "page": 1,
        "started": "2026-06-01T12:00:00.000000+00:00",
        "since": "2026-03-01T00:00:00.000000+00:00",
        "version": None,
        "seen": "2999-01-01T00:00:00Z",  # the API's clock: never judged
        "shrank": False,
        **changes,
    }
    since = "2026-03-01T00:00:00.000000+00:00" if bookmarked else None

    problem = Checkpoint(**fields).distrust(since=since, bookmarked=bookmarked, now=NOW)

    assert (problem is None) is trusted, problem
