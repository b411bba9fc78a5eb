"""One sync's state machine (`FilesSync`), with a fake client and a hand-moved clock.

No sockets and no SDK: the fake client serves pages of a list of files, the
fake bookkeeping keeps the state as a dict and notes every STATE and
ACTIVATE_VERSION with how many records were out when it went.
"""

from __future__ import annotations

import copy
import itertools
import typing as t
from dataclasses import dataclass, field

import pytest
import requests

from tap_filestore.errors import IncompleteListingError
from tap_filestore.pagination import Page
from tap_filestore.state import CHECKPOINT, Checkpoint
from tap_filestore.sync import (
    CHECKPOINT_EVERY_RECORDS,
    CHECKPOINT_EVERY_S,
    FilesSync,
    SyncSettings,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from tap_filestore.prefetch import RequestAt

#: 2027-01-15T08:00:00Z, the hand-moved clock's wall time at its start.
START = 1_800_000_000.0
START_MS = int(START * 1000)
PAGE = 100


def modified(n: int) -> str:
    """The `modified_at` of file n: a second apart, from 0 to 3599 and again."""
    return f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000000+00:00"


def files(count: int) -> list[dict[str, t.Any]]:
    return [
        {
            "file_id": f"f{n}",
            "file_name": None,
            "created_at": None,
            "modified_at": modified(n),
        }
        for n in range(count)
    ]


class Clock:
    """Wall and monotonic time that move only when moved (or slept on)."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return START + self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeAPI:
    """Serves pages of `listing`; `before_page` may change it between pages."""

    listing: list[dict[str, t.Any]]
    #: The `total` each page reports (None: no total).
    with_total: bool = True
    #: Serves no page past this offset, whatever `total` says.
    ends_at: int | None = None
    before_page: Callable[[FakeAPI, int], None] | None = None
    asked: list[int] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    most_in_flight: int = 1

    def page(self, offset: int, request_at: RequestAt) -> Page:
        assert f"?offset={offset}" in str(request_at(offset).url)
        if self.before_page:
            self.before_page(self, offset)
        self.asked.append(offset)
        self.requests += 1
        end = min(offset + PAGE, self.ends_at or len(self.listing))
        served = [dict(file) for file in self.listing[offset:end]]
        return Page(offset, served, len(self.listing) if self.with_total else None)

    def fetch_ahead(self, offsets: list[int], request_at: RequestAt) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Book:
    """The stream's state as a dict; notes what goes out, and after how many records."""

    state: dict[str, t.Any] = field(default_factory=dict)
    #: Records the consumer holds so far (it sets this).
    out: int = 0
    sent: list[tuple[str, t.Any, int]] = field(default_factory=list)
    version: int | None = None

    #: Pages requested and records out, as the SDK's metrics count them.
    pages: int = 0
    records: int = 0

    def count(self, *, pages: int = 0, records: int = 0) -> None:
        self.pages += pages
        self.records += records

    def advance_bookmark(self, value: str) -> None:
        markers = self.state.setdefault("progress_markers", {})
        if value > markers.get("replication_key_value", ""):
            markers.update(replication_key="modified_at", replication_key_value=value)

    def keep_starting_bookmark(self) -> None:
        self.state.get("progress_markers", {}).clear()

    def finalize(self) -> None:
        # As the SDK does: the greatest value seen, capped by the signpost.
        markers = self.state.pop("progress_markers", {})
        signpost = self.state.pop("replication_key_signpost", None)
        if "replication_key_value" in markers:
            self.state.update(markers)
            if signpost and self.state["replication_key_value"] > signpost:
                self.state["replication_key_value"] = signpost

    def stamp(self, version: int) -> None:
        self.version = version

    def write_state(self) -> None:
        self.sent.append(("STATE", copy.deepcopy(self.state), self.out))

    def activate(self, version: int) -> None:
        self.sent.append(("ACTIVATE_VERSION", version, self.out))


def page_request(offset: int, since: str | None) -> requests.PreparedRequest:
    query = f"offset={offset}" + (f"&modified_since={since}" if since else "")
    return requests.Request("GET", f"http://api.test/v1/files?{query}").prepare()


def new_sync(
    api: FakeAPI,
    book: Book,
    clock: Clock | None = None,
    *,
    start_date: str | None = None,
    batching: bool = False,
) -> FilesSync:
    settings = SyncSettings(
        page_size=PAGE, incremental=True, start_date=start_date, batching=batching
    )
    return FilesSync(
        settings,
        pages=api,
        page_request=page_request,
        book=book,
        clock=clock or Clock(),
    )


def run(sync: FilesSync, book: Book, *, chunk: int | None = None) -> list[str]:
    """Take every record (in chunks, as batch files do, if `chunk`); end the sync."""
    taken: list[str] = []
    if chunk is None:
        for record in sync.records():
            taken.append(record["file_id"])
            book.out = len(taken)
    else:
        for part in sync.chunks(itertools.repeat(chunk)):
            # A file is announced (and a STATE may follow) once it is whole.
            taken += [record["file_id"] for record in part]
            book.out = len(taken)
            book.write_state()
    sync.finish()
    return taken


def states(book: Book) -> list[tuple[dict[str, t.Any], int]]:
    return [(value, out) for kind, value, out in book.sent if kind == "STATE"]


def test_a_first_sync_emits_every_file_once_then_activates_then_states() -> None:
    api, book = FakeAPI(files(250)), Book()

    taken = run(new_sync(api, book), book)

    assert taken == [f"f{n}" for n in range(250)]
    assert api.asked == [0, 100, 200]
    assert (book.pages, book.records) == (3, 250)
    kinds = [kind for kind, _, _ in book.sent]
    assert kinds[-2:] == ["ACTIVATE_VERSION", "STATE"]
    final = book.sent[-1][1]
    assert final["replication_key_value"] == modified(249)
    assert CHECKPOINT not in final
    assert book.sent[-2][1] == book.version


def test_records_before_the_filter_stay_out() -> None:
    api, book = FakeAPI(files(250)), Book()

    taken = run(new_sync(api, book, start_date=modified(200)), book)

    assert taken == [f"f{n}" for n in range(200, 250)]
    assert book.sent[-1][1]["replication_key_value"] == modified(249)


def test_state_follows_checkpoints_every_so_many_records_or_seconds() -> None:
    clock = Clock()
    api, book = FakeAPI(files(3 * CHECKPOINT_EVERY_RECORDS)), Book()

    def tick(api: FakeAPI, offset: int) -> None:
        clock.now += 0.1 if offset < CHECKPOINT_EVERY_RECORDS else CHECKPOINT_EVERY_S

    api.before_page = tick
    run(new_sync(api, book, clock), book)

    interim = [(value[CHECKPOINT]["offset"], out) for value, out in states(book)[:-1]]
    # Every 10,000 records at first; then (a minute a page) every page.
    assert interim[0] == (CHECKPOINT_EVERY_RECORDS, CHECKPOINT_EVERY_RECORDS)
    assert interim[1] == (
        CHECKPOINT_EVERY_RECORDS + PAGE,
        CHECKPOINT_EVERY_RECORDS + PAGE,
    )
    assert len(interim) == 1 + (2 * CHECKPOINT_EVERY_RECORDS - PAGE) // PAGE


def test_no_state_is_ahead_of_what_is_out_in_either_mode() -> None:
    for chunk in (None, 150, 1000):
        api, book = FakeAPI(files(2 * CHECKPOINT_EVERY_RECORDS + 50)), Book()

        run(new_sync(api, book, batching=chunk is not None), book, chunk=chunk)

        for value, out in states(book):
            if CHECKPOINT in value:
                offset = value[CHECKPOINT]["offset"]
                assert offset <= out
                # The bookmark counts what is out (the greatest value so far).
                newest = modified(min(offset, 3600) - 1)
                assert value["progress_markers"]["replication_key_value"] == newest
                assert value[CHECKPOINT]["seen"] == newest
        if chunk is not None:
            # In BATCH mode only the files' STATEs and the final one go out.
            assert len(states(book)) == -(-len(api.listing) // chunk) + 1


def test_batch_and_record_mode_end_the_same_way() -> None:
    endings = []
    for chunk in (None, 120):
        api, book = FakeAPI(files(250)), Book()
        run(new_sync(api, book, batching=chunk is not None), book, chunk=chunk)
        endings.append(book.sent[-2:])

    assert endings[0] == endings[1]
    (activate, version, out), (state, final, _) = endings[0]
    assert (activate, version, out) == ("ACTIVATE_VERSION", START_MS, 250)
    assert state == "STATE"
    assert final == {
        "replication_key": "modified_at",
        "replication_key_value": modified(249),
    }


def resumed_state(*, offset: int, version: int | None) -> dict[str, t.Any]:
    """The state a first sync of 300 files left after `offset` of them."""
    state: dict[str, t.Any] = {}
    Checkpoint(
        offset=offset,
        file_id=f"f{offset - 1}",
        page=PAGE,
        started="2027-01-15T07:00:00.000000+00:00",  # an hour before the clock
        since=None,
        version=version,
        seen=modified(offset - 1),
        shrank=False,
    ).write(state)
    return state


@pytest.mark.parametrize(
    ("change", "asked", "shifted"),
    [
        ("nothing", [149, 200], False),
        ("deleted before it", [149, 199], True),
        ("gone", [149, 0, 100, 200], False),
    ],
)
def test_a_resumed_sync_finds_its_checkpoint_again(
    change: str, asked: list[int], shifted: bool
) -> None:
    listing = files(300)
    if change == "deleted before it":
        del listing[10]
    if change == "gone":
        del listing[199]
    api = FakeAPI(listing)
    book = Book(resumed_state(offset=200, version=1_799_000_000_000))

    taken = run(new_sync(api, book), book)

    assert api.asked == asked
    kinds = [kind for kind, _, _ in book.sent]
    final = book.sent[-1][1]
    if change == "gone":
        # Started again from offset 0, with a new version: every file again.
        assert len(taken) == len(listing)
        assert book.version != 1_799_000_000_000
    else:
        assert taken[0] == "f200"
        assert book.version == 1_799_000_000_000
    assert ("ACTIVATE_VERSION" in kinds) is not shifted
    # A shifted listing keeps the bookmark where the sync started (none here).
    assert ("replication_key_value" in final) is not shifted


def test_a_listing_that_shrinks_while_paging_keeps_the_bookmark() -> None:
    api, book = (
        FakeAPI(files(300)),
        Book({"replication_key": "modified_at", "replication_key_value": modified(0)}),
    )

    def delete_one(api: FakeAPI, offset: int) -> None:
        if offset == 200:
            del api.listing[5]

    api.before_page = delete_one
    run(new_sync(api, book), book)

    assert [kind for kind, _, _ in book.sent] == ["STATE"]
    assert book.sent[-1][1]["replication_key_value"] == modified(0)


def test_a_listing_that_ends_before_its_total_fails_before_its_last_state() -> None:
    api, book = FakeAPI(files(300), ends_at=200), Book()
    sync = new_sync(api, book)

    with pytest.raises(IncompleteListingError, match="total=300"):
        run(sync, book)

    assert book.sent == []
    assert book.state[CHECKPOINT]["offset"] == 200  # the next run resumes there


def test_a_sync_with_a_bookmark_never_activates_a_version() -> None:
    api = FakeAPI(files(250))
    book = Book(
        {"replication_key": "modified_at", "replication_key_value": modified(100)}
    )

    run(new_sync(api, book), book)

    assert [kind for kind, _, _ in book.sent] == ["STATE"]
    assert book.version is None


def test_a_file_modified_after_the_sync_began_never_becomes_the_bookmark() -> None:
    listing = files(10)
    listing[3]["modified_at"] = "2030-01-01T00:00:00.000000+00:00"  # the API's clock
    api, book = FakeAPI(listing), Book()
    sync = new_sync(api, book)

    taken = run(sync, book)

    assert len(taken) == 10
    # Capped by the sync's start, so that the next sync reads it again.
    assert book.sent[-1][1]["replication_key_value"] == sync.started
