"""The `files` stream: what a record is, and which records a sync emits."""

from __future__ import annotations

import functools
import re
import sys
import time
import typing as t
from datetime import datetime, timedelta, timezone

import requests
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import SingerMessageType, StateMessage
from singer_sdk.streams import RESTStream
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_filestore.batches import (
    BatchFile,
    BatchRoot,
    file_sizes,
    local_folder,
    run_folder_name,
)
from tap_filestore.config import base_url
from tap_filestore.errors import (
    IncompleteBatchError,
    IncompleteListingError,
    MalformedPageError,
)
from tap_filestore.pagination import FilesPaginator, Page, decode_page
from tap_filestore.progress import SyncProgress
from tap_filestore.sdk_private import (
    SIGNPOST,
    LeanRecordSync,
    advance_progress_bookmark,
    drop_progress_bookmark,
    record_chunks,
    set_table_version,
    table_version,
    write_activate_version,
)
from tap_filestore.state import BATCH_FOLDER, CHECKPOINT, Checkpoint
from tap_filestore.sync import Ending, SyncRun
from tap_filestore.timestamps import format_instant, normalize, parse_instant

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context

    from tap_filestore.auth import ClientCredentialsAuthenticator
    from tap_filestore.client import FilesClient
    from tap_filestore.output import BufferedMsgSpecWriter
    from tap_filestore.sdk_private import BatchConfig, BatchEncoding


class FilesStream(LeanRecordSync, RESTStream[int]):
    """Every file of the account: `/v1/files`, upserted on `file_id`.

    Its pages come from the request path's owner (`FilesClient`), which the
    tap hands it, with the writer its messages go out through.
    """

    name = "files"
    path = "/v1/files"
    primary_keys = ("file_id",)
    replication_key = "modified_at"
    # The API promises no order: the bookmark is the greatest value, set at the end.
    is_sorted = False
    # STATE goes out with each checkpoint instead (see _checkpoint).
    STATE_MSG_FREQUENCY = sys.maxsize
    # parse_response already emits schema types (strings or None): the SDK's
    # per-record conformance pass would only cost time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    schema = th.PropertiesList(
        th.Property("file_id", th.StringType, required=True, nullable=False),
        th.Property("file_name", th.StringType),
        th.Property("created_at", th.DateTimeType),
        th.Property("modified_at", th.DateTimeType),
    ).to_dict()

    paginator: FilesPaginator | None = None
    #: The sync running, or the last one (a new one for each sync).
    _run: SyncRun | None = None
    #: Whether get_batches is writing the records to files.
    _batching = False
    #: What the last page request was prepared from (all but its query), and it.
    _request_shape: tuple[tuple[t.Any, ...], requests.PreparedRequest] | None = None

    def __init__(
        self, tap: Tap, client: FilesClient, writer: BufferedMsgSpecWriter
    ) -> None:
        """Create the stream; it sends nothing until a sync asks for records."""
        super().__init__(tap)
        self.client = client
        self.writer = writer

    @property
    @override
    def url_base(self) -> str:
        return base_url(self.config)

    @property
    @override
    def authenticator(self) -> ClientCredentialsAuthenticator:
        return self.client.authenticator

    @property
    @override
    def requests_session(self) -> requests.Session:
        return self.client.session

    @functools.cached_property
    def progress(self) -> SyncProgress:
        """Counters of this sync, logged as progress and summary lines."""
        return SyncProgress(self.logger, self.name, self.client.clock)

    @override
    def build_prepared_request(
        self, *args: t.Any, **kwargs: t.Any
    ) -> requests.PreparedRequest:
        # Unlike the SDK, leave authentication to the client: it authenticates
        # each try, so a failing token endpoint is retried like any request.
        request = requests.Request(*args, **kwargs)
        request.headers.setdefault("User-Agent", self.user_agent)
        query = request.params
        if not isinstance(query, str) or request.data or request.json:
            return self.requests_session.prepare_request(request)
        # Page requests differ in their (encoded) query alone: each is a copy
        # of one prepared without it, a third of the cost of preparing anew.
        request.params = {}
        shape = (request.method, request.url, tuple(request.headers.items()))
        if self._request_shape is None or self._request_shape[0] != shape:
            prepared = self.requests_session.prepare_request(request)
            self._request_shape = (shape, prepared)
        page = self._request_shape[1].copy()
        if query:
            page.url = f"{page.url}{'&' if '?' in str(page.url) else '?'}{query}"
        return page

    @override
    def get_new_paginator(self) -> FilesPaginator:
        run = self.run
        self.paginator = FilesPaginator(int(self.config["page_size"]), run.start_offset)
        self.paginator.listing_shrank = run.shifted
        return self.paginator

    @override
    def request_decorator(
        self, func: Callable[..., requests.Response]
    ) -> Callable[..., requests.Response]:
        # The client sends, retries and checks every request: the SDK's
        # `_request` (`func`) and backoff hooks are not used.
        def request(
            prepared_request: requests.PreparedRequest, context: Context | None
        ) -> requests.Response:
            if self.run.last_page:
                # The SDK asks for a page once every record before it is out.
                self._checkpoint(*self.run.last_page)
            return self.client.fetch(
                prepared_request,
                t.cast("FilesPaginator", self.paginator),
                lambda offset: self._page_request(context, offset),
            )

        return request

    def _page_request(
        self, context: Context | None, offset: int
    ) -> requests.PreparedRequest:
        """Build the request for the page at `offset`, as the SDK's loop does."""
        http = self.get_http_request(page=PageContext(context, offset))
        return self.build_prepared_request(
            method=http.method,
            url=http.url,
            params=http.encode_params(),
            headers=http.headers,
        )

    @property
    def run(self) -> SyncRun:
        """The sync running (once `get_records` has begun it)."""
        if self._run is None:
            msg = "no sync has begun"
            raise RuntimeError(msg)
        return self._run

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        state = self.get_context_state(context)
        run = self._run = self._begin(context, state)
        try:
            yield from super().get_records(context)
        finally:
            self.client.close()
            # The SDK skips a STATE equal to the one before: do not leave the
            # last RECORDs waiting for one.
            self.writer.flush()
        self._advance_bookmark(context)
        paginator = t.cast("FilesPaginator", self.paginator)
        shortfall = paginator.shortfall()
        ending = run.ending(shortfall=shortfall, shifted=paginator.listing_shrank)
        if ending is Ending.SHIFTED:
            self._keep_starting_bookmark(context)
        elif shortfall:
            raise IncompleteListingError(shortfall)
        else:
            state.pop(CHECKPOINT, None)  # the sync is complete
        if ending is Ending.ACTIVATE:
            # Without a bookmark this sync carried every file: let the target
            # retire the rows of files the API no longer lists. Only at the end:
            # sent first, it would retire every row before the sync had loaded
            # any, and a sync that then failed would leave the table empty.
            # (In batch mode, after the last BATCH: see get_batches.)
            run.version_to_activate = table_version(self)
        if not run.batching:
            self._activate_version()
        self.logger.info(
            "%s", self.progress.summary_line(self.client.requests, self.client.retries)
        )

    def _begin(self, context: Context | None, state: dict[str, t.Any]) -> SyncRun:
        """Begin this sync, or resume the one a trusted checkpoint names.

        A checkpoint that does not belong to its state is dropped with a
        warning, and one whose file is gone starts the sync again: either way
        the sync starts from the bookmark, with the bookmark's filter (a
        trusted checkpoint's is the same) and a signpost of now.
        """
        now = datetime.now(timezone.utc)
        run = self._run = SyncRun(
            since=self._modified_since(context),
            started=format_instant(now),
            fresh_start=self._bookmark(context) is None,
            batching=self._batching,
            last_state_at=self.client.clock.monotonic(),
            emitted_at_state=self.progress.emitted,
        )
        version = None
        resume = self._trusted_checkpoint(state, run, now)
        if resume and (found := self._find_checkpoint(context, resume)) is not None:
            run.start_offset, run.shifted = found
            # Never a signpost (the bookmark's cap) later than this run's start.
            run.started = format_instant(min(parse_instant(resume.started), now))
            run.newest = resume.seen
            run.fresh_start, version = resume.version is not None, resume.version
            if resume.seen and self.replication_method == "INCREMENTAL":
                advance_progress_bookmark(self, context, resume.seen)
        elif resume:
            state.pop(CHECKPOINT)
        if SIGNPOST in state:
            state[SIGNPOST] = run.started
        if run.fresh_start:
            set_table_version(self, version or int(now.timestamp() * 1000))
        return run

    def _trusted_checkpoint(
        self, state: dict[str, t.Any], run: SyncRun, now: datetime
    ) -> Checkpoint | None:
        """Return the state's checkpoint if it belongs to the state; else drop it.

        `run` is the sync as its bookmark (or `start_date`) alone begins it.
        """
        resume = Checkpoint.of(state)
        if resume is None:
            return None
        problem = resume.distrust(
            since=run.since, bookmarked=not run.fresh_start, now=now
        )
        if problem is None:
            return resume
        state.pop(CHECKPOINT)
        self.logger.warning(
            "%s: the state's checkpoint does not belong to it (%s): it is "
            "ignored, and the sync starts from the bookmark",
            self.name,
            problem,
        )
        return None

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
        the sync emits must be in an announced file: if one is not, the sync
        fails before its last STATE and ACTIVATE_VERSION. The files go in a
        folder of this run's, which its STATE names: the run that gets that
        STATE back deletes it (`BatchRoot.delete_loaded`).
        """
        storage, encoding = batch_config.storage, batch_config.encoding
        state = self.get_context_state(context)
        root = BatchRoot(local_folder(storage.root))
        try:
            root.delete_loaded(state.get(BATCH_FOLDER), time.time())
            started = datetime.now(timezone.utc)
            name = run_folder_name(f"{self.tap_name}--{self.name}", started)
            files = root.new_run(name, storage.prefix, encoding.compression or "none")
        finally:
            root.close()
        state[BATCH_FOLDER] = name
        started_ms = round(started.timestamp() * 1000)
        emitted_before, announced = self.progress.emitted, 0
        self._batching = True  # for the sync that record_chunks begins
        try:
            sizes = file_sizes(batch_config.batch_size)
            for chunk in record_chunks(self, context, sizes):
                handed = _Tally(chunk)
                written = files.write(handed, self._batch_metadata(started_ms))
                _check_complete(written, handed)
                if written is not None:
                    announced += written.records
                    yield encoding, [written.url]
        finally:
            self._batching = False
            files.close()
        if announced != (emitted := self.progress.emitted - emitted_before):
            msg = (
                f"{self.name}: {emitted} records were emitted but the batch files "
                f"announced hold {announced}: the sync stops before its final "
                "state. Report this as a bug; run again in RECORD mode "
                "(batch_config unset) meanwhile."
            )
            raise IncompleteBatchError(msg)
        # The records ran out after the last BATCH: the state is final now.
        self.write_state()
        run = self.run
        if not self.config.get("batch_record_metadata") and run.version_to_activate:
            # Rows without `_sdc_table_version` are what a target retires.
            run.version_to_activate = None
            self.logger.info(
                "%s: rows of files gone from the API are not retired: batch rows "
                "carry no _sdc_table_version unless batch_record_metadata is on",
                self.name,
            )
        self._activate_version()

    def _batch_metadata(self, started_ms: int) -> dict[str, t.Any]:
        """Return what a target adds to a RECORD's row, for a file written now.

        Nothing unless `batch_record_metadata` is on (a loader that does not
        add the metadata refuses keys its SCHEMA lacks). The record's version
        is the sync's table version; its extraction, its arrival and its
        batch are the file's writing.
        """
        if not self.config.get("batch_record_metadata"):
            return {}
        now = datetime.now(timezone.utc)
        written = format_instant(now)
        return {
            "_sdc_extracted_at": written,
            "_sdc_received_at": written,
            "_sdc_batched_at": written,
            "_sdc_deleted_at": None,
            "_sdc_sequence": round(now.timestamp() * 1000),
            "_sdc_table_version": table_version(self),
            "_sdc_sync_started_at": started_ms,
        }

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
            self.write_state()

    def _activate_version(self) -> None:
        """Send the ACTIVATE_VERSION a sync that carried every file has earned."""
        run = self.run
        if run.version_to_activate is not None:
            write_activate_version(self, run.version_to_activate)
            run.version_to_activate = None

    @property
    @override
    def emit_activate_version_messages(self) -> bool:
        # The SDK would send ACTIVATE_VERSION before the first record of a
        # FULL_TABLE sync; the tap sends it after the last record of every
        # sync that started without a bookmark (see get_records).
        return False

    @override
    def get_url_params(
        self, context: Context | None, next_page_token: int | None
    ) -> dict[str, t.Any]:
        params: dict[str, t.Any] = {
            "offset": next_page_token or 0,
            "limit": int(self.config["page_size"]),
        }
        param = self.config.get("modified_since_param")
        if param and (since := self.run.since):
            params[param] = since
        return params

    @override
    def parse_response(self, response: requests.Response) -> Iterable[dict[str, t.Any]]:
        page = t.cast("FilesPaginator", self.paginator).page(response)
        self.progress.page_received(len(page.files), page.total)
        try:
            records = [_normalized(record) for record in page.files]
        except (TypeError, ValueError) as exc:
            where = response.request.path_url
            msg = f"The page {where} has a file with an invalid value: {exc}."
            raise MalformedPageError(msg) from None
        # JSON escapes are the only way to a lone surrogate.
        body = response.content
        run = self.run
        if run.replaced_text_in is None and (b"\\ud" in body or b"\\uD" in body):
            self._warn_of_unencodable_text(records)
        run.last_page = (page, records[-1]["file_id"]) if records else None
        return records

    def _checkpoint(self, page: Page, file_id: str) -> None:
        """Record that every file up to `page`'s last is out; STATE when due."""
        self._advance_bookmark(None)
        shifted = t.cast("FilesPaginator", self.paginator).listing_shrank
        checkpoint = self.run.checkpoint(
            page, file_id, table_version(self), shifted=shifted
        )
        checkpoint.write(self.get_context_state(None))
        if self.run.state_due(self.client.clock.monotonic(), self.progress.emitted):
            self.write_state()

    def _advance_bookmark(self, context: Context | None) -> None:
        """Count the greatest `modified_at` out so far towards the bookmark."""
        newest = self.run.newest
        if newest is not None and self.replication_method == "INCREMENTAL":
            advance_progress_bookmark(self, context, newest)

    def _find_checkpoint(
        self, context: Context | None, resume: Checkpoint
    ) -> tuple[int, bool] | None:
        """Find the last file a checkpoint names.

        Files deleted or added before it since move it: the page around its
        offset is read, and it is found by its id.

        Returns:
            The offset after it, and whether the listing shifted; None (with a
            warning) if it is not there: the sync starts again from offset 0.
        """
        probe = max(0, resume.offset - 1 - resume.page // 2)
        page = decode_page(
            self.client.fetch_one(self._page_request(context, probe)), probe
        )
        ids = [_encodable(str(record["file_id"])) for record in page.files]
        if resume.file_id not in ids:
            self.logger.warning(
                "%s: cannot resume the sync of %s: file %s is no longer near "
                "offset %d; starting that sync again from offset 0",
                self.name,
                resume.started,
                resume.file_id,
                resume.offset,
            )
            return None
        after = probe + ids.index(resume.file_id) + 1
        # Files deleted before the checkpoint (those after it moved down) or
        # added before it (the first part's version lacks them): the first part
        # may have missed some (the shifting-offsets rule).
        shifted = resume.shrank or after != resume.offset
        self.logger.info(
            "%s: resuming the sync of %s after file %s at offset %d",
            self.name,
            resume.started,
            resume.file_id,
            after,
        )
        return after, shifted

    def _warn_of_unencodable_text(self, records: list[dict[str, t.Any]]) -> None:
        """Warn, once a sync, that text UTF-8 cannot carry was replaced."""
        replaced = (
            r["file_id"]
            for r in records
            if REPLACEMENT in f"{r['file_id']}{r['file_name'] or ''}"
        )
        if (file_id := next(replaced, None)) is not None:
            self.run.replaced_text_in = file_id
            self.logger.warning(
                "%s: file %s (and maybe others) has text that UTF-8 cannot "
                "carry (a lone surrogate escape): replaced with U+FFFD",
                self.name,
                file_id,
            )

    @override
    def post_process(
        self, row: dict[str, t.Any], context: Context | None = None
    ) -> dict[str, t.Any] | None:
        if not self.run.keeps(row["modified_at"]):
            return None
        self.progress.emitted += 1
        return row

    @override
    def write_records(self, records: Iterator[dict[str, t.Any]]) -> None:
        self.writer.write_records(self.name, records, table_version(self))

    def write_state(self) -> None:
        """Write a STATE message with the tap's state now."""
        self.writer.write_message(StateMessage(value=self.tap_state))

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

    @override
    def get_replication_key_signpost(self, context: Context | None = None) -> t.Any:
        # A resumed sync keeps the signpost of its first part.
        if resume := Checkpoint.of(self.get_context_state(context)):
            return resume.started
        # The SDK's signpost is a datetime; bookmarks compare as strings, so
        # cap them with a string of the same form.
        signpost = super().get_replication_key_signpost(context)
        return format_instant(signpost) if isinstance(signpost, datetime) else signpost

    def _keep_starting_bookmark(self, context: Context | None) -> None:
        """Do not advance the bookmark, nor retire rows, after a shifted listing.

        Files deleted mid-sync move every later file to a lower offset, so the
        page after the deletion skipped some: they were not emitted, and a new
        bookmark (or an ACTIVATE_VERSION) would lose them for good. Files added
        ahead of a resumed sync's checkpoint were never sent with its version.
        """
        drop_progress_bookmark(state := self.get_context_state(context))
        state.pop(CHECKPOINT, None)
        self.logger.warning(
            "%s: the listing shifted while this sync paged through it (files "
            "deleted, or added ahead of where it was), so some may have been "
            "skipped: the bookmark stays where this sync started, no rows are "
            "retired, and the next sync reads from there again",
            self.name,
        )

    def _bookmark(self, context: Context | None) -> str | None:
        """Return the bookmark this sync started from, if any."""
        if self.replication_method != "INCREMENTAL":
            return None
        state = self.get_context_state(context)
        if state.get("replication_key") != self.replication_key:
            return None
        return state.get("replication_key_value")

    def _modified_since(self, context: Context | None) -> str | None:
        """Return the earliest `modified_at` this sync must emit, if any.

        The bookmark less `lookback_window`, not before `start_date`; on a first
        run `start_date`; in FULL_TABLE nothing.
        """
        if self.replication_method != "INCREMENTAL":
            return None
        candidates = []
        if bookmark := self._bookmark(context):
            lookback = timedelta(seconds=int(self.config["lookback_window"]))
            candidates.append(parse_instant(bookmark) - lookback)
        if start_date := self.config.get("start_date"):
            candidates.append(parse_instant(start_date))
        return format_instant(max(candidates)) if candidates else None


class _Tally:
    """The records a batch file is handed, counted as they are taken."""

    def __init__(self, records: Iterator[dict[str, t.Any]]) -> None:
        self.records, self.count = records, 0

    def __iter__(self) -> Iterator[dict[str, t.Any]]:
        for record in self.records:
            self.count += 1
            yield record

    def left_over(self) -> bool:
        """Whether records were left untaken."""
        return next(self.records, None) is not None


def _check_complete(written: BatchFile | None, handed: _Tally) -> None:
    """Check that a batch file holds every record it was handed.

    Raises:
        IncompleteBatchError: If it does not; nothing about it is announced.
    """
    held = written.records if written else 0
    if held != handed.count or handed.left_over():
        where = f"The batch file {written.url}" if written else "No batch file"
        msg = (
            f"{where} holds {held} of the {handed.count} records it was handed: "
            "the sync stops before announcing it. Report this as a bug; run again "
            "in RECORD mode (batch_config unset) meanwhile."
        )
        raise IncompleteBatchError(msg)


def _normalized(record: dict[str, t.Any]) -> dict[str, t.Any]:
    """Return the record with every property present and date-times normalized.

    Raises:
        ValueError: If `file_name` is not a string or a date-time is not ISO 8601.
    """
    file_id, name = record["file_id"], record.get("file_name")
    if type(file_id) is not str:
        file_id = str(file_id)
    if name is not None and type(name) is not str:
        msg = f"file_name {name!r} is not a string"
        raise ValueError(msg)
    return {
        "file_id": file_id if file_id.isascii() else _encodable(file_id),
        "file_name": name if name is None or name.isascii() else _encodable(name),
        "created_at": normalize(record.get("created_at")),
        "modified_at": normalize(record.get("modified_at")),
    }


#: What replaces text that UTF-8 cannot carry.
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(text: str) -> str:
    """Return `text` with lone surrogates (which JSON escapes can hold) replaced."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub(REPLACEMENT, text)
    return text
