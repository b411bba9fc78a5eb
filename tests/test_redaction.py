"""No secret in any output, whatever the API says (issue 9, class 2).

The sandbox's `echo` fault answers with the request's bearer token, the client
secret and base64(id:secret) in its body, reason phrase and a header. Every log
line (the tap's, the SDK's, urllib3's at DEBUG), every exception text and the
CLI's stderr must show them masked.
"""

from __future__ import annotations

import base64
import logging
import sys
from typing import TYPE_CHECKING, Any

import pytest
from singer_sdk.logging import StructuredFormatter

from tap_filestore.errors import FileStoreError
from tap_filestore.redact import MASK
from tap_filestore.tap import TapFileStore
from tests.conftest import error_lines, run_cli, sync
from tests.leaks import leaked

if TYPE_CHECKING:
    from pathlib import Path

    from tap_filestore.sandbox import Sandbox


def secrets_of(sandbox: Sandbox) -> set[str]:
    pair = f"{sandbox.client_id}:{sandbox.client_secret}".encode()
    return {
        sandbox.client_secret,
        base64.b64encode(pair).decode(),
        *sandbox.issued_tokens,
    }


# The page endpoint echoes the token: failing at once (400), after retries
# (503), and after the tap's own re-send on 401.
PAGE_ECHOES = [
    {"status": 400},
    {"status": 503, "times": 10},
    {"status": 401, "times": 10},
    {"status": 403, "skip": 1},
]
# The token endpoint echoes the secret: refused (401), or after retries (503).
TOKEN_ECHOES = [{"status": 401}, {"status": 503, "times": 10}]
ECHOES = [("files", echo) for echo in PAGE_ECHOES] + [
    ("token", echo) for echo in TOKEN_ECHOES
]


@pytest.mark.parametrize(("endpoint", "echo"), ECHOES)
@pytest.mark.usefixtures("waits")
def test_an_api_that_echoes_credentials_never_gets_them_into_logs_or_errors(
    sandbox: Sandbox,
    config: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    echo: dict[str, Any],
) -> None:
    sandbox.inject("echo", endpoint=endpoint, **echo)

    with caplog.at_level(logging.DEBUG), pytest.raises(FileStoreError) as failure:
        sync({**config, "page_size": 100})

    outputs = [caplog.text, str(failure.value)]
    assert leaked(secrets_of(sandbox), outputs) == set()
    assert MASK in caplog.text + str(failure.value), "the echo never reached a line"


@pytest.mark.parametrize(("endpoint", "echo"), ECHOES)
def test_the_cli_prints_one_masked_error_line_for_an_echoing_api(
    sandbox: Sandbox,
    config: dict[str, Any],
    tmp_path: Path,
    endpoint: str,
    echo: dict[str, Any],
) -> None:
    sandbox.inject("echo", endpoint=endpoint, **echo)

    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 1
    assert leaked(secrets_of(sandbox), [run.stdout, run.stderr]) == set()
    errors = error_lines(run.stderr)
    assert len(errors) == 1, errors


def test_a_traceback_quoting_a_secret_is_masked_for_every_formatter(
    config: dict[str, Any],
) -> None:
    TapFileStore(config=config, parse_env_config=False)  # registers the secret
    secret = config["client_secret"]
    try:
        raise RuntimeError(f"the API said: bad secret {secret}")  # noqa: TRY301
    except RuntimeError:
        record = logging.getLogger("tap-filestore").makeRecord(
            "tap-filestore", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )

    plain = logging.Formatter().format(record)
    structured = StructuredFormatter().format(record)

    assert MASK in plain
    assert secret not in plain
    assert secret not in structured
