"""The input state, checked before any request is sent."""

from __future__ import annotations

import json
import logging
import typing as t
from datetime import datetime, timezone
from pathlib import Path, PurePath

from tap_filestore.errors import InvalidStateError
from tap_filestore.timestamps import parse_instant

logger = logging.getLogger(__name__)


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
