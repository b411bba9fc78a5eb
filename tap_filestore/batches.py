"""BATCH files: JSON lines, gzipped or not, each complete before it is announced.

Everything below the batch root is reached through directory file
descriptors and never through a symbolic link: the tap writes only in the
run folder it made, and deletes only run folders it made (owned by the user
running it, 0700) and the batch files in them.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import logging
import os
import re
import stat
import typing as t
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec

from tap_filestore.errors import BatchWriteError, IncompleteBatchError
from tap_filestore.timestamps import format_instant

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

logger = logging.getLogger(__name__)

#: Formats and compressions the tap writes.
FORMATS = ("jsonl",)
COMPRESSIONS = ("gzip", "none")
#: The keys of `batch_config` the tap honours, at each level.
KEYS = {
    "batch_config": {"encoding", "storage", "batch_size"},
    "batch_config.encoding": {"format", "compression"},
    "batch_config.storage": {"root", "prefix", "params"},
}
#: gzip's fastest level: a third of the default level's time, files about 15% larger.
GZIP_LEVEL = 1
_ENCODER = msgspec.json.Encoder()
#: Records encoded at once: a file's records are never all in memory.
WRITE_GROUP = 1000
#: Records in a run's first batch file: the target loads a file only once it
#: is complete, so a small first file starts the loading early; the files
#: after it double up to `batch_size` (fewer, larger files cost the target's
#: database less: each is one merge into the whole table).
FIRST_FILE_RECORDS = 10_000
#: The longest prefix that leaves room in a file name (255 bytes on every
#: common file system) for the longest name the tap gives a file.
MAX_PREFIX_BYTES = 255 - len(f"part-{2**64}.json.gz.part")
#: Run folders and batch files are the running user's alone.
FOLDER_MODE = 0o700
FILE_MODE = 0o600
_OPEN_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def batch_config_problems(batch_config: object) -> list[str]:
    """Return what is wrong with a `batch_config` setting, if anything."""
    if not isinstance(batch_config, dict):
        return ["batch_config: is not an object"]
    if not batch_config:
        return []  # no BATCH files
    problems = [
        f"{where}.{key}: is not a setting; use {', '.join(sorted(KEYS[where]))}"
        for where, value in _levels(batch_config)
        for key in sorted(set(value) - KEYS[where])
    ]
    problems += [
        f"batch_config.{where}: is missing or not an object"
        for where in ("encoding", "storage")
        if not isinstance(batch_config.get(where), dict)
    ]
    encoding = batch_config.get("encoding") or {}
    storage = batch_config.get("storage") or {}
    if isinstance(encoding, dict):
        choices = {
            "format": (encoding.get("format"), FORMATS),
            "compression": (encoding.get("compression", "none"), COMPRESSIONS),
        }
        problems += [
            f"batch_config.encoding.{key}: {value!r} is not supported; "
            f"use {' or '.join(allowed)}"
            for key, (value, allowed) in choices.items()
            if value not in allowed
        ]
    if isinstance(storage, dict):
        problems += _storage_problems(storage)
    size = batch_config.get("batch_size", 1)
    if type(size) is not int or size < 1:
        problems.append(
            f"batch_config.batch_size: {size!r} is not a whole number of records "
            "of 1 or more"
        )
    return problems


def _levels(batch_config: dict[str, t.Any]) -> Iterator[tuple[str, dict[str, t.Any]]]:
    yield "batch_config", batch_config
    for key in ("encoding", "storage"):
        if isinstance(value := batch_config.get(key), dict):
            yield f"batch_config.{key}", value


def _storage_problems(storage: dict[str, t.Any]) -> list[str]:
    root, prefix = storage.get("root"), storage.get("prefix")
    problems = []
    if not isinstance(root, str) or not root.strip():
        problems.append("batch_config.storage.root: is missing; use a local folder")
    else:
        try:
            local_folder(root)
        except ValueError as exc:
            problems.append(f"batch_config.storage.root: {root!r} {exc}")
    if prefix is not None and (
        not isinstance(prefix, str)
        or "/" in prefix
        or "\\" in prefix
        or ".." in prefix
        or _unreadable(prefix)
    ):
        problems.append(
            f"batch_config.storage.prefix: {prefix!r} is not a plain file-name "
            "prefix (no /, \\, .., ?, or control characters)"
        )
    elif prefix and len(prefix.encode()) > MAX_PREFIX_BYTES:
        problems.append(
            f"batch_config.storage.prefix: {prefix[:20]!r}... is longer than "
            f"{MAX_PREFIX_BYTES} bytes: the file names would be too long"
        )
    if storage.get("params"):
        problems.append(
            "batch_config.storage.params: the tap writes to a local folder, "
            "which takes no parameters; leave it out"
        )
    return problems


def _unreadable(text: str) -> bool:
    """Whether the SDK's reader cannot open a path holding `text`.

    It takes a `?` for the start of a URL query; control characters are no
    one's file names, and a lone surrogate cannot go out in a BATCH message.
    """
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return "?" in text or any(ord(c) < 32 or ord(c) == 127 for c in text)


def local_folder(root: str) -> Path:
    """Return the absolute folder a `batch_config.storage.root` names.

    A `file://` URL (no host, or `localhost`) is decoded as a URL; anything
    else is a path, taken literally (`%` and `#` included).

    Raises:
        ValueError: Saying why it is not a local folder the tap can use.
    """
    parts = urlsplit(root)
    if len(parts.scheme) > 1:  # "C:" would be a drive, not a scheme
        if parts.scheme != "file":
            msg = "is not a local folder; use a path or file:///path/to/folder"
            raise ValueError(msg)
        if parts.netloc not in {"", "localhost"}:
            msg = (
                f"names the host {parts.netloc!r}: the tap writes only to this "
                "machine; use file:///path/to/folder (three slashes)"
            )
            raise ValueError(msg)
        if parts.query or parts.fragment or root.endswith(("?", "#")):
            msg = "has a ? or # in a URL; write it as a plain path"
            raise ValueError(msg)
        path = unquote(parts.path, errors="strict")
        if not path.startswith("/"):
            msg = "is not an absolute file:// URL; use file:///path/to/folder"
            raise ValueError(msg)
    else:
        path = root
    if not path.startswith("/"):
        try:
            path = os.path.join(os.getcwd(), path)  # noqa: PTH109, PTH118
        except OSError:
            msg = "is relative, and the current folder is gone; use an absolute path"
            raise ValueError(msg) from None
    if _unreadable(path):
        msg = "holds a ? or a control character, which batch file readers cannot open"
        raise ValueError(msg)
    return Path(os.path.normpath(path))


def file_sizes(batch_size: int) -> Iterator[int]:
    """Yield each batch file's number of records, doubling up to `batch_size`."""
    size = min(FIRST_FILE_RECORDS, batch_size)
    while size < batch_size:
        yield size
        size *= 2
    yield from itertools.repeat(batch_size)


#: What a run folder's name starts with: the tap's and the stream's names.
RUN_NAME = "tap-filestore--files"
#: A run's own folder of batch files, and the files in it.
RUN_FOLDER = re.compile(r"[A-Za-z0-9_.-]+--[A-Za-z0-9_.-]+-\d{8}T\d{6}Z-[0-9a-f]{12}")
RUN_FILE = re.compile(r".*part-\d+\.json(\.gz)?(\.part)?", re.DOTALL)
#: A run folder nothing was written to for this long is a dead run's: its
#: files will never be loaded.
RETENTION_S = 24 * 3600


def run_folder_name(sync_name: str, now: datetime) -> str:
    """Return a new run's folder name: the sync's name, the time, a random part."""
    return f"{sync_name}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def open_run(
    root: str,
    *,
    prefix: str | None,
    compression: str | None,
    loaded: str | None,
    now: float,
) -> RunFolder:
    """Delete the folder of the run `loaded` names, and dead runs'; make this run's.

    Raises:
        BatchWriteError: If the root or the run's folder cannot be made.
    """
    folder = BatchRoot(local_folder(root))
    try:
        folder.delete_loaded(loaded, now)
        name = run_folder_name(RUN_NAME, datetime.fromtimestamp(now, timezone.utc))
        return folder.new_run(name, prefix, compression or "none")
    finally:
        folder.close()


def write_batches(
    chunks: Iterable[Iterator[dict[str, t.Any]]],
    folder: RunFolder,
    extra: Callable[[], dict[str, t.Any]],
    emitted: Callable[[], int],
) -> Iterator[BatchFile]:
    """Write each chunk of records to a file of `folder`; yield it once complete.

    Every record a file is handed must be in it, or nothing about the file is
    announced; and the files must hold every record the sync emitted.

    Args:
        chunks: The records, a file's worth at a time.
        folder: The run's folder.
        extra: What each line of a file written now holds besides its record.
        emitted: How many records the sync emitted.

    Raises:
        IncompleteBatchError: If a file lacks a record it was handed, or the
            files lack one the sync emitted.
    """
    announced = 0
    try:
        for chunk in chunks:
            handed = _Tally(chunk)
            written = folder.write(handed, extra())
            _check_complete(written, handed)
            if written is not None:
                announced += written.records
                yield written
    finally:
        folder.close()
    if announced != (count := emitted()):
        msg = (
            f"files: {count} records were emitted but the batch files "
            f"announced hold {announced}: the sync stops before its final "
            "state. Report this as a bug; run again in RECORD mode "
            "(batch_config unset) meanwhile."
        )
        raise IncompleteBatchError(msg)


def record_metadata(
    version: int | None, sync_started_ms: int, now: float
) -> dict[str, t.Any]:
    """Return what a target adds to a RECORD's row, for a file written `now`.

    The record's version is the sync's table version; its extraction, its
    arrival and its batch are the file's writing.
    """
    written = format_instant(datetime.fromtimestamp(now, timezone.utc))
    return {
        "_sdc_extracted_at": written,
        "_sdc_received_at": written,
        "_sdc_batched_at": written,
        "_sdc_deleted_at": None,
        "_sdc_sequence": round(now * 1000),
        "_sdc_table_version": version,
        "_sdc_sync_started_at": sync_started_ms,
    }


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


@dataclass(frozen=True)
class BatchFile:
    """One complete batch file: its URL (as the SDK's reader opens it), its records."""

    url: str
    records: int


class BatchRoot:
    """The folder run folders are made in, open for one sync.

    The root itself may be reached through a symbolic link (the operator
    named it); nothing below it is.
    """

    def __init__(self, path: Path) -> None:
        """Open `path`, made (0700) if missing.

        Raises:
            BatchWriteError: If it cannot be made or opened as a folder.
        """
        self.path = path
        with _writing(path):
            missing = [p for p in (path, *path.parents) if not p.exists()]
            for folder in reversed(missing):
                with contextlib.suppress(FileExistsError):  # made meanwhile
                    folder.mkdir(mode=FOLDER_MODE)
                    folder.chmod(FOLDER_MODE)  # whatever the umask
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        _warn_if_shared(self.fd, self.path)

    def close(self) -> None:
        """Close the root's descriptor."""
        os.close(self.fd)

    def new_run(self, name: str, prefix: str | None, compression: str) -> RunFolder:
        """Make a run's folder, private to this user, and return it.

        Raises:
            BatchWriteError: If it cannot be made.
        """
        with _writing(self.path / name):
            os.mkdir(name, FOLDER_MODE, dir_fd=self.fd)
            fd = os.open(name, _OPEN_FOLDER, dir_fd=self.fd)
            os.fchmod(fd, FOLDER_MODE)  # whatever the umask
        return RunFolder(fd, self.path / name, prefix, compression)

    def delete_loaded(self, loaded: str | None, now: float) -> None:
        """Delete the run folder whose files are loaded, and dead runs' folders.

        A STATE that comes back names the folder of the run it closes: a target
        forwards it only once it has loaded every file announced before it. A
        folder untouched for `RETENTION_S` is a dead run's. Only folders this
        tap made (its user's, 0700, not a link) and the batch files in them
        are deleted: another job's files stay until its own state comes back.
        """
        try:
            names = [
                e.name for e in os.scandir(self.fd) if RUN_FOLDER.fullmatch(e.name)
            ]
        except OSError:
            return
        for name in names:
            deleted = self._delete_run(name, loaded, now)
            if name == loaded and not deleted:
                logger.warning(
                    "The batch folder %s, which the state names, was not made "
                    "by this tap as this user (a link, another owner, or not "
                    "0700): left alone",
                    self.path / name,
                )

    def _delete_run(self, name: str, loaded: str | None, now: float) -> bool:
        """Delete one run folder if it is this tap's and loaded or dead.

        Returns:
            Whether the folder is this tap's (deleted or not yet due).
        """
        try:
            fd = os.open(name, _OPEN_FOLDER, dir_fd=self.fd)
        except OSError:  # a link, or not a folder
            return False
        try:
            if not _ours(os.fstat(fd), FOLDER_MODE):
                return False
            files = {
                entry.name: info
                for entry in os.scandir(fd)
                if RUN_FILE.fullmatch(entry.name)
                and stat.S_ISREG((info := entry.stat(follow_symlinks=False)).st_mode)
                and _ours(info, FILE_MODE)
            }
            times = [info.st_mtime for info in files.values()]
            newest = max(times, default=os.fstat(fd).st_mtime)
            if name != loaded and newest >= now - RETENTION_S:
                return True
            for file in files:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file, dir_fd=fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):  # something else is in it: keep it
            os.rmdir(name, dir_fd=self.fd)
        return True


def _ours(info: os.stat_result, mode: int) -> bool:
    """Whether a file or folder is the running user's, with the tap's mode."""
    return info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == mode


def _warn_if_shared(fd: int, path: Path) -> None:
    """Warn when another user owns the root or may rename what is in it."""
    info = os.fstat(fd)
    others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    sticky = info.st_mode & stat.S_ISVTX
    if info.st_uid not in {os.geteuid(), 0} or (others_write and not sticky):
        logger.warning(
            "The batch root %s is owned by, or writable for, other users: they "
            "may move or delete batch files before they are loaded (never read "
            "them: run folders are 0700). Use a folder only this user can write.",
            path,
        )


class RunFolder:
    """One run's folder of batch files, written through its descriptor.

    A file is written under a `.part` name and renamed once complete, so a
    target never reads a half-written file; a write that fails removes it.
    """

    def __init__(
        self, fd: int, path: Path, prefix: str | None, compression: str
    ) -> None:
        """Write into the open folder `fd` (at `path`), each name after `prefix`."""
        self.fd, self.path = fd, path
        self.gzip = compression == "gzip"
        suffix = ".json.gz" if self.gzip else ".json"
        self._names = (f"{prefix or ''}part-{n}{suffix}" for n in itertools.count(1))

    def close(self) -> None:
        """Close the folder's descriptor."""
        os.close(self.fd)

    def write(
        self, records: Iterable[dict[str, t.Any]], extra: dict[str, t.Any]
    ) -> BatchFile | None:
        """Write one file of `records`, a few at a time; None if there were none.

        Each record's line also holds the fields of `extra`, which are added
        to the encoded lines, not to each record.

        Raises:
            BatchWriteError: If the file cannot be written (nothing is left).
        """
        # A line is a record's object (never empty), and "}\n" only ends one.
        tail = b"," + _ENCODER.encode(extra)[1:] + b"\n"
        name = next(self._names)
        part = f"{name}.part"
        where = self.path / part
        with _writing(where):
            fd = os.open(part, _CREATE_FILE, FILE_MODE, dir_fd=self.fd)
            os.fchmod(fd, FILE_MODE)  # whatever the umask
        out = os.fdopen(fd, "wb")
        sink = _packed(out, gzipped=self.gzip)
        lines = 0
        try:
            # The records' own failures (the API's) pass through unchanged.
            while group := list(itertools.islice(records, WRITE_GROUP)):
                encoded = _ENCODER.encode_lines(group)
                lines += encoded.count(b"\n")
                with _writing(where):
                    sink.write(encoded.replace(b"}\n", tail) if extra else encoded)
            with _writing(where):
                sink.close()
                out.close()
                if lines:
                    os.replace(part, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            for stream in (sink, out):
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
            with contextlib.suppress(OSError):
                os.unlink(part, dir_fd=self.fd)
            raise
        if not lines:
            with _writing(where):
                os.unlink(part, dir_fd=self.fd)
            return None
        # Not percent-encoded: the SDK's reader opens the URL's text as a path.
        return BatchFile(f"file://{self.path / name}", lines)


def _packed(out: t.BinaryIO, *, gzipped: bool) -> t.BinaryIO:
    """Return what a file's lines are written to: `out`, or gzip around it."""
    if gzipped:
        return t.cast(
            "t.BinaryIO",
            gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0),
        )
    return out


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failure to write at `path` into one line naming it and the cause."""
    try:
        yield
    except OSError as exc:
        cause = exc.strerror or str(exc)
        msg = (
            f"Cannot write batch files at {path}: {cause}. Give "
            "batch_config.storage.root a folder this user can write, with room "
            "for the files."
        )
        raise BatchWriteError(msg) from None
