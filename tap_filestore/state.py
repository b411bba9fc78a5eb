"""The input state, checked before any request is sent."""

from __future__ import annotations

import dataclasses
import json
import logging
import typing as t
from datetime import datetime, timedelta
from pathlib import Path, PurePath

from tap_filestore.batches import RUN_FOLDER
from tap_filestore.errors import InvalidStateError
from tap_filestore.timestamps import format_instant, parse_instant

logger = logging.getLogger(__name__)

#: How far ahead of this machine's clock a time in a state may be: the state
#: may come from another machine.
CLOCK_SKEW = timedelta(minutes=5)
#: The keys of a sync's checkpoint, and of its folder of batch files, in its
#: stream's state.
CHECKPOINT = "checkpoint"
BATCH_FOLDER = "batch_folder"


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where a sync stands: enough to resume it after the last file it emitted.

    A STATE carries it only while the sync runs; a target forwards a STATE
    once it has committed everything before it, so a checkpoint that comes
    back is one the data has reached.
    """

    #: The offset after the last file emitted, and that file's id.
    offset: int
    file_id: str
    #: How many files the API served on that page (the probe's width).
    page: int
    #: When the sync started: its signpost.
    started: str
    #: The earliest `modified_at` the sync emits (None: every file).
    since: str | None
    #: The table version of a sync that started without a bookmark.
    version: int | None
    #: The greatest `modified_at` emitted so far.
    seen: str | None
    #: Whether the listing shifted (files deleted, or added ahead of where the
    #: sync was): the sync may have missed files, so the bookmark stays.
    shrank: bool

    @classmethod
    def of(cls, stream_state: dict[str, t.Any]) -> Checkpoint | None:
        """Return the checkpoint a (checked) stream state holds, if any."""
        value = stream_state.get(CHECKPOINT)
        return None if value is None else cls(**value)

    def distrust(
        self, *, since: str | None, bookmarked: bool, now: datetime
    ) -> str | None:
        """Say why this checkpoint does not belong to the state around it, if so.

        Args:
            since: The filter the state's bookmark (or `start_date`) gives.
            bookmarked: Whether the sync starts from a bookmark.
            now: This machine's time.
        """
        if not _same_instant(self.since, since):
            return f"its filter {self.since} is not the bookmark's {since}"
        started = parse_instant(self.started)
        if started > now + CLOCK_SKEW:
            return f"it started at {self.started}, later than now"
        if self.version is not None and bookmarked:
            return "it has a table version, but its sync has a bookmark"
        if self.version is not None and self.version > _ms(started + CLOCK_SKEW):
            return f"its table version {self.version} is later than its start"
        return None

    def write(self, stream_state: dict[str, t.Any]) -> None:
        """Put this checkpoint in the stream state."""
        stream_state[CHECKPOINT] = dataclasses.asdict(self)


def _same_instant(one: str | None, other: str | None) -> bool:
    if one is None or other is None:
        return one is other
    return parse_instant(one) == parse_instant(other)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


#: The types each checkpoint field may hold, as `Checkpoint` declares them.
_CHECKPOINT_TYPES: dict[str, tuple[type, ...]] = {
    name: t.get_args(hint) or (hint,)
    for name, hint in t.get_type_hints(Checkpoint).items()
}


def load_state(state: object, now: datetime) -> object:
    """Return the state a tap was given, read if it is a path, and checked.

    Raises:
        InvalidStateError: If the file cannot be read, or `check_state` fails.
    """
    if isinstance(state, (str, PurePath)):
        path = Path(state)
        try:
            text = read_state_text(path.open(encoding="utf-8"), str(path))
        except OSError as exc:
            msg = (
                f"Cannot read the state file {path}: {exc}. Pass a readable JSON file."
            )
            raise InvalidStateError(msg) from None
        state = parse_state(text, str(path))
    if state is not None:
        check_state(state, now)
    return state


def read_state_text(file: t.IO[str], source: str) -> str:
    """Return the text of a state file opened as UTF-8 text.

    Raises:
        InvalidStateError: If it is not UTF-8.
    """
    with file:
        try:
            return file.read()
        except UnicodeDecodeError as exc:
            msg = (
                f"The state file {source} is not UTF-8 text (byte "
                f"{exc.object[exc.start]:#04x} at offset {exc.start})"
            )
            raise InvalidStateError(_advice(msg)) from None


def parse_state(text: str, source: str) -> object:
    """Parse the text of a state file (`check_state` checks what it holds).

    Raises:
        InvalidStateError: If it is not JSON, holds NaN or Infinity, or is
            nested deeper than `MAX_DEPTH`.
    """
    try:
        state = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        state = None
    except ValueError as exc:
        msg = f"The state file {source} is not JSON ({exc})"
        raise InvalidStateError(_advice(msg)) from None
    if state is None or _deeper_than(state, MAX_DEPTH):
        msg = f"The state file {source} is nested too deep (over {MAX_DEPTH} levels)"
        raise InvalidStateError(_advice(msg))
    return state


#: Deeper than any Singer state: a deeper one is not one, and copying it
#: (the SDK does) would exhaust the stack.
MAX_DEPTH = 64


def _no_constant(name: str) -> t.NoReturn:
    msg = f"{name} is not a number JSON allows"
    raise ValueError(msg)


def _deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays nest in `value` more than `limit` levels."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = (
            item.values()
            if isinstance(item, dict)
            else item
            if isinstance(item, list)
            else ()
        )
        if children and depth > limit:
            return True
        todo.extend((child, depth + 1) for child in children)
    return False


def check_state(state: object, now: datetime) -> None:
    """Check that `state` is a Singer state whose bookmarks this tap can read.

    Bookmarks of other streams are left alone. A `files` bookmark a little
    later than `now` (another machine's clock) is taken as `now`, so that the
    run ends on no bookmark later than its start; one later than that is
    refused: a run would skip every change until then.

    Raises:
        InvalidStateError: If the shape or a `files` bookmark is wrong.
    """
    if not isinstance(state, dict):
        raise InvalidStateError(_problem("it is not a JSON object"))
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict):
        raise InvalidStateError(_problem("`bookmarks` is not an object"))
    for stream, bookmark in bookmarks.items():
        if not isinstance(bookmark, dict):
            what = f"`bookmarks.{stream}` is not an object"
            raise InvalidStateError(_problem(what))
    files = bookmarks.get("files", {})
    _check_bookmark(files, "bookmarks.files", now)
    if not isinstance(files.get("progress_markers", {}), dict):
        what = "`bookmarks.files.progress_markers` is not an object"
        raise InvalidStateError(_problem(what))
    if (checkpoint := files.get(CHECKPOINT)) is not None:
        _check_checkpoint(checkpoint, f"bookmarks.files.{CHECKPOINT}")
    folder = files.get(BATCH_FOLDER)
    if folder is not None and not (
        isinstance(folder, str) and RUN_FOLDER.fullmatch(folder)
    ):
        what = f"`bookmarks.files.{BATCH_FOLDER}` {folder!r} is not a run's folder name"
        raise InvalidStateError(_problem(what))


def _check_checkpoint(checkpoint: object, where: str) -> None:
    fields = _CHECKPOINT_TYPES
    if not isinstance(checkpoint, dict) or checkpoint.keys() != fields.keys():
        what = f"`{where}` is not an object of {', '.join(fields)}"
        raise InvalidStateError(_problem(what))
    for key, value in checkpoint.items():
        if type(value) not in fields[key] or not _usable(key, value):
            what = f"`{where}.{key}` is {value!r}"
            raise InvalidStateError(_problem(what))


def _usable(key: str, value: object) -> bool:
    """Whether a checkpoint value of the right type means something."""
    if key in {"offset", "page"}:
        return t.cast("int", value) >= 1
    if key in {"started", "since", "seen"} and isinstance(value, str):
        try:
            parse_instant(value)
        except ValueError:
            return False
    return value != ""


def _check_bookmark(bookmark: dict[str, t.Any], where: str, now: datetime) -> None:
    key = bookmark.get("replication_key")
    if key not in {None, "modified_at"}:
        what = f"`{where}.replication_key` is {key!r}, not 'modified_at'"
        raise InvalidStateError(_problem(what))
    value = bookmark.get("replication_key_value")
    if value is None:
        return
    try:
        moment = parse_instant(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None:
        what = f"`{where}.replication_key_value` {value!r} is not an ISO 8601 date-time"
        raise InvalidStateError(_problem(what))
    if moment > now + CLOCK_SKEW:
        what = (
            f"`{where}.replication_key_value` {value!r} is later than now "
            f"({format_instant(now)}): a run would skip every change until then"
        )
        raise InvalidStateError(_problem(what))
    if moment > now:
        logger.warning(
            "The state's bookmark for files, %s, is a little later than now "
            "(clock skew?): taken as %s",
            value,
            format_instant(now),
        )
        bookmark["replication_key_value"] = format_instant(now)


def _problem(what: str) -> str:
    return _advice(f"Invalid state: {what}")


def _advice(problem: str) -> str:
    return (
        f"{problem}. Fix it, or drop it to sync from the start "
        "(`meltano run --full-refresh`, or no --state)."
    )
