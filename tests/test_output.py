"""Singer output: RECORDs wait in blocks, never behind the STATE that claims them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from singer_sdk.singerlib import RecordMessage, StateMessage

from tap_filestore.output import BLOCK_BYTES, BufferedMsgSpecWriter
from tests.conftest import captured_stdout, run_cli, sync

if TYPE_CHECKING:
    from pathlib import Path


def record(number: int) -> RecordMessage:
    return RecordMessage(stream="files", record={"file_id": f"{number:06}"})


def test_records_wait_until_a_state_writes_them_out_first() -> None:
    writer = BufferedMsgSpecWriter()
    with captured_stdout() as out:
        writer.write_message(record(1))
        writer.write_message(record(2))
        held = out.getvalue()
        writer.write_message(StateMessage(value={"bookmarks": {"files": {}}}))
        lines = [json.loads(line) for line in out.getvalue().splitlines()]

    assert held == b""
    assert [m["type"] for m in lines] == ["RECORD", "RECORD", "STATE"]
    assert [m["record"]["file_id"] for m in lines[:2]] == ["000001", "000002"]


def test_records_are_written_out_in_blocks_of_bounded_size() -> None:
    writer = BufferedMsgSpecWriter()
    line = len(writer.format_message(record(0)))
    with captured_stdout() as out:
        for number in range(3 * BLOCK_BYTES // line):
            writer.write_message(record(number))
        written = out.getvalue()

    assert BLOCK_BYTES <= len(written) < 3 * BLOCK_BYTES
    assert written.endswith(b"\n")
    assert all(json.loads(line)["type"] == "RECORD" for line in written.splitlines())


def test_a_run_that_leaves_the_state_unchanged_still_writes_its_records(
    config: dict[str, Any], tmp_path: Path
) -> None:
    first = sync(config)
    state = tmp_path / "state.json"
    state.write_text(json.dumps(first.state))

    again = run_cli("--state", str(state), config=config, tmp_path=tmp_path)

    assert again.returncode == 0, again.stderr
    messages = [json.loads(line) for line in again.stdout.splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    # Unchanged, it comes once before the records and once after them (issue 22).
    assert [m["value"] for m in messages if m["type"] == "STATE"] == [first.state] * 2
    assert messages[-1]["type"] == "STATE"
    at_bookmark = [r for r in records if r["modified_at"] == first.bookmark]
    assert at_bookmark, "the file at the bookmark is read again (>=) and written"
