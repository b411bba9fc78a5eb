"""SIGKILL `meltano run` at random moments: the next run must leave the table exact."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest

from tap_filestore.sandbox import Sandbox
from tests.pipeline import Pipeline, live, source

if TYPE_CHECKING:
    from pathlib import Path
    from subprocess import Popen

    from tests.postgres import Cluster

TRIALS = 20
SEED = 20261127
FILES = 6000


def kill_group(process: Popen[bytes]) -> None:
    """SIGKILL the run's whole process group: meltano, tap and target."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_and_kill(pipeline: Pipeline, mode: tuple[str, ...], kill_point: str) -> bool:
    """Start a run and SIGKILL it at `kill_point`; False if it ended first."""
    api = pipeline.sandbox
    run: list[Popen[bytes]] = []
    if kill_point.startswith("page "):
        pages_before = int(kill_point.split()[1])
        api.inject("call", skip=pages_before, action=lambda: kill_group(run[0]))
    # Meltano keeps a killed job marked running for 5 minutes: --force.
    run.append(pipeline.start("--force", *mode))
    if kill_point.startswith("after "):
        deadline = time.monotonic() + float(kill_point.split()[1].rstrip("s"))
        while time.monotonic() < deadline and run[0].poll() is None:
            time.sleep(0.02)
        kill_group(run[0])
    code = run[0].wait(timeout=300)
    api.faults.clear()
    return code == -signal.SIGKILL


#: Files each trial edits: enough that an incremental run, which asks the API
#: only for files modified since its bookmark (`modified_since_param`), reads
#: several pages, so that a kill can land in the middle of them.
EDITED = 400
#: Trials run in independent tests, so that test workers share them: as
#: shipped (BATCH files of up to 100,000 records), in RECORD mode, and in
#: BATCH mode with files of 500 records (fewer trials).
PARTS = [(0, "shipped", TRIALS // 2), (1, "records", TRIALS // 2), (2, "batch", 6)]


@pytest.mark.parametrize(("chunk", "mode_name", "trials"), PARTS)
def test_killed_runs_resume_with_nothing_lost_and_nothing_duplicated(
    cluster: Cluster, tmp_path: Path, chunk: int, mode_name: str, trials: int
) -> None:
    database = f"kill_resume_{chunk}"
    cluster.create_database(database, "UTC")
    rng = random.Random(SEED + chunk)  # noqa: S311
    outcomes = []
    extra_env = {}
    if mode_name == "batch":
        batch_config = {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": (tmp_path / "batches").as_uri()},
            "batch_size": 500,
        }
        extra_env["TAP_FILESTORE_BATCH_CONFIG"] = json.dumps(batch_config)
    with Sandbox(FILES, seed=SEED + chunk) as api:
        extractor = "tap-filestore--records" if mode_name == "records" else None
        pipeline = Pipeline(
            cluster,
            api,
            database,
            tmp_path / "meltano.db",
            extra_env,
            extractor or "tap-filestore",
        )
        started = time.monotonic()
        pipeline.run_ok()
        # Timed kills land within the duration of a run of the same kind,
        # whatever the machine and its load.
        full_run_s = time.monotonic() - started
        started = time.monotonic()
        pipeline.run_ok()
        incremental_run_s = time.monotonic() - started
        if mode_name == "batch":
            assert any((tmp_path / "batches").iterdir()), "no batch file written"

        for trial in range(trials):
            edited = api.dataset.touch(rng.sample(range(FILES), EDITED))
            added = api.dataset.add(rng.randint(0, 60))
            time.sleep(0.01)
            mode = rng.choice([(), ("--full-refresh",)])
            pages = FILES // 100 if mode else EDITED // 100
            run_s = full_run_s if mode else incremental_run_s
            kill_point = (
                f"page {rng.randrange(pages)}"
                if trial % 2 == 0
                else f"after {rng.uniform(0.2, 0.9) * run_s:.2f}s"
            )

            killed = run_and_kill(pipeline, mode, kill_point)
            pipeline.run_ok("--force")

            rows = pipeline.rows()
            ids = [r["file_id"] for r in rows]
            expected = source(api)
            outcome: dict[str, Any] = {
                "trial": trial,
                "mode": "full-refresh" if mode else "incremental",
                "kill": kill_point,
                "killed": killed,
                "edited": len(edited),
                "added": len(added),
                "rows": len(rows),
                "lost": len(set(expected) - set(ids)),
                "duplicates": len(ids) - len(set(ids)),
                "exact": live(rows) == expected,
            }
            outcomes.append(outcome)
            assert outcome["lost"] == 0, outcome
            assert outcome["duplicates"] == 0, outcome
            assert outcome["exact"], outcome

    print(f"\nkill-and-resume, {mode_name}: {len(outcomes)} trials")  # noqa: T201
    for outcome in outcomes:
        print(json.dumps(outcome))  # noqa: T201
    assert all(o["killed"] for o in outcomes if o["kill"].startswith("page"))
    assert sum(o["killed"] for o in outcomes) >= len(outcomes) * 3 // 4
