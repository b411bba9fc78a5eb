"""Guards for each private singer-sdk name in `tap_filestore/sdk_private.py`.

Each test fails, naming the SDK change, when a release moves what the tap
relies on; fix `sdk_private.py` (or drop the use, if a public hook appeared).
"""

from __future__ import annotations

import inspect
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from singer_sdk.helpers import _state
from singer_sdk.plugin_base import PluginBase
from singer_sdk.streams import Stream

from tap_filestore import sdk_private
from tap_filestore.tap import TapFileStore
from tests.conftest import captured_stdout, state_at

if TYPE_CHECKING:
    from singer_sdk.helpers.types import TapState

    from tap_filestore.sandbox import Sandbox
    from tap_filestore.streams import FilesStream

RECORD = {
    "file_id": "fil_1",
    "file_name": "a.txt",
    "created_at": None,
    "modified_at": "2024-01-01T00:00:00.000000+00:00",
}


def files_stream(config: dict[str, Any]) -> FilesStream:
    stream = TapFileStore(config=config, parse_env_config=False).streams["files"]
    return cast("FilesStream", stream)


def test_progress_markers_are_still_kept_under_the_same_key() -> None:
    assert _state.PROGRESS_MARKERS == sdk_private.PROGRESS_MARKERS, (
        "singer-sdk renamed its progress-markers key: update "
        "sdk_private.PROGRESS_MARKERS"
    )


def test_the_signpost_is_still_kept_under_the_same_key() -> None:
    assert _state.SIGNPOST_MARKER == sdk_private.SIGNPOST, (
        "singer-sdk renamed its signpost key: update sdk_private.SIGNPOST"
    )


def test_the_log_lines_the_tap_quiets_are_still_the_sdks() -> None:
    source = inspect.getsource(_state.increment_state)
    assert '"New replication value is null"' in source
    assert '"Stream is assumed to be unsorted, progress is not resumable if "' in source


def bookkeeping(stream: FilesStream) -> sdk_private.SdkBookkeeping:
    return sdk_private.SdkBookkeeping(
        stream,
        None,
        writer=stream.writer,
        state_writer=stream.state_writer,
        counters=(stream.get_http_request_counter(), None),
    )


def test_a_seeded_progress_bookmark_is_what_the_sdk_finalizes(
    sandbox: Sandbox, config: dict[str, Any]
) -> None:
    for name in ("_increment_stream_state", "_finalize_state"):
        assert hasattr(Stream, name), (
            f"singer-sdk removed Stream.{name}: update sdk_private.SdkBookkeeping"
        )
    stream = files_stream(config)
    book = bookkeeping(stream)

    book.advance_bookmark("2024-01-01T00:00:00+00:00")
    book.advance_bookmark("2023-01-01T00:00:00+00:00")

    markers = book.state[sdk_private.PROGRESS_MARKERS]
    assert markers["replication_key_value"] == "2024-01-01T00:00:00+00:00"
    book.finalize()
    assert book.state["replication_key_value"] == "2024-01-01T00:00:00+00:00"
    assert sdk_private.PROGRESS_MARKERS not in book.state


def test_the_sdk_still_syncs_records_in_the_method_the_tap_replaces() -> None:
    method = getattr(Stream, "_sync_records", None)
    assert method is not None, (
        "singer-sdk removed Stream._sync_records: "
        "sdk_private.OwnRecordLoop no longer replaces anything"
    )
    assert list(inspect.signature(method).parameters) == [
        "self",
        "context",
        "write_messages",
    ], "singer-sdk changed Stream._sync_records(context, *, write_messages)"
    assert "self._sync_records(context=context)" in inspect.getsource(Stream.sync), (
        "singer-sdk's Stream.sync no longer syncs records through _sync_records"
    )
    assert "self._write_starting_replication_value(" in inspect.getsource(method), (
        "singer-sdk's record loop no longer notes the starting bookmark with "
        "Stream._write_starting_replication_value: update sdk_private.record_loop"
    )


def test_the_lean_record_line_is_the_one_the_sdk_would_write(
    config: dict[str, Any],
) -> None:
    stream = files_stream(config)
    bookkeeping(stream).stamp(1234)
    assert stream.records_go_out_as_they_are

    (sdk,) = Stream._generate_record_messages(stream, dict(RECORD))
    with captured_stdout() as out:
        stream.writer.write_records("files", iter([dict(RECORD)]), 1234)
        stream.writer.flush()
    lean = json.loads(out.getvalue())

    expected = json.loads(stream.writer.format_message(sdk))
    assert lean | {"time_extracted": None} == expected | {"time_extracted": None}, (
        "singer-sdk builds RECORD messages differently now"
    )
    assert lean["version"] == 1234
    assert datetime.fromisoformat(lean["time_extracted"]).utcoffset() == timedelta(0)


@pytest.mark.parametrize("bookmark", [None, "2024-03-01T00:00:00+00:00"])
def test_the_lean_record_loop_writes_what_the_sdks_loop_writes(
    sandbox: Sandbox, config: dict[str, Any], bookmark: str | None
) -> None:
    def sync(lean: bool) -> tuple[list[dict[str, Any]], TapState]:
        tap = TapFileStore(
            config=config,
            state=state_at(bookmark) if bookmark else {},
            parse_env_config=False,
        )
        stream = tap.streams["files"]
        stream.records_go_out_as_they_are = lean  # type: ignore[attr-defined]
        with captured_stdout() as out:
            tap.sync_all()
        messages = [json.loads(line) for line in out.getvalue().splitlines()]
        # The table version is the sync's start (ms): one per sync, or none.
        versions = {message.pop("version", None) for message in messages}
        assert len(versions - {None}) == (0 if bookmark else 1)
        for message in messages:
            message.pop("time_extracted", None)
            message.get("value", {}).get("bookmarks", {}).get("files", {}).pop(
                sdk_private.SIGNPOST, None
            )
        return messages, tap.state

    lean, lean_state = sync(lean=True)
    sdk, sdk_state = sync(lean=False)
    assert [m["type"] for m in lean].count("RECORD") > 100
    assert lean == sdk, "the lean loop and the SDK's loop write different messages"
    assert lean_state == sdk_state


def test_the_table_version_starts_unset_and_is_what_the_sdk_stamps(
    config: dict[str, Any],
) -> None:
    stream = files_stream(config)

    (unstamped,) = Stream._generate_record_messages(stream, dict(RECORD))
    assert unstamped.version is None, (
        "singer-sdk no longer starts Stream._stream_version at None"
    )
    bookkeeping(stream).stamp(99)
    (sdk,) = Stream._generate_record_messages(stream, dict(RECORD))
    assert sdk.version == 99, "singer-sdk no longer stamps Stream._stream_version"


@pytest.mark.parametrize(
    ("stream_maps", "streams"),
    [({}, ["files"]), ({"files": {"__alias__": "all_files"}}, ["all_files"])],
)
def test_activate_version_goes_out_under_each_name_the_stream_goes_by(
    config: dict[str, Any], stream_maps: dict[str, Any], streams: list[str]
) -> None:
    stream = files_stream({**config, "stream_maps": stream_maps})

    with captured_stdout() as out:
        bookkeeping(stream).activate(77)
        stream.writer.flush()

    messages = [json.loads(line) for line in out.getvalue().splitlines()]
    assert messages == [
        {"type": "ACTIVATE_VERSION", "stream": name, "version": 77} for name in streams
    ]


def test_the_sdk_still_binds_signals_in_the_method_the_tap_replaces() -> None:
    method = getattr(PluginBase, "_setup_signal_handlers", None)
    assert method is not None, (
        "singer-sdk removed PluginBase._setup_signal_handlers: check whether "
        "its constructor still binds SIGTERM and SIGINT (sdk_private.SignalsLeftAlone)"
    )
    assert "signal.signal" in inspect.getsource(method)
    assert "_setup_signal_handlers()" in inspect.getsource(PluginBase.__init__), (
        "singer-sdk binds signals elsewhere now: sdk_private.SignalsLeftAlone "
        "no longer keeps TapFileStore(...) from binding them"
    )
