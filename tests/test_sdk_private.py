"""Guards for each private singer-sdk name in `tap_filestore/sdk_private.py`.

Each test fails, naming the SDK change, when a release moves what the tap
relies on; fix `sdk_private.py` (or drop the use, if a public hook appeared).
"""

from __future__ import annotations

import inspect
import json

from singer_sdk.helpers import _state
from singer_sdk.streams import Stream

from tap_filestore import sdk_private
from tap_filestore.tap import TapFileStore
from tests.conftest import captured_stdout, state_at

RECORD = {
    "file_id": "fil_1",
    "file_name": "a.txt",
    "created_at": None,
    "modified_at": "2024-01-01T00:00:00.000000+00:00",
}


def files_stream(config: dict) -> Stream:
    return TapFileStore(config=config, parse_env_config=False).streams["files"]


def test_progress_markers_are_still_kept_under_the_same_key() -> None:
    assert _state.PROGRESS_MARKERS == sdk_private.PROGRESS_MARKERS, (
        "singer-sdk renamed its progress-markers key: update "
        "sdk_private.PROGRESS_MARKERS"
    )


def test_the_sdk_still_builds_record_messages_in_the_method_the_tap_replaces() -> None:
    method = getattr(Stream, "_generate_record_messages", None)
    assert method is not None, (
        "singer-sdk removed Stream._generate_record_messages: "
        "sdk_private.DirectRecordMessages no longer replaces anything"
    )
    assert list(inspect.signature(method).parameters) == ["self", "record"], (
        "singer-sdk changed Stream._generate_record_messages(record)"
    )
    assert "_stream_version" in inspect.getsource(method), (
        "singer-sdk no longer stamps RECORDs with Stream._stream_version"
    )


def test_the_direct_record_message_is_the_one_the_sdk_would_build(
    config: dict,
) -> None:
    stream = files_stream(config)
    sdk_private.set_table_version(stream, 1234)
    assert stream.records_go_out_as_they_are

    (direct,) = stream._generate_record_messages(dict(RECORD))
    (sdk,) = Stream._generate_record_messages(stream, dict(RECORD))

    assert direct.to_dict() | {"time_extracted": None} == sdk.to_dict() | {
        "time_extracted": None
    }, "singer-sdk builds RECORD messages differently now"
    assert direct.version == 1234


def test_the_table_version_starts_unset_and_is_what_the_sdk_stamps(
    config: dict,
) -> None:
    stream = files_stream(config)

    assert sdk_private.table_version(stream) is None, (
        "singer-sdk no longer starts Stream._stream_version at None"
    )
    sdk_private.set_table_version(stream, 99)
    (sdk,) = Stream._generate_record_messages(stream, dict(RECORD))
    assert sdk.version == 99


def test_activate_version_is_still_written_by_the_method_the_tap_calls(
    config: dict,
) -> None:
    stream = files_stream(config)

    with captured_stdout() as out:
        sdk_private.write_activate_version(stream, 77)
        stream.writer.flush()

    (message,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert message == {"type": "ACTIVATE_VERSION", "stream": "files", "version": 77}, (
        "singer-sdk's Stream._write_activate_version_message changed"
    )


def test_the_sdk_record_loop_still_runs_without_writing_messages(
    config: dict,
) -> None:
    method = getattr(Stream, "_sync_records", None)
    assert method is not None, (
        "singer-sdk removed Stream._sync_records: "
        "sdk_private.sync_records_quietly has no record loop to run"
    )
    assert "write_messages" in inspect.signature(method).parameters, (
        "singer-sdk's Stream._sync_records lost its write_messages parameter"
    )
    # From a bookmark: no ACTIVATE_VERSION (the tap's own message) either.
    tap = TapFileStore(
        config=config,
        state=state_at("2020-01-01T00:00:00+00:00"),
        parse_env_config=False,
    )
    stream = tap.streams["files"]
    with captured_stdout() as out:
        records = list(sdk_private.sync_records_quietly(stream, None))
    assert len(records) == 250
    assert out.getvalue() == b"", "the record loop wrote messages"
    assert stream.get_context_state(None)["replication_key_value"], (
        "the record loop no longer finalizes the bookmark when records run out"
    )
