"""A deterministic, seeded set of files that the sandbox serves and mutates."""

from __future__ import annotations

import threading
import time
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DATASET_START = datetime(2023, 1, 1, tzinfo=timezone.utc)
DATASET_SPAN_US = 2 * 365 * 24 * 3600 * 1_000_000
MAX_EDIT_DELAY_US = 120 * 24 * 3600 * 1_000_000
NAME_STEMS = (
    "report",
    "données",
    "日本語のメモ",
    "Ωmega plan",
    "résumé",
    "emoji 😀 notes",
    "straße",
    "naïve budget",
    "Übersicht",
    "файл",
)
EXTENSIONS = (".pdf", ".txt", ".csv", ".png", ".docx")
FRACTIONAL_FORM = 2
MILLISECOND_FORM = 3
FORMS = 5
_MASK64 = (1 << 64) - 1


def _mix(seed: int, index: int) -> int:
    """Return a well-spread 64-bit hash of (seed, index) (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _next(form: int) -> int:
    """Return the form `modified_at` uses when `created_at` uses `form`."""
    return (form + 1) % FORMS


def now_us() -> int:
    """Return the current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_datetime(epoch_us: int) -> datetime:
    """Return an aware UTC datetime for a microsecond timestamp."""
    return EPOCH + timedelta(microseconds=epoch_us)


def quantize(epoch_us: int, form: int) -> int:
    """Drop the precision that `render_timestamp` in `form` would not show."""
    if form == FRACTIONAL_FORM:
        return epoch_us
    if form == MILLISECOND_FORM:
        return epoch_us - epoch_us % 1000
    return epoch_us - epoch_us % 1_000_000


def render_timestamp(epoch_us: int, form: int) -> str:
    """Render a timestamp in one of the ISO 8601 forms real APIs send."""
    moment = to_datetime(epoch_us)
    if form == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if form == 1:
        return moment.replace(microsecond=0).isoformat()
    if form == FRACTIONAL_FORM:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if form == MILLISECOND_FORM:
        return moment.replace(tzinfo=None).isoformat(timespec="milliseconds")
    return moment.astimezone(timezone(timedelta(hours=2))).isoformat()


@dataclass(frozen=True)
class FileVersion:
    """One file as the API holds it: instants in microseconds, None for null."""

    file_id: str
    file_name: str | None
    created_us: int | None
    modified_us: int | None
    form: int
    omit_modified: bool = False

    def to_api(self) -> dict[str, t.Any]:
        """Return the file as the API renders it."""
        body: dict[str, t.Any] = {
            "file_id": self.file_id,
            "file_name": self.file_name,
            "created_at": None
            if self.created_us is None
            else render_timestamp(self.created_us, self.form),
        }
        if not self.omit_modified:
            body["modified_at"] = (
                None
                if self.modified_us is None
                else render_timestamp(self.modified_us, _next(self.form))
            )
        return body


class Dataset:
    """Files 0..n-1 generated from a seed, plus edits, additions and deletions.

    The listing order is creation order, so `modified_at` is not sorted.
    """

    def __init__(self, size: int, seed: int = 42) -> None:
        """Create `size` files from `seed`."""
        self.seed = seed
        self._initial_size = size
        self._size = size
        self._step_us = DATASET_SPAN_US // max(size, 1)
        self._start_us = int((DATASET_START - EPOCH).total_seconds()) * 1_000_000
        self._overrides: dict[int, FileVersion] = {}
        self._deleted: set[int] = set()
        #: Files listed before every other (`prepend`), newest first.
        self._front: list[int] = []
        self._lock = threading.Lock()
        self.version = 0

    def __len__(self) -> int:
        """Return how many files exist now."""
        return self._size - len(self._deleted)

    def generated(self, index: int) -> FileVersion:
        """Return file `index` as first generated from the seed."""
        h = _mix(self.seed, index)
        created = self._start_us + index * self._step_us + h % self._step_us
        modified = created + (h >> 20) % MAX_EDIT_DELAY_US
        form = (h >> 12) % FORMS
        omit_modified = h % 211 == 0
        return FileVersion(
            file_id=f"fil_{h:016x}",
            file_name=None
            if h % 53 == 0
            else f"{NAME_STEMS[h % len(NAME_STEMS)]} {index}"
            f"{EXTENSIONS[(h >> 4) % len(EXTENSIONS)]}",
            created_us=None if h % 101 == 0 else quantize(created, form),
            modified_us=None
            if h % 97 == 0 or omit_modified
            else quantize(modified, _next(form)),
            form=form,
            omit_modified=omit_modified,
        )

    def file(self, index: int) -> FileVersion:
        """Return file `index` as it is now."""
        return self._overrides.get(index) or self.generated(index)

    def live_indexes(self) -> list[int] | range:
        """Return the indexes of existing files in listing order."""
        if not self._deleted and not self._front:
            return range(self._size)
        front = set(self._front)
        order = [*self._front, *(i for i in range(self._size) if i not in front)]
        return [i for i in order if i not in self._deleted]

    def files(self) -> list[FileVersion]:
        """Return every existing file, in listing order."""
        return [self.file(i) for i in self.live_indexes()]

    def current(self) -> list[dict[str, t.Any]]:
        """Return every existing file as the API renders it."""
        return [f.to_api() for f in self.files()]

    def touch(self, indexes: list[int], at_us: int | None = None) -> list[str]:
        """Modify files now (new name, new `modified_at`); return their ids."""
        at_us = now_us() if at_us is None else at_us
        with self._lock:
            for index in indexes:
                old = self.file(index)
                self._overrides[index] = FileVersion(
                    file_id=old.file_id,
                    file_name=f"{old.file_name or 'unnamed'} (edited)",
                    created_us=old.created_us,
                    modified_us=quantize(at_us, _next(old.form)),
                    form=old.form,
                )
            self.version += 1
        return [self.file(i).file_id for i in indexes]

    def prepend(self, count: int) -> list[str]:
        """Add `count` new files created now, listed first; return their ids."""
        ids = self.add(count)
        with self._lock:
            self._front[:0] = range(self._size - count, self._size)
            self.version += 1
        return ids

    def add(self, count: int) -> list[str]:
        """Append `count` new files created now; return their ids."""
        at_us = now_us()
        with self._lock:
            first = self._size
            for index in range(first, first + count):
                generated = self.generated(index)
                self._overrides[index] = FileVersion(
                    file_id=generated.file_id,
                    file_name=f"new file {index}.txt",
                    created_us=quantize(at_us, generated.form),
                    modified_us=quantize(at_us, _next(generated.form)),
                    form=generated.form,
                )
            self._size += count
            self.version += 1
        return [self.file(i).file_id for i in range(first, first + count)]

    def delete(self, indexes: list[int]) -> list[str]:
        """Delete files; return their ids."""
        with self._lock:
            self._deleted.update(indexes)
            self.version += 1
        return [self.file(i).file_id for i in indexes]
