"""A sync that dies part way resumes after the last file its STATE covers (issue 20).

Each trial lets a first sync of 50,000 files die at 60% (its page requests fail,
or it is killed), changes the listing as the trial says, resumes from the last
STATE the sync wrote, then runs once more incrementally; the messages are loaded
into a table the way a target with `activate_version` and upserts on `file_id`
does, and the table must then be the source, exactly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tap_filestore import sync as sync_run
from tap_filestore.sandbox import Sandbox
from tap_filestore.tap import TapFileStore
from tests.conftest import FAST_RETRIES, expected_records, run_cli, sync
from tests.pipeline import Pipeline, live, source

if TYPE_CHECKING:
    from collections.abc import Callable
    from subprocess import Popen

    from tests.postgres import Cluster

FILES = 50_000
PAGE = 100
#: The first part dies when it asks for this page: 60% of the listing is out.
DIES_AT_PAGE = 300

Messages = list[dict[str, Any]]
Table = dict[str, tuple[dict[str, Any], int | None]]


def messages_of(stdout: str) -> Messages:
    return [json.loads(line) for line in stdout.splitlines()]


def last_state(messages: Messages) -> dict[str, Any]:
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    return dict(states[-1])


def load(table: Table, messages: Messages) -> Table:
    """Load messages as target-postgres does: upsert, then retire older versions."""
    for message in messages:
        if message["type"] == "RECORD":
            record = message["record"]
            table[record["file_id"]] = (record, message.get("version"))
        elif message["type"] == "ACTIVATE_VERSION":
            version = message["version"]
            for file_id, (_, row_version) in list(table.items()):
                if row_version is None or row_version < version:
                    del table[file_id]
    return table


def rows(table: Table) -> dict[str, dict[str, Any]]:
    return {file_id: record for file_id, (record, _) in table.items()}


def die_part_way(
    api: Sandbox, config: dict[str, Any], tmp_path: Path, endpoint: str = "files"
) -> Messages:
    """Run a sync whose requests fail from page `DIES_AT_PAGE` on (retries run out).

    With `endpoint="token"`, the token is revoked there and the token endpoint
    answers 503 from then on.
    """
    if endpoint == "token":

        def token_endpoint_down() -> None:
            api.revoke_tokens()
            api.inject("status", endpoint="token", status=503, times=10**6)

        api.inject("call", skip=DIES_AT_PAGE, action=token_endpoint_down)
    else:
        api.inject("status", status=500, skip=DIES_AT_PAGE, times=10**6)
    run = run_cli(config={**config, "max_retries": 0}, tmp_path=tmp_path)
    api.faults.clear()
    assert run.returncode == 1, run.stderr[-2000:]
    return messages_of(run.stdout)


def resume(
    api: Sandbox, config: dict[str, Any], tmp_path: Path, state: dict[str, Any]
) -> tuple[Messages, str, int]:
    """Run a sync from `state`; return its messages, stderr and page requests."""
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state))
    api.requests.clear()
    run = run_cli("--state", str(path), config=config, tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    return messages_of(run.stdout), run.stderr, len(api.page_requests())


def delete_before_the_checkpoint(api: Sandbox) -> None:
    api.dataset.delete([5, 1000, 29_000])


def insert_at_the_front(api: Sandbox) -> None:
    api.dataset.prepend(25)


def rename_before_and_after(api: Sandbox) -> None:
    api.dataset.touch([10, 20_000, 40_000, 49_999])


CHANGES: dict[str, Callable[[Sandbox], None]] = {
    "unchanged": lambda _: None,
    "deleted before the checkpoint": delete_before_the_checkpoint,
    "inserted at the front": insert_at_the_front,
    "renamed before and after": rename_before_and_after,
}


@pytest.mark.parametrize(
    ("change", "dies_at", "in_flight"),
    [
        *((change, "files", 1) for change in CHANGES),
        ("unchanged", "token", 1),
        ("unchanged", "files", 16),
    ],
)
def test_a_first_sync_that_dies_resumes_after_its_checkpoint_and_loses_nothing(
    tmp_path: Path, change: str, dies_at: str, in_flight: int
) -> None:
    with Sandbox(FILES) as api:
        # Pages fetched ahead need an API slow enough to pay for them.
        api.latency = 0.004 if in_flight > 1 else 0.0
        config = api.config(
            **{**FAST_RETRIES, "max_concurrent_requests": in_flight}, page_size=PAGE
        )
        first = die_part_way(api, config, tmp_path, dies_at)
        state = last_state(first)
        checkpoint = state["bookmarks"]["files"]["checkpoint"]
        out = sum(m["type"] == "RECORD" for m in first)
        # A STATE at least every 10,000 records, covering only what is out.
        assert out - sync_run.CHECKPOINT_EVERY_RECORDS - PAGE < checkpoint["offset"]
        assert checkpoint["offset"] <= out
        if in_flight == 1:
            assert checkpoint["offset"] == DIES_AT_PAGE * PAGE  # the last page out
        CHANGES[change](api)

        second, stderr, pages = resume(api, config, tmp_path, state)

        left = math.ceil((len(api.dataset) - checkpoint["offset"]) / PAGE)
        assert pages <= left + 2  # the probe, and a page moved by the change
        assert "resuming the sync of" in stderr
        assert "not resumable" not in stderr
        (version,) = {m["version"] for m in first + second if m["type"] == "RECORD"}
        assert version == checkpoint["version"]
        final = last_state(second)["bookmarks"]["files"]
        assert "checkpoint" not in final
        assert "progress_markers" not in final
        activated = [m["version"] for m in second if m["type"] == "ACTIVATE_VERSION"]
        if change in {"deleted before the checkpoint", "inserted at the front"}:
            # Later files moved: the first part may have missed some (moved
            # down), or its version lacks some (added ahead), so nothing is
            # retired and the next sync reads everything again.
            assert activated == []
            assert "replication_key_value" not in final
        else:
            assert activated == [version]
        table = load(load({}, first), second)
        if change == "unchanged":
            assert rows(table) == expected_records(api)

        third, _, _ = resume(api, config, tmp_path, last_state(second))

        assert rows(load(table, third)) == expected_records(api)


def test_a_resumed_first_syncs_version_retires_exactly_the_files_gone_from_the_api(
    tmp_path: Path,
) -> None:
    with Sandbox(FILES) as api:
        config = api.config(**FAST_RETRIES, page_size=PAGE)
        table = load({}, sync(config).messages)  # an earlier full sync
        gone = set(api.dataset.delete([3, 12_345]))  # before the first part
        first = die_part_way(api, config, tmp_path)
        gone |= set(api.dataset.delete([41_000, 49_000]))  # after the checkpoint

        second, _, _ = resume(api, config, tmp_path, last_state(first))

        load(table, first + second)
        assert gone.isdisjoint(table)
        assert rows(table) == expected_records(api)


def test_a_checkpoint_whose_file_is_gone_starts_the_sync_again_with_a_warning(
    tmp_path: Path,
) -> None:
    with Sandbox(FILES) as api:
        config = api.config(**FAST_RETRIES, page_size=PAGE)
        first = die_part_way(api, config, tmp_path)
        state = last_state(first)
        api.dataset.delete([state["bookmarks"]["files"]["checkpoint"]["offset"] - 1])

        second, stderr, pages = resume(api, config, tmp_path, state)

        (warning,) = [line for line in stderr.splitlines() if "WARNING" in line]
        assert "cannot resume the sync of" in warning
        assert "starting that sync again from offset 0" in warning
        assert pages == 1 + FILES // PAGE
        assert rows(load(load({}, first), second)) == expected_records(api)


def test_a_killed_sync_resumes_from_its_last_state(tmp_path: Path) -> None:
    with Sandbox(FILES) as api:
        config = api.config(**FAST_RETRIES, page_size=PAGE)
        (tmp_path / "config.json").write_text(json.dumps(config))
        out = tmp_path / "out.jsonl"
        with out.open("wb") as stdout:
            child = subprocess.Popen(
                [sys.executable, "-m", "tap_filestore", "--config", "config.json"],
                cwd=tmp_path,
                stdout=stdout,
                stderr=subprocess.DEVNULL,
            )
            api.inject(
                "call",
                skip=DIES_AT_PAGE,
                action=lambda: os.kill(child.pid, signal.SIGKILL),
            )
            assert child.wait(timeout=120) == -signal.SIGKILL
        first = messages_of(out.read_text())

        second, _, pages = resume(api, config, tmp_path, last_state(first))

        assert pages <= FILES // PAGE - DIES_AT_PAGE + 2
        assert rows(load(load({}, first), second)) == expected_records(api)


def test_a_batch_sync_resumes_after_its_last_announced_file(tmp_path: Path) -> None:
    def loaded(messages: Messages) -> list[dict[str, Any]]:
        """What a target loads from the BATCH messages, as it receives them."""
        return [
            json.loads(line)
            for m in messages
            if m["type"] == "BATCH"
            for url in m["manifest"]
            for line in Path(urlsplit(url).path).read_text().splitlines()
        ]

    with Sandbox(FILES) as api:
        batch_config = {
            "encoding": {"format": "jsonl", "compression": "none"},
            "storage": {"root": (tmp_path / "batches").as_uri()},
            "batch_size": 7_000,
        }
        config = api.config(**FAST_RETRIES, page_size=PAGE, batch_config=batch_config)
        first = die_part_way(api, config, tmp_path)
        state = last_state(first)
        # Four files of 7,000 records were announced when page 300 failed.
        assert state["bookmarks"]["files"]["checkpoint"]["offset"] <= 28_000
        rows = loaded(first)

        second, _, pages = resume(api, config, tmp_path, state)

        assert pages <= FILES // PAGE - 280 + 2
        rows += loaded(second)
        assert {r["file_id"] for r in rows} == set(expected_records(api))
        # The first part's files are loaded (its STATE came back): deleted.
        (folder,) = (tmp_path / "batches").iterdir()
        assert folder.name == last_state(second)["bookmarks"]["files"]["batch_folder"]


def test_state_goes_out_with_checkpoints_every_minute_covering_only_what_is_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class LeapingClock:
        """A clock on which every look takes 20 s."""

        now = 0.0

        def time(self) -> float:
            return time.time() + self.now

        def monotonic(self) -> float:
            self.now += 20.0
            return self.now

        def sleep(self, seconds: float) -> None:
            self.now += seconds

    monkeypatch.setattr(TapFileStore, "clock", LeapingClock())
    with Sandbox(2_500) as api:
        result = sync(api.config(**FAST_RETRIES, page_size=PAGE))

    records = 0
    offsets = []
    for message in result.messages:
        records += message["type"] == "RECORD"
        checkpoint = message.get("value", {}).get("bookmarks", {}).get("files", {})
        if "checkpoint" in checkpoint:
            offsets.append(checkpoint["checkpoint"]["offset"])
            assert checkpoint["checkpoint"]["offset"] <= records
    # Far fewer than 10,000 records, yet a STATE after (nearly) every page.
    assert len(offsets) >= 2_500 // PAGE - 2
    assert offsets == sorted(offsets)
    assert sync_run.CHECKPOINT_EVERY_S == 60.0


def terminate_the_tap_of(run: Popen[bytes]) -> None:
    """Send SIGTERM to the tap `meltano run` started (its process group's)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            group = os.getpgid(int(proc.name))
        except (OSError, ValueError):
            continue
        if group == run.pid and b"bin/tap-filestore" in cmdline:
            os.kill(int(proc.name), signal.SIGTERM)


@pytest.mark.parametrize(
    ("death", "mode"),
    [
        ("retries run out", "records"),
        ("SIGTERM", "records"),
        ("SIGTERM", "batch"),
        ("retries run out", "batch"),
    ],
)
def test_meltano_run_whose_tap_dies_part_way_resumes_from_the_state_meltano_kept(
    cluster: Cluster, tmp_path: Path, death: str, mode: str
) -> None:
    database = f"resume_{death.split(maxsplit=1)[0].lower()}_{mode}"
    cluster.create_database(database, "UTC")
    # As shipped, BATCH files of up to 100,000 records: files of 7,000 here, so
    # that a STATE comes before the tap dies at 30,000.
    env = {"TAP_FILESTORE_MAX_RETRIES": "0"}
    if mode == "batch":
        env["TAP_FILESTORE_BATCH_CONFIG"] = json.dumps(
            {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": str(tmp_path / "batches")},
                "batch_size": 7_000,
            }
        )
    extractor = "tap-filestore" if mode == "batch" else "tap-filestore--records"
    with Sandbox(FILES) as api:
        pipeline = Pipeline(
            cluster, api, database, tmp_path / "meltano.db", env, extractor
        )
        if death == "SIGTERM":
            run: list[Popen[bytes]] = []
            api.inject(
                "call", skip=DIES_AT_PAGE, action=lambda: terminate_the_tap_of(run[0])
            )
            run.append(pipeline.start())
            assert run[0].wait(timeout=300) != 0
        else:
            api.inject("status", status=500, skip=DIES_AT_PAGE, times=10**6)
            assert pipeline.run().returncode != 0
        api.faults.clear()
        # The target confirms the last STATE it loaded when the tap's output
        # ends; Meltano keeps it for the next run.
        kept = pipeline.state()["singer_state"]["bookmarks"]["files"]["checkpoint"]
        api.requests.clear()

        done = pipeline.run_ok()

        assert "resuming the sync of" in done.stderr
        pages = len(api.page_requests())
        assert pages <= math.ceil((FILES - kept["offset"]) / PAGE) + 2
        assert live(pipeline.rows()) == source(api)
        final = pipeline.state()["singer_state"]["bookmarks"]["files"]
        assert "checkpoint" not in final
