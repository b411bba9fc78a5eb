"""Input state is checked before any request (issue 9, class 6)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.errors import InvalidStateError
from tap_filestore.tap import TapFileStore
from tap_filestore.timestamps import format_instant, parse_instant
from tests.conftest import error_lines, run_cli, state_at

if TYPE_CHECKING:
    from pathlib import Path

    from tap_filestore.sandbox import Sandbox


#: A checkpoint as a sync writes it (tests/test_resume.py resumes from real ones).
CHECKPOINT = {
    "offset": 100,
    "file_id": "fil_1",
    "page": 100,
    "started": "2026-01-01T00:00:00.000000+00:00",
    "since": None,
    "version": 1767225600000,
    "seen": None,
    "shrank": False,
}


def files_bookmark(**bookmark: object) -> str:
    return json.dumps({"bookmarks": {"files": bookmark}})


BROKEN_STATES = [
    ("{not json", "is not JSON"),
    ("", "is not JSON"),
    ("[]", "it is not a JSON object"),
    ('{"bookmarks": []}', "`bookmarks` is not an object"),
    ('{"bookmarks": {"files": "2024-01-01"}}', "`bookmarks.files` is not an object"),
    (
        files_bookmark(replication_key="modified_at", replication_key_value="soon"),
        "`bookmarks.files.replication_key_value` 'soon' is not an ISO 8601",
    ),
    (
        files_bookmark(replication_key="modified_at", replication_key_value=17),
        "`bookmarks.files.replication_key_value` 17 is not an ISO 8601",
    ),
    (
        files_bookmark(replication_key="created_at"),
        "`bookmarks.files.replication_key` is 'created_at', not 'modified_at'",
    ),
    (
        files_bookmark(progress_markers=[]),
        "`bookmarks.files.progress_markers` is not an object",
    ),
    (
        files_bookmark(checkpoint={"offset": 100}),
        "`bookmarks.files.checkpoint` is not an object of offset, file_id, page,",
    ),
    (
        files_bookmark(checkpoint={**CHECKPOINT, "offset": "100"}),
        "`bookmarks.files.checkpoint.offset` is '100'",
    ),
    (
        files_bookmark(checkpoint={**CHECKPOINT, "page": 0}),
        "`bookmarks.files.checkpoint.page` is 0",
    ),
    (
        files_bookmark(checkpoint={**CHECKPOINT, "since": "yesterday"}),
        "`bookmarks.files.checkpoint.since` is 'yesterday'",
    ),
    (
        files_bookmark(checkpoint={**CHECKPOINT, "shrank": 0}),
        "`bookmarks.files.checkpoint.shrank` is 0",
    ),
    (
        files_bookmark(batch_folder="../../home"),
        "`bookmarks.files.batch_folder` '../../home' is not a run's folder name",
    ),
]


def refusal(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path, data: bytes
) -> str:
    """Run the tap on a state file holding `data`; return its one error line.

    The run must end at once: exit 1, nothing on stdout, no request sent.
    """
    state = tmp_path / "state.json"
    state.write_bytes(data)

    run = run_cli("--state", str(state), config=config, tmp_path=tmp_path)

    assert run.returncode == 1
    (line,) = error_lines(run.stderr)
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert sandbox.requests == []
    return line


@pytest.mark.parametrize(("text", "problem"), BROKEN_STATES)
def test_a_broken_state_file_is_one_line_and_exit_1_before_any_request(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path, text: str, problem: str
) -> None:
    line = refusal(sandbox, config, tmp_path, text.encode())

    assert problem in line
    assert "state" in line
    assert "--full-refresh" in line


UNREADABLE_STATES = [
    (b'{"a": ' * 200_000 + b"1" + b"}" * 200_000, "nested too deep"),
    ('{"bookmarks": {"files": {"note": "café"}}}'.encode("latin-1"), "UTF-8"),
    (b'{"bookmarks": {"files": {"replication_key_value": NaN}}}', "NaN"),
    (b'{"bookmarks": {"other": {"cursor": -Infinity}}}', "Infinity"),
    (b'{"bookmarks": {"files": {"replication_key": "modified_at"}}} {}', "JSON"),
]


@pytest.mark.parametrize(("data", "problem"), UNREADABLE_STATES)
def test_a_state_file_a_json_parser_chokes_on_is_one_line_naming_it(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path, data: bytes, problem: str
) -> None:
    line = refusal(sandbox, config, tmp_path, data)

    assert str(tmp_path / "state.json") in line
    assert problem in line


@pytest.mark.parametrize(("text", "problem"), BROKEN_STATES[2:])
def test_a_broken_state_dict_is_refused_by_the_tap_itself(
    config: dict[str, Any], text: str, problem: str
) -> None:
    with pytest.raises(InvalidStateError, match="Invalid state") as refused:
        TapFileStore(config=config, state=json.loads(text), parse_env_config=False)
    assert problem in str(refused.value)


def test_state_of_other_streams_is_left_alone(
    config: dict[str, Any], tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"bookmarks": {"folders": {"cursor": 7}}}))

    run = run_cli("--state", str(state), config=config, tmp_path=tmp_path)

    assert run.returncode == 0, run.stderr
    assert sum('"RECORD"' in line for line in run.stdout.splitlines()) == 250


def test_a_bookmark_later_than_now_is_refused_by_name(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path
) -> None:
    # A run would end on it and skip every change made before then.
    future = "2999-01-01T00:00:00.000000+00:00"

    line = refusal(sandbox, config, tmp_path, json.dumps(state_at(future)).encode())

    assert future in line
    assert "later than now" in line


def test_a_bookmark_a_little_ahead_of_this_clock_is_taken_as_now(
    config: dict[str, Any], tmp_path: Path
) -> None:
    # Clock skew between machines: the run ends on a bookmark no later than its
    # start, which reads more files than the bookmark asked for, never fewer.
    ahead = format_instant(datetime.now(timezone.utc) + timedelta(minutes=1))
    state = tmp_path / "state.json"
    state.write_text(json.dumps(state_at(ahead)))

    run = run_cli("--state", str(state), config=config, tmp_path=tmp_path)

    assert run.returncode == 0, run.stderr[-2000:]
    last = json.loads(run.stdout.splitlines()[-1])
    end = last["value"]["bookmarks"]["files"]["replication_key_value"]
    assert parse_instant(end) <= datetime.now(timezone.utc)
