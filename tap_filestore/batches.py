"""BATCH files: JSON lines, gzipped or not, each complete before it is announced."""

from __future__ import annotations

import gzip
import itertools
import re
import typing as t
import uuid
from contextlib import nullcontext, suppress
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime

#: Formats and compressions the tap writes.
FORMATS = ("jsonl",)
COMPRESSIONS = ("gzip", "none")
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


def batch_config_problems(batch_config: dict[str, t.Any]) -> list[str]:
    """Return what is wrong with a `batch_config` setting, if anything."""
    encoding = batch_config.get("encoding") or {}
    storage = batch_config.get("storage") or {}
    choices = {
        "format": (encoding.get("format"), FORMATS),
        "compression": (encoding.get("compression", "none"), COMPRESSIONS),
    }
    problems = [
        f"batch_config.encoding.{key}: {value!r} is not supported; "
        f"use {' or '.join(allowed)}"
        for key, (value, allowed) in choices.items()
        if value not in allowed
    ]
    if urlsplit(str(storage.get("root", ""))).scheme not in {"", "file"}:
        problems.append(
            f"batch_config.storage.root: {storage.get('root')!r} is not a local "
            "folder; use file:///path/to/folder"
        )
    return problems


#: A run's own folder of batch files, and the files in it (nothing else is
#: ever deleted).
RUN_FOLDER = re.compile(r"[A-Za-z0-9_.-]+--[A-Za-z0-9_.-]+-\d{8}T\d{6}Z-[0-9a-f]{12}")
RUN_FILE = re.compile(r"[A-Za-z0-9_.-]*part-\d+\.json(\.gz)?(\.part)?")
#: A run folder nothing was written to for this long is a dead run's: its
#: files will never be loaded.
RETENTION_S = 24 * 3600


def run_folder_name(sync_name: str, now: datetime) -> str:
    """Return a new run's folder name: the sync's name, the time, a random part."""
    return f"{sync_name}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def file_sizes(batch_size: int) -> Iterator[int]:
    """Yield each batch file's number of records, doubling up to `batch_size`."""
    size = min(FIRST_FILE_RECORDS, batch_size)
    while size < batch_size:
        yield size
        size *= 2
    yield from itertools.repeat(batch_size)


def local_folder(root: str) -> Path:
    """Return the folder a `batch_config.storage.root` (a path or file:// URL) names."""
    return Path(unquote(urlsplit(root).path) or root).resolve()


def delete_loaded(root: Path, loaded: str | None, now: float) -> None:
    """Delete the run folder whose files are loaded, and dead runs' folders.

    A STATE that comes back names the folder of the run it closes: a target
    forwards it only once it has loaded every file announced before it. A
    folder untouched for `RETENTION_S` is a dead run's. Only run folders and
    the batch files in them are deleted, so a folder shared with other jobs
    keeps their files until their own state says they are loaded.
    """
    for folder in root.iterdir() if root.is_dir() else ():
        if not folder.is_dir() or not RUN_FOLDER.fullmatch(folder.name):
            continue
        files = [f for f in folder.iterdir() if RUN_FILE.fullmatch(f.name)]
        newest = max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime)
        if folder.name == loaded or newest < now - RETENTION_S:
            for file in files:
                file.unlink(missing_ok=True)
            with suppress(OSError):  # something else is in it: keep it
                folder.rmdir()


class BatchFiles:
    """Writes chunks of records to files in one run's folder.

    A file is written under a `.part` name and renamed once complete, so a
    target never reads a half-written file; a write that fails removes it.
    """

    def __init__(self, folder: Path, prefix: str | None, compression: str) -> None:
        """Write into `folder` (made if missing), each file's name after `prefix`."""
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.gzip = compression == "gzip"
        suffix = ".json.gz" if self.gzip else ".json"
        self._names = (f"{prefix or ''}part-{n}{suffix}" for n in itertools.count(1))

    def write(
        self, records: Iterable[dict[str, t.Any]], extra: dict[str, t.Any]
    ) -> str:
        """Write one file of `records`, a few at a time; return its file:// URL.

        Each record's line also holds the fields of `extra`, which are added
        to the encoded lines, not to each record.
        """
        # A line is a record's object (never empty), and "}\n" only ends one.
        tail = b"," + _ENCODER.encode(extra)[1:] + b"\n"
        path = self.folder / next(self._names)
        part = path.with_name(path.name + ".part")
        records = iter(records)
        try:
            with part.open("wb") as out:
                packed = (
                    gzip.GzipFile(
                        fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0
                    )
                    if self.gzip
                    else nullcontext(out)
                )
                with packed as sink:
                    while group := list(itertools.islice(records, WRITE_GROUP)):
                        lines = _ENCODER.encode_lines(group)
                        sink.write(lines.replace(b"}\n", tail) if extra else lines)
            part.replace(path)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return path.as_uri()
