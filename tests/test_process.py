"""Importing, building or syncing the tap in-process leaves the process alone."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, logging, signal, sys

def snapshot():
    loggers = ["singer_sdk", "tap-filestore.files"]
    return {
        "factory": repr(logging.getLogRecordFactory()),
        "signals": [repr(signal.getsignal(s)) for s in (signal.SIGTERM, signal.SIGINT)],
        "excepthook": repr(sys.excepthook),
        "filters": {n: len(logging.getLogger(n).filters) for n in loggers},
    }

before = snapshot()
from tap_filestore.sandbox import Sandbox
from tap_filestore.tap import TapFileStore

with Sandbox(10) as api:
    TapFileStore(config=api.config(), parse_env_config=False).sync_all()
after = snapshot()
TapFileStore.get_singer_command()
cli = snapshot()
print(json.dumps([before, after, cli]))
"""


def test_import_construction_and_a_sync_leave_the_process_as_it_was() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    before, after, cli = json.loads(done.stdout.splitlines()[-1])

    assert after == before
    # The command line is what prepares the process.
    assert cli["factory"] != before["factory"]
    assert cli["excepthook"] != before["excepthook"]
    for name, count in cli["filters"].items():
        assert count > before["filters"][name], name
