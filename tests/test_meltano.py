"""The Meltano plugin definition and the README demo's loader, through the real CLI."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
from pathlib import Path

import yaml

from tap_filestore.sandbox import Sandbox
from tests.conftest import run_cli
from tests.meltano_cli import PLUGINS, meltano, require_plugin
from tests.test_cli import SETTINGS


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


def test_meltano_yml_declares_the_capabilities_the_tap_reports(tmp_path: Path) -> None:
    about = json.loads(run_cli("--about", "--format", "json", tmp_path=tmp_path).stdout)
    project = yaml.safe_load((Path(__file__).parents[1] / "meltano.yml").read_text())
    extractor, records = project["plugins"]["extractors"]
    assert records["inherit_from"] == extractor["name"]

    assert sorted(extractor["capabilities"]) == sorted(about["capabilities"])
    declared = {setting["name"] for setting in extractor["settings"]}
    reported = set(about["settings"]["properties"])
    assert declared <= reported
    assert SETTINGS | {"stream_maps", "stream_map_config"} <= declared


def test_meltano_runs_the_tap_on_the_singer_sdk_under_test(tmp_path: Path) -> None:
    require_plugin("extractors", "tap-filestore")

    done = meltano(
        "invoke",
        "tap-filestore",
        "--about",
        "--format",
        "json",
        system_db=tmp_path / "m.db",
    )

    assert done.returncode == 0, done.stderr[-3000:]
    # The newest-SDK run of scripts/test tests Meltano on that SDK, not on the pin.
    sdk_version = json.loads(done.stdout[done.stdout.index("{") :])["sdk_version"]
    assert sdk_version == importlib.metadata.version("singer-sdk")


def test_a_shell_pipeline_into_target_csv_keeps_a_state_when_nothing_changed(
    tmp_path: Path,
) -> None:
    # The plain Singer way: the target's last state line is the next --state.
    require_plugin("loaders", "target-csv")
    target = PLUGINS / "loaders" / "target-csv" / "venv" / "bin" / "target-csv"
    (tmp_path / "target.json").write_text(json.dumps({"output_path": str(tmp_path)}))

    def run(state: str | None) -> str:
        args = ("--state", str(tmp_path / "state.json")) if state else ()
        if state:
            (tmp_path / "state.json").write_text(state)
        tap = run_cli(*args, config=api.config(), tmp_path=tmp_path)
        assert tap.returncode == 0, tap.stderr
        loaded = subprocess.run(
            [str(target), "--config", str(tmp_path / "target.json")],
            input=tap.stdout,
            capture_output=True,
            text=True,
            check=True,
        )
        states = loaded.stdout.splitlines()
        assert states, "the target printed no state"
        return states[-1]

    with Sandbox(250) as api:
        first = run(None)
        unchanged = run(first)  # nothing changed since the first run
        assert json.loads(unchanged) == json.loads(first)
        assert json.loads(run(unchanged)) == json.loads(first)
