"""Answers that could hurt the host: bombs and unverifiable certificates (issue 18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tap_filestore.sandbox.server import Sandbox, gzip_bomb
from tests.conftest import error_lines, run_cli
from tests.leaks import CHILD_OUTPUTS

if TYPE_CHECKING:
    from pathlib import Path

QUICK = {"backoff_factor": 0.01, "max_retries": 1}


def test_a_decompression_bomb_stops_at_the_ceiling_in_bounded_memory(
    tmp_path: Path,
) -> None:
    with Sandbox(250) as api:
        # About 1 MiB on the wire, 1 GiB once inflated.
        api.inject("gzip", content=gzip_bomb(2**30), skip=1)
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(api.config(**QUICK)))
        child = subprocess.Popen(
            [sys.executable, "-m", "tap_filestore", "--config", str(config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stderr is not None
        with child.stderr:
            stderr = child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)  # reaped here, with its usage
        child.returncode = os.waitstatus_to_exitcode(status)
        CHILD_OUTPUTS.append(stderr)

    assert child.returncode == 1
    errors = error_lines(stderr)
    assert len(errors) == 1, errors
    assert "GET /v1/files?offset=100&limit=100 is larger than 64 MiB" in errors[0]
    # Reading the whole bomb took 4.2 GB; the ceiling keeps it near idle.
    assert usage.ru_maxrss < 400 * 1024  # KiB on Linux


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
            *("-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-addext", "basicConstraints=critical,CA:TRUE"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def sync_over_tls(
    certificate: tuple[str, str], tmp_path: Path, ca_bundle: str
) -> tuple[subprocess.CompletedProcess[str], Sandbox]:
    """Run the tap against an https sandbox, trusting `ca_bundle` ("": none)."""
    with Sandbox(250, certificate=certificate) as api:
        run = run_cli(
            config=api.config(**QUICK),
            tmp_path=tmp_path,
            env={"REQUESTS_CA_BUNDLE": ca_bundle, "CURL_CA_BUNDLE": ""},
        )
    return run, api


def test_an_unverified_certificate_is_one_line_and_nothing_is_sent(
    tmp_path: Path, certificate: tuple[str, str]
) -> None:
    run, api = sync_over_tls(certificate, tmp_path, ca_bundle="")

    assert run.returncode == 1
    errors = error_lines(run.stderr)
    assert len(errors) == 1, errors
    host = api.base_url.removeprefix("https://")
    assert f"The TLS certificate of {host} failed verification" in errors[0]
    assert "certificate verify failed" in errors[0]
    assert "REQUESTS_CA_BUNDLE" in errors[0]
    assert "Traceback" not in run.stderr
    # One handshake, not retried, and no request (no secret) reached it.
    assert api.connections == 1
    assert api.requests == []


def test_a_private_ca_is_trusted_through_requests_ca_bundle(
    tmp_path: Path, certificate: tuple[str, str]
) -> None:
    run, _ = sync_over_tls(certificate, tmp_path, ca_bundle=certificate[0])

    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    ids = {m["record"]["file_id"] for m in records if m["type"] == "RECORD"}
    assert len(ids) == 250
