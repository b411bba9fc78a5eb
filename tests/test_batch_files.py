"""BATCH files on disk: every record in an announced file, only the tap's own files
touched, private to its user, any path, and a failure to write in one line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.sandbox import Sandbox
from tests.conftest import error_lines, run_cli, state_at
from tests.test_batch import batch_config, read_batch, run

if TYPE_CHECKING:
    from collections.abc import Iterator

FILES = 2500
#: A run folder's name as the tap makes them, for forged and dead ones.
RUN_NAME = "tap-filestore--files-20260101T000000Z-0123456789ab"
TWO_DAYS_AGO = time.time() - 2 * 24 * 3600


@pytest.fixture
def api() -> Iterator[Sandbox]:
    with Sandbox(FILES) as sandbox:
        yield sandbox


def announced(messages: list[dict[str, Any]]) -> list[str]:
    return [u for m in messages if m["type"] == "BATCH" for u in m["manifest"]]


def age(*paths: Path) -> None:
    """Make files and folders look untouched for two days (links themselves)."""
    for path in paths:
        os.utime(path, (TWO_DAYS_AGO, TWO_DAYS_AGO), follow_symlinks=False)


def strangers_files(folder: Path) -> list[Path]:
    """Batch-named files, two days old, in a folder the tap's would look like."""
    folder.mkdir(parents=True, mode=0o700)
    files = [folder / n for n in ("part-1.json.gz", "part-2.json", "x-part-3.json")]
    for file in files:
        file.write_text("{}\n")
        file.chmod(0o600)
        age(file)
    age(folder)
    return files


# Item 1: batch_config checked before any request.


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"batch_size": 0}, "batch_config.batch_size"),
        ({"batch_size": -5}, "batch_config.batch_size"),
        ({"batch_size": "100"}, "batch_config.batch_size"),
        ({"batch_size": 1.5}, "batch_config.batch_size"),
        ({"batch_size": True}, "batch_config.batch_size"),
        ({"storage": None}, "batch_config.storage"),
        ({"encoding": None}, "batch_config.encoding"),
        ({"batch_sise": 10}, "batch_config.batch_sise"),
        ({"encoding": {"format": "jsonl", "level": 9}}, "batch_config.encoding.level"),
        ({"storage": {"root": "/tmp/x", "bucket": "b"}}, "batch_config.storage.bucket"),
        ({"storage": {"root": "/tmp/x", "params": {"a": 1}}}, "storage.params"),
        ({"storage": {"root": "file://somehost/tmp/x"}}, "batch_config.storage.root"),
        ({"storage": {"root": "file://tmp/data"}}, "batch_config.storage.root"),
        ({"storage": {"root": "http://example.com/x"}}, "batch_config.storage.root"),
        ({"storage": {"root": "file:///tmp/x?y=1"}}, "batch_config.storage.root"),
        ({"storage": {"root": "file:///tmp/x#y"}}, "batch_config.storage.root"),
        ({"storage": {"root": "/tmp/what?"}}, "batch_config.storage.root"),
        ({"storage": {"root": ""}}, "batch_config.storage.root"),
        ({"storage": {"root": "/tmp/x", "prefix": "../../escaped-"}}, "prefix"),
        ({"storage": {"root": "/tmp/x", "prefix": "/tmp/abs-"}}, "prefix"),
        ({"storage": {"root": "/tmp/x", "prefix": "sub/dir-"}}, "prefix"),
        ({"storage": {"root": "/tmp/x", "prefix": "why?-"}}, "prefix"),
        ({"storage": {"root": "/tmp/x", "prefix": "tab\t-"}}, "prefix"),
        ({"storage": {"root": "/tmp/x", "prefix": "\udcff-"}}, "prefix"),
        ({"storage": {"root": "/tmp/x\udcff"}}, "batch_config.storage.root"),
        ({"storage": {"root": "/tmp/x", "prefix": "p" * 240}}, "prefix"),
        ({"storage": {"root": "file:"}}, "batch_config.storage.root"),
        ({"storage": {"root": "file:relative/x"}}, "batch_config.storage.root"),
    ],
)
def test_a_batch_config_the_tap_cannot_honour_is_one_line_naming_the_key(
    api: Sandbox, tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    config = api.config(batch_config={**batch_config(tmp_path / "b"), **change})

    code, messages, stderr = run(config, tmp_path)

    assert code == 1
    (line,) = error_lines(stderr)
    assert says in line
    assert "Traceback" not in stderr
    assert messages == []
    assert api.requests == []
    assert not (tmp_path / "b").exists()


def test_an_empty_batch_config_means_record_messages(
    api: Sandbox, tmp_path: Path
) -> None:
    code, messages, stderr = run(api.config(batch_config={}), tmp_path)

    assert code == 0, stderr[-2000:]
    kinds = {m["type"] for m in messages}
    assert "BATCH" not in kinds
    assert sum(m["type"] == "RECORD" for m in messages) == FILES


# Item 2: nothing outside the tap's own files; nobody else reads them.


@pytest.mark.parametrize("named_by_state", [True, False])
def test_a_link_named_like_a_run_folder_never_gets_files_outside_deleted(
    api: Sandbox, tmp_path: Path, *, named_by_state: bool
) -> None:
    root = tmp_path / "batches"
    root.mkdir()
    outside = strangers_files(tmp_path / "elsewhere")
    (link := root / RUN_NAME).symlink_to(tmp_path / "elsewhere")
    age(link)
    state = state_at("2020-01-01T00:00:00+00:00")
    if named_by_state:
        state["bookmarks"]["files"]["batch_folder"] = RUN_NAME

    code, _, stderr = run(api.config(batch_config=batch_config(root)), tmp_path, state)

    assert code == 0, stderr[-2000:]
    assert all(file.exists() for file in outside)
    assert link.is_symlink()
    if named_by_state:
        assert "left alone" in stderr


def test_a_folder_another_user_made_is_left_alone_whatever_its_name(
    api: Sandbox, tmp_path: Path
) -> None:
    root = tmp_path / "batches"
    forged = strangers_files(root / RUN_NAME)
    for path in (*forged, root / RUN_NAME):
        os.chown(path, 101, 104, follow_symlinks=False)  # postgres, not us
    age(root / RUN_NAME)
    state = state_at("2020-01-01T00:00:00+00:00")
    state["bookmarks"]["files"]["batch_folder"] = RUN_NAME

    code, _, stderr = run(api.config(batch_config=batch_config(root)), tmp_path, state)

    assert code == 0, stderr[-2000:]
    assert all(file.exists() for file in forged)
    (said,) = [line for line in stderr.splitlines() if "left alone" in line]
    assert "| WARNING" in said


def test_a_link_inside_a_dead_run_folder_is_left_alone_and_not_followed(
    api: Sandbox, tmp_path: Path
) -> None:
    root = tmp_path / "batches"
    (dead := root / RUN_NAME).mkdir(parents=True, mode=0o700)
    (outside := tmp_path / "precious.json").write_text("keep\n")
    (dead / "part-1.json").symlink_to(outside)
    (dead / "part-2.json.gz").write_bytes(b"")
    (dead / "part-2.json.gz").chmod(0o600)
    age(dead / "part-1.json", dead / "part-2.json.gz", dead)

    code, _, stderr = run(api.config(batch_config=batch_config(root)), tmp_path)

    assert code == 0, stderr[-2000:]
    assert outside.read_text() == "keep\n"
    assert not (dead / "part-2.json.gz").exists()  # the dead run's own file
    assert (dead / "part-1.json").is_symlink()  # and the folder that holds it


@pytest.mark.parametrize("prefix", ["my export ", "données-", "100%-#1-"])
def test_every_allowed_prefix_is_written_announced_and_cleaned_up(
    api: Sandbox, tmp_path: Path, prefix: str
) -> None:
    root = tmp_path / "batches"
    config = api.config(
        batch_config={
            **batch_config(root),
            "storage": {"root": str(root), "prefix": prefix},
        }
    )

    code, first, stderr = run(config, tmp_path)

    assert code == 0, stderr[-2000:]
    urls = announced(first)
    assert urls
    assert all(
        Path(url.removeprefix("file://")).name.startswith(prefix) for url in urls
    )
    assert sum(len(read_batch(url)) for url in urls) == FILES
    code, second, stderr = run(config, tmp_path, first[-1]["value"])
    assert code == 0, stderr[-2000:]
    folder = first[-1]["value"]["bookmarks"]["files"]["batch_folder"]
    assert not (root / folder).exists()
    assert [p.name for p in root.iterdir()] == [
        second[-1]["value"]["bookmarks"]["files"]["batch_folder"]
    ]


def test_a_connection_test_leaves_no_batch_folder(api: Sandbox, tmp_path: Path) -> None:
    root = tmp_path / "batches"
    config = api.config(batch_config=batch_config(root))

    done = run_cli("--test", config=config, tmp_path=tmp_path)

    assert done.returncode == 0, done.stderr[-2000:]
    assert not root.exists()


def test_run_folders_and_batch_files_are_private_whatever_the_umask(
    api: Sandbox, tmp_path: Path
) -> None:
    root = tmp_path / "new" / "batches"

    done = run_cli(
        config=api.config(batch_config=batch_config(root)),
        tmp_path=tmp_path,
        wrapper=("sh", "-c", 'umask 000 && exec "$@"', "sh"),
    )

    assert done.returncode == 0, done.stderr[-2000:]
    for made in (root, root.parent):  # the tap made both
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    (folder,) = root.iterdir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list(folder.iterdir())
    assert files
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


@pytest.mark.parametrize("shared", ["another user's", "writable by all"])
def test_a_root_others_control_is_warned_about_in_one_line(
    api: Sandbox, tmp_path: Path, shared: str
) -> None:
    root = tmp_path / "batches"
    root.mkdir()
    if shared == "another user's":
        os.chown(root, 101, 104)
    else:
        root.chmod(0o777)

    code, _, stderr = run(api.config(batch_config=batch_config(root)), tmp_path)

    assert code == 0, stderr[-2000:]
    (said,) = [line for line in stderr.splitlines() if "other users" in line]
    assert "| WARNING" in said
    assert str(root) in said


# Item 3: every record in an announced file, checked by the sync.

#: Run the tap with a batch writer that loses records: the sync must notice.
FAULTY_WRITER = """
import sys
from tap_filestore import batches, streams
from tap_filestore.tap import TapFileStore

write = batches.RunFolder.write
fault = sys.argv.pop(1)

def faulty(self, records, extra):
    if fault == "dropped":
        # The second file loses its sixth record.
        self.files = getattr(self, "files", 0) + 1
        if self.files == 2:
            records = (r for i, r in enumerate(records) if i != 5)
    return write(self, records, extra)

if fault == "empty chunks":
    streams.file_sizes = lambda size: iter(lambda: 0, 1)
batches.RunFolder.write = faulty
TapFileStore.cli()
"""


@pytest.mark.parametrize("fault", ["dropped", "empty chunks"])
@pytest.mark.parametrize("first_sync", [True, False])
def test_a_record_missing_from_the_files_fails_the_sync_before_its_state_moves(
    api: Sandbox, tmp_path: Path, fault: str, *, first_sync: bool
) -> None:
    config = api.config(
        batch_config=batch_config(tmp_path / "batches"), batch_record_metadata=True
    )
    start = "2020-01-01T00:00:00+00:00"
    (tmp_path / "state.json").write_text(json.dumps(state_at(start)))
    state = [] if first_sync else ["--state", str(tmp_path / "state.json")]

    done = run_cli(
        *state, config=config, tmp_path=tmp_path, entry=("-c", FAULTY_WRITER, fault)
    )

    assert done.returncode == 1
    (line,) = error_lines(done.stderr)
    assert "batch file" in line
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [m["type"] for m in messages]
    assert "ACTIVATE_VERSION" not in kinds
    assert kinds.count("BATCH") == (1 if fault == "dropped" else 0)
    for message in messages:
        if message["type"] == "STATE":
            files = message["value"]["bookmarks"]["files"]
            assert files.get("replication_key_value") == (None if first_sync else start)
    records = [r for url in announced(messages) for r in read_batch(url)]
    assert len(records) == len({r["file_id"] for r in records})


# Item 4: any path.


@pytest.mark.parametrize("as_url", [True, False])
def test_a_root_with_spaces_letters_and_signs_is_what_the_sdk_reader_opens(
    api: Sandbox, tmp_path: Path, *, as_url: bool
) -> None:
    root = tmp_path / "my files" / "données 100%41 #1"
    setting = root.as_uri() if as_url else str(root)
    config = api.config(
        batch_config={**batch_config(root), "storage": {"root": setting}}
    )

    code, messages, stderr = run(config, tmp_path)

    assert code == 0, stderr[-2000:]
    urls = announced(messages)
    assert all(url.startswith(f"file://{root}/") for url in urls)
    assert sum(len(read_batch(url)) for url in urls) == FILES  # as SDK targets read
    assert [p.name for p in (tmp_path / "my files").iterdir()] == [root.name]


# Item 5: a failure to write is one line.


@contextlib.contextmanager
def mounted_tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def assert_one_line_naming(stderr: str, folder: Path, cause: str) -> None:
    (line,) = error_lines(stderr)
    assert str(folder) in line
    assert cause in line
    assert "Traceback" not in stderr


def test_a_root_below_a_regular_file_is_one_line(api: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file")
    root = tmp_path / "plain" / "batches"

    code, messages, stderr = run(api.config(batch_config=batch_config(root)), tmp_path)

    assert code == 1
    assert_one_line_naming(stderr, root, "Not a directory")
    assert "BATCH" not in {m["type"] for m in messages}


def test_a_read_only_root_is_one_line(api: Sandbox, tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as root:
        code, messages, stderr = run(
            api.config(batch_config=batch_config(root)), tmp_path
        )

    assert code == 1
    assert_one_line_naming(stderr, root, "Read-only file system")
    assert "BATCH" not in {m["type"] for m in messages}


def test_a_full_disk_is_one_line_and_every_announced_file_is_complete(
    tmp_path: Path,
) -> None:
    with (
        Sandbox(30_000) as big,
        mounted_tmpfs(tmp_path / "small", "size=256k") as root,
    ):
        config = big.config(
            batch_config={**batch_config(root), "batch_size": 2000},
            batch_record_metadata=True,
        )
        code, messages, stderr = run(config, tmp_path, state_at("2000-01-01T00:00Z"))
        urls = announced(messages)
        counts = [len(read_batch(url)) for url in urls]
        written = [p.name for p in root.glob("*/*")]

    assert code == 1
    assert_one_line_naming(stderr, root, "No space left on device")
    assert urls  # some files fit before the disk filled
    assert all(count == 2000 for count in counts[1:])
    assert sorted(written) == sorted(Path(u).name for u in urls)  # no .part left
    bookmarks = {
        m["value"]["bookmarks"]["files"]["replication_key_value"]
        for m in messages
        if m["type"] == "STATE"
    }
    assert bookmarks == {"2000-01-01T00:00Z"}


def test_a_root_this_user_may_not_write_is_one_line(
    api: Sandbox, tmp_path: Path
) -> None:
    # Tests run as root, whom permissions do not stop: the tap runs as root
    # without its capabilities, into a folder another user owns.
    (root := tmp_path / "batches").mkdir(mode=0o755)
    os.chown(root, 101, 104)  # postgres
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot drop root's rights")

    done = run_cli(
        config=api.config(batch_config=batch_config(root)),
        tmp_path=tmp_path,
        wrapper=("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"),
    )

    assert done.returncode == 1, done.stderr[-2000:]
    assert "BATCH" not in done.stdout
    assert_one_line_naming(done.stderr, root, "Permission denied")
    assert list(root.iterdir()) == []
