"""The `files` stream: what a record is, and how the SDK runs its sync."""

from __future__ import annotations

import contextlib
import functools
import sys
import typing as t

from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import SingerMessageType, StateMessage
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_filestore.batches import (
    file_sizes,
    open_run,
    record_metadata,
    write_batches,
)
from tap_filestore.config import base_url
from tap_filestore.sdk_private import OwnRecordLoop, SdkBookkeeping, record_loop
from tap_filestore.state import BATCH_FOLDER
from tap_filestore.sync import FilesSync, SyncSettings

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import requests
    from singer_sdk import Tap, metrics
    from singer_sdk.helpers.types import Context

    from tap_filestore.client import FilesClient
    from tap_filestore.output import BufferedMsgSpecWriter
    from tap_filestore.sdk_private import BatchConfig, BatchEncoding


class FilesStream(OwnRecordLoop, RESTStream[int]):
    """Every file of the account: `/v1/files`, upserted on `file_id`.

    Its pages come from the request path's owner (`FilesClient`), which the
    tap hands it, with the writer its messages go out through. Each sync is a
    `FilesSync`, which the SDK's hooks make and run.
    """

    name = "files"
    path = "/v1/files"
    primary_keys = ("file_id",)
    replication_key = "modified_at"
    # The API promises no order: the bookmark is the greatest value, set at the end.
    is_sorted = False
    # STATE goes out with the sync's checkpoints instead.
    STATE_MSG_FREQUENCY = sys.maxsize
    # The pages already hold schema types (strings or None): the SDK's
    # per-record conformance pass would only cost time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    schema = th.PropertiesList(
        th.Property("file_id", th.StringType, required=True, nullable=False),
        th.Property("file_name", th.StringType),
        th.Property("created_at", th.DateTimeType),
        th.Property("modified_at", th.DateTimeType),
    ).to_dict()

    def __init__(
        self, tap: Tap, client: FilesClient, writer: BufferedMsgSpecWriter
    ) -> None:
        """Create the stream; it sends nothing until a sync asks for records."""
        super().__init__(tap)
        self.client = client
        self.writer = writer
        self.state_writer = tap.state_writer

    @property
    @override
    def url_base(self) -> str:
        return base_url(self.config)

    @override
    def get_url_params(
        self, context: Context | None, next_page_token: int | None
    ) -> dict[str, t.Any]:
        return {"offset": next_page_token or 0, "limit": int(self.config["page_size"])}

    def page_request(self, offset: int, since: str | None) -> requests.PreparedRequest:
        """Build the request for the page at `offset`, of files modified since `since`.

        The SDK's hooks decide it; the API filters on `modified_since_param`,
        if set (the sync filters anyway).
        """
        http = self.get_http_request(page=PageContext(None, offset))
        if since and (param := self.config.get("modified_since_param")):
            http.params[param] = since
        http.headers.setdefault("User-Agent", self.user_agent)
        return self.client.prepare(http)

    @contextlib.contextmanager
    def _sync(
        self,
        context: Context | None,
        records: metrics.Counter | None,
        *,
        batching: bool = False,
    ) -> Iterator[FilesSync]:
        """Make the sync that runs now, its pages and `records` counted.

        `records` is None where the SDK's record loop counts the records.
        """
        settings = SyncSettings(
            page_size=int(self.config["page_size"]),
            incremental=self.replication_method == "INCREMENTAL",
            lookback_s=int(self.config["lookback_window"]),
            start_date=self.config.get("start_date"),
            batching=batching,
            retires_rows=not batching or bool(self.config.get("batch_record_metadata")),
        )
        with self.get_http_request_counter() as pages:
            book = SdkBookkeeping(
                self,
                context,
                writer=self.writer,
                state_writer=self.state_writer,
                counters=(pages, records),
            )
            try:
                yield FilesSync(
                    settings,
                    pages=self.client,
                    page_request=self.page_request,
                    book=book,
                    clock=self.client.clock,
                )
            finally:
                # Whatever stopped the sync, no page is fetched ahead any more,
                # and the records waiting in the writer go out.
                self.client.close()
                self.writer.flush()

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        # The SDK's loop, where selection or stream maps change the records.
        with self._sync(context, None) as sync:
            yield from sync.records()
            sync.finish()

    @override
    def sync_records(self, context: Context | None) -> None:
        with (
            record_loop(self, context) as counted,
            self._sync(context, counted) as sync,
        ):
            records = sync.records()  # begun: its table version is known
            self.writer.write_records(self.name, records, sync.version)
            sync.finish()

    @override
    def get_batch_config(self, config: t.Mapping[str, t.Any]) -> BatchConfig | None:
        batch_config = super().get_batch_config(config)
        if batch_config and self.ABORT_AT_RECORD_COUNT is not None:
            return None  # a dry run (--test) leaves no files behind
        if batch_config and not self.records_go_out_as_they_are:
            # Batch files hold records as extracted.
            self.logger.info(
                "%s: stream maps, flattening or deselected properties apply, so "
                "the records go out as RECORD messages, not BATCH files",
                self.name,
            )
            return None
        return batch_config

    @override
    def get_batches(
        self, batch_config: BatchConfig, context: Context | None = None
    ) -> Iterable[tuple[BatchEncoding, list[str]]]:
        """Write the records to files, one BATCH message (then STATE) each.

        Each file is complete before it is announced, and the SDK writes STATE
        only after the BATCH that announces the file it covers. Every record
        the sync emits must be in an announced file, or the sync fails before
        its last STATE. The files go in a folder of this run's, which its
        STATE names: the run that gets that STATE back deletes it.
        """
        storage, encoding = batch_config.storage, batch_config.encoding
        state, clock = self.get_context_state(context), self.client.clock
        now = clock.time()
        folder = open_run(
            storage.root,
            prefix=storage.prefix,
            compression=encoding.compression,
            loaded=state.get(BATCH_FOLDER),
            now=now,
        )
        state[BATCH_FOLDER] = folder.path.name
        started_ms = round(now * 1000)
        with (
            record_loop(self, context) as counted,
            self._sync(context, counted, batching=True) as sync,
        ):
            extra = (
                (lambda: record_metadata(sync.version, started_ms, clock.time()))
                if self.config.get("batch_record_metadata")
                else dict
            )
            chunks = sync.chunks(file_sizes(batch_config.batch_size))
            for written in write_batches(
                chunks, folder, extra, lambda: sync.progress.emitted
            ):
                yield encoding, [written.url]
            sync.finish()

    @override
    def finalize_state_progress_markers(
        self, state: dict[str, t.Any] | None = None
    ) -> None:
        """Finalize the bookmark after a sync, then end the output on a STATE.

        The SDK skips a STATE equal to the one before, so a sync that changed
        nothing would end on its records (or ACTIVATE_VERSION), and a target
        that keeps only the state lines after records would keep none.
        """
        super().finalize_state_progress_markers(state)
        if self.writer.last_type != SingerMessageType.STATE:
            self.writer.write_message(StateMessage(value=self.tap_state))

    @property
    @override
    def emit_activate_version_messages(self) -> bool:
        # The SDK would send ACTIVATE_VERSION before the first record of a
        # FULL_TABLE sync; the sync sends it after the last record of every
        # sync that started without a bookmark.
        return False

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        # No child streams: the SDK's default would copy every record for them.
        return ()

    @functools.cached_property
    @override
    def records_go_out_as_they_are(self) -> bool:  # type: ignore[override]
        """Whether every property is selected and no stream map applies."""
        maps = self.stream_maps
        plain = (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == self.name
            and not (maps[0].flattening_options and maps[0].flattening_enabled)
        )
        return plain and all(
            self.mask[("properties", name)] for name in self.schema["properties"]
        )
