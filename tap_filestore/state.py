"""The input state, checked before any request is sent."""

from __future__ import annotations

import dataclasses
import json
import logging
import typing as t
from datetime import datetime, timezone
from pathlib import Path, PurePath

from tap_filestore.batches import RUN_FOLDER
from tap_filestore.errors import InvalidStateError
from tap_filestore.timestamps import parse_instant

logger = logging.getLogger(__name__)

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
    #: Whether files were deleted while the sync paged (the bookmark stays).
    shrank: bool

    @classmethod
    def of(cls, stream_state: dict[str, t.Any]) -> Checkpoint | None:
        """Return the checkpoint a (checked) stream state holds, if any."""
        value = stream_state.get(CHECKPOINT)
        return None if value is None else cls(**value)

    def write(self, stream_state: dict[str, t.Any]) -> None:
        """Put this checkpoint in the stream state."""
        stream_state[CHECKPOINT] = dataclasses.asdict(self)


#: The types each checkpoint field may hold, as `Checkpoint` declares them.
_CHECKPOINT_TYPES: dict[str, tuple[type, ...]] = {
    name: t.get_args(hint) or (hint,)
    for name, hint in t.get_type_hints(Checkpoint).items()
}


def load_state(state: object) -> object:
    """Return the state a tap was given, read if it is a path, and checked.

    Raises:
        InvalidStateError: If the file cannot be read, or `check_state` fails.
    """
    if isinstance(state, (str, PurePath)):
        path = Path(state)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            msg = (
                f"Cannot read the state file {path}: {exc}. Pass a readable JSON file."
            )
            raise InvalidStateError(msg) from None
        state = parse_state(text, str(path))
    if state is not None:
        check_state(state)
    return state


def parse_state(text: str, source: str) -> object:
    """Parse the text of a state file (`check_state` checks what it holds).

    Raises:
        InvalidStateError: If it is not JSON.
    """
    try:
        return json.loads(text)
    except ValueError as exc:
        msg = f"The state file {source} is not JSON ({exc})"
        raise InvalidStateError(_advice(msg)) from None


def check_state(state: object) -> None:
    """Check that `state` is a Singer state whose bookmarks this tap can read.

    Bookmarks of other streams are left alone; a bookmark later than now gets a
    warning, since such a state skips every change until then.

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
    _check_bookmark(files, "bookmarks.files")
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


def _check_bookmark(bookmark: dict[str, t.Any], where: str) -> None:
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
    if moment > datetime.now(timezone.utc):
        logger.warning(
            "The state's bookmark for files, %s, is later than now: this sync "
            "skips every change made before then",
            value,
        )


def _problem(what: str) -> str:
    return _advice(f"Invalid state: {what}")


def _advice(problem: str) -> str:
    return (
        f"{problem}. Fix it, or drop it to sync from the start "
        "(`meltano run --full-refresh`, or no --state)."
    )
