"""Packaging: a release builds, installs alone and runs; no file has two owners."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_installed_file_is_owned_by_two_distributions() -> None:
    # `backoff` and `python-backoff` both install `backoff/`: depending on the
    # first quietly replaced the SDK's retry library with an older one.
    owners: dict[str, set[str]] = {}
    for distribution in importlib.metadata.distributions():
        for path in distribution.files or []:
            if path.suffix == ".py":
                owners.setdefault(str(path), set()).add(distribution.metadata["Name"])

    shared = {path: names for path, names in owners.items() if len(names) > 1}
    assert not shared, shared


def test_the_tap_brings_no_backoff_but_the_sdks() -> None:
    def names(distribution: str) -> set[str]:
        requires = importlib.metadata.requires(distribution) or []
        return {r.split(">")[0].split("=")[0].split(";")[0].strip() for r in requires}

    backoffs = {"backoff", "python-backoff"}
    assert names("tap-filestore") & backoffs <= names("singer-sdk") & backoffs
    assert names("singer-sdk") & backoffs  # the test still means something


def test_the_wheel_and_sdist_build_install_alone_and_run(tmp_path: Path) -> None:
    # What a release ships, installed where this checkout is not.
    uv = str(ROOT / ".venv" / "bin" / "uv")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [uv, "build", "--sdist", "--wheel", "--out-dir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("tap_filestore-*.whl")
    (sdist,) = dist.glob("tap_filestore-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(name.endswith("/CHANGELOG.md") for name in names)
    assert any(name.endswith("/tap_filestore/tap.py") for name in names)

    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True, cwd=tmp_path)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", python, str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    about = subprocess.run(
        [str(venv / "bin" / "tap-filestore"), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )

    assert about.returncode == 0, about.stderr[-3000:]
    info = json.loads(about.stdout)
    assert info["version"] == importlib.metadata.version("tap-filestore")
    assert "batch_record_metadata" in info["settings"]["properties"]
