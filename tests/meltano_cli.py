"""Running the real `meltano` CLI on this repository's meltano.yml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.leaks import CHILD_OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
MELTANO = ROOT / ".venv" / "bin" / "meltano"
PLUGINS = ROOT / ".meltano"
SETUP_HINT = "run `bash scripts/setup` first (installs Meltano and its plugins)"


def unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where nothing may be skipped."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def require_plugin(kind: str, name: str) -> None:
    """Skip (or fail in CI) unless Meltano and the plugin are installed."""
    if not MELTANO.exists() or not (PLUGINS / kind / name / "venv").exists():
        unavailable(f"Meltano or {name} is not installed: {SETUP_HINT}")


def _project(system_db: Path) -> Path:
    """Return a copy of the project beside `system_db`, sharing the plugins' venvs.

    Meltano writes each run's config, catalog and state under `.meltano/run/`:
    two runs of one project at once (parallel tests) would overwrite each
    other's files. A copy per test keeps them apart.
    """
    project = system_db.parent / "meltano-project"
    if not project.exists():
        (project / ".meltano").mkdir(parents=True)
        (project / "meltano.yml").write_text((ROOT / "meltano.yml").read_text())
        (project / ".meltano" / "loaders").symlink_to(PLUGINS / "loaders")
        _link_extractor(project / ".meltano" / "extractors")
    return project


def _link_extractor(extractors: Path) -> None:
    """Let Meltano run the tap of the venv running the tests.

    That is the plugin venv `meltano install` made, except in the newest-SDK
    run of `scripts/test`: there Meltano must run the tap on that SDK.
    """
    running = Path(sys.prefix).resolve()
    if running == (ROOT / ".venv").resolve():
        extractors.symlink_to(PLUGINS / "extractors")
        return
    installed = PLUGINS / "extractors" / "tap-filestore" / "venv"
    # Meltano reinstalls a plugin whose venv lacks the fingerprint of its pip_url.
    fingerprint = installed / ".meltano_plugin_fingerprint"
    shutil.copyfile(fingerprint, running / fingerprint.name)
    (extractors / "tap-filestore").mkdir(parents=True)
    (extractors / "tap-filestore" / "venv").symlink_to(running)


def _environment(system_db: Path, env: dict[str, str] | None) -> dict[str, str]:
    return {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{system_db}",
        "MELTANO_ENVIRONMENT": "sandbox",
        **(env or {}),
    }


def meltano(
    *args: str, system_db: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `meltano ARGS` in the project with its own system database."""
    done = subprocess.run(
        [str(MELTANO), *args],
        cwd=_project(system_db),
        env=_environment(system_db, env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    CHILD_OUTPUTS.extend((done.stdout, done.stderr))
    return done


def spawn_meltano(
    *args: str, system_db: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `meltano ARGS` in a process group of its own, output discarded."""
    return subprocess.Popen(
        [str(MELTANO), *args],
        cwd=_project(system_db),
        env=_environment(system_db, env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
