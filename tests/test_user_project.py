"""A user's own Meltano project adds the tap from its definition, as from the Hub.

The tap is installed from the wheel a release ships, not from this checkout, so
that a file missing from the package shows here.
"""

from __future__ import annotations

import csv
import os
import subprocess
from typing import TYPE_CHECKING

import yaml

from tap_filestore.sandbox import Sandbox
from tests.leaks import CHILD_OUTPUTS
from tests.meltano_cli import MELTANO, ROOT, require_plugin
from tests.pipeline import source

if TYPE_CHECKING:
    from pathlib import Path

FILES = 1000
#: A loader declared in full: the Hub is not reachable here.
USER_PROJECT = {
    "requires_meltano": ">=4.0",
    "project_id": "a-users-project",
    "default_environment": "dev",
    "send_anonymous_usage_stats": False,
    "environments": [{"name": "dev"}],
    # docs/production.md: plugins installed with their bytecode compiled.
    "env": {"UV_COMPILE_BYTECODE": "1"},
    "plugins": {
        "loaders": [
            {
                "name": "target-csv",
                "namespace": "target_csv",
                "pip_url": "meltanolabs-target-csv==0.5.0",
                "executable": "target-csv",
                "settings": [{"name": "output_path"}],
            }
        ]
    },
}


def run_meltano(
    project: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(MELTANO), *args],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    CHILD_OUTPUTS.extend((done.stdout, done.stderr))
    assert done.returncode == 0, f"meltano {' '.join(args)}: {done.stderr[-3000:]}"
    return done


def test_a_users_project_adds_the_tap_from_its_definition_and_loads_every_file(
    tmp_path: Path,
) -> None:
    require_plugin("loaders", "target-csv")  # Meltano is set up
    uv = str(ROOT / ".venv" / "bin" / "uv")
    built = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    (generated,) = (ROOT / "hub" / "extractors" / "tap-filestore").glob("*.yml")
    definition = yaml.safe_load(generated.read_text(encoding="utf-8"))
    definition["pip_url"] = str(wheel)  # the release, before it is published
    (tmp_path / "tap-filestore.yml").write_text(yaml.safe_dump(definition))
    project = tmp_path / "project"
    project.mkdir()
    (project / "meltano.yml").write_text(yaml.safe_dump(USER_PROJECT))
    env = {
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TARGET_CSV_OUTPUT_PATH": str(tmp_path / "out"),
    }

    run_meltano(
        project,
        env,
        "add",
        "--plugin-type",
        "extractor",
        "tap-filestore",
        "--from-ref",
        str(tmp_path / "tap-filestore.yml"),
    )
    run_meltano(project, env, "install")
    venv = project / ".meltano" / "extractors" / "tap-filestore" / "venv"
    assert list(venv.glob("lib/python*/site-packages/tap_filestore/__pycache__/*.pyc"))
    listed = run_meltano(project, env, "config", "list", "tap-filestore", "--all")
    for setting in definition["settings"]:
        assert f"{setting['name']} [env: " in listed.stdout, setting["name"]
    with Sandbox(FILES) as api:
        env |= {
            "TAP_FILESTORE_BASE_URL": api.base_url,
            "TAP_FILESTORE_CLIENT_ID": api.client_id,
            "TAP_FILESTORE_CLIENT_SECRET": api.client_secret,
        }
        run_meltano(project, env, "run", "tap-filestore", "target-csv")
        expected = source(api)

    with (tmp_path / "out" / "files.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == FILES
    assert {r["file_id"] for r in rows} == set(expected)
    # RECORD messages: the definition sets no batch_config.
    assert list(rows[0]) == ["file_id", "file_name", "created_at", "modified_at"]
    assert not (project / ".meltano" / "batches").exists()
