"""The Hub-style plugin definition a user's own Meltano project adds the tap from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "plugin_definition.py"
(DEFINITION,) = (ROOT / "hub" / "extractors" / "tap-filestore").glob("*.yml")


def loaded() -> dict[str, Any]:
    return dict(yaml.safe_load(DEFINITION.read_text(encoding="utf-8")))


def flattened(properties: dict[str, Any], prefix: str = "") -> set[str]:
    names = set()
    for name, schema in properties.items():
        nested = schema.get("properties")
        if nested and name not in {"stream_maps", "stream_map_config", "faker_config"}:
            names |= flattened(nested, f"{prefix}{name}.")
        else:
            names.add(f"{prefix}{name}")
    return names


def test_the_definition_is_what_the_settings_schema_generates_today() -> None:
    # Fails when a setting changes without `scripts/plugin_definition.py` run.
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_the_definition_declares_every_setting_as_the_hub_does(tmp_path: Path) -> None:
    about = json.loads(run_cli("--about", "--format", "json", tmp_path=tmp_path).stdout)
    definition = loaded()
    settings = {s["name"]: s for s in definition["settings"]}

    for key in ("name", "namespace", "variant", "label", "description", "repo"):
        assert definition[key], key
    assert settings.keys() == flattened(about["settings"]["properties"])
    assert "batch_config.encoding.format" in settings
    assert all(s["label"] and s["description"] for s in settings.values())
    assert settings["client_secret"]["kind"] == "password"
    assert settings["client_secret"]["sensitive"] is True
    # Only the user knows whether their loader reads BATCH files.
    assert not [
        s for s in settings.values() if "batch_config" in s["name"] and "value" in s
    ]
    assert sorted(definition["capabilities"]) == sorted(about["capabilities"])
    assert definition["settings_group_validation"] == [["client_id", "client_secret"]]
    # A release, never this checkout nor a package name nobody published.
    assert definition["pip_url"].startswith("git+https://")
    assert "-e" not in definition["pip_url"].split()
    assert definition["supported_python_versions"] == ["3.11"]


def test_meltano_yml_labels_and_describes_each_setting_as_the_definition_does() -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    declared = project["plugins"]["extractors"][0]["settings"]
    settings = {s["name"]: s for s in loaded()["settings"]}

    shared = [s for s in declared if s["name"] in settings]
    assert len(shared) == len(declared) - 1  # all but batch_config, kept whole
    for setting in shared:
        generated = settings[setting["name"]]
        for key in ("label", "description", "kind"):
            assert setting.get(key) == generated.get(key), (setting["name"], key)
