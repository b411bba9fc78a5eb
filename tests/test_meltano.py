"""The Meltano plugin definition and the README demo's loader, through the real CLI."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tap_filestore.sandbox import Sandbox
from tests.conftest import expected_records
from tests.meltano_cli import meltano, require_plugin
from tests.test_cli import SETTINGS

if TYPE_CHECKING:
    from pathlib import Path


def test_meltano_lists_every_setting_with_its_source(tmp_path: Path) -> None:
    require_plugin("extractors", "tap-filestore")

    listed = meltano(
        "config",
        "list",
        "tap-filestore",
        "--all",
        system_db=tmp_path / "m.db",
        env={"TAP_FILESTORE_PAGE_SIZE": "250"},
    )

    assert listed.returncode == 0, listed.stderr
    for setting in SETTINGS:
        assert f"{setting} [env: TAP_FILESTORE_{setting.upper()}]" in listed.stdout
    assert "current value: 250 (from the TAP_FILESTORE_PAGE_SIZE variable" in (
        listed.stdout
    )
    assert (
        "max_retries [env: TAP_FILESTORE_MAX_RETRIES] current value: 3 (default)"
        in (listed.stdout)
    )


def test_the_demo_loader_lands_every_file_in_jsonl(tmp_path: Path) -> None:
    require_plugin("loaders", "target-jsonl")

    with Sandbox(700) as api:
        done = meltano(
            "run",
            "--full-refresh",
            "tap-filestore",
            "target-jsonl",
            system_db=tmp_path / "m.db",
            env={
                "TAP_FILESTORE_BASE_URL": api.base_url,
                "TAP_FILESTORE_CLIENT_SECRET": api.client_secret,
                "TARGET_JSONL_DESTINATION_PATH": str(tmp_path),
            },
        )

        assert done.returncode == 0, done.stderr[-3000:]
        lines = (tmp_path / "files.jsonl").read_text().splitlines()
        landed = {r["file_id"]: r for r in map(json.loads, lines)}
        assert len(lines) == 700
        assert landed == expected_records(api)
