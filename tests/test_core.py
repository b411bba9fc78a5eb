"""The Meltano SDK's standard tap tests, against a live sandbox."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, cast

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_filestore.sandbox import Sandbox
from tap_filestore.sandbox.server import CLIENT_ID, CLIENT_SECRET
from tap_filestore.tap import TapFileStore

if TYPE_CHECKING:
    from collections.abc import Iterator


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return cast("int", probe.getsockname()[1])


PORT = _free_port()
CONFIG = {
    "client_id": CLIENT_ID,
    "client_secret": CLIENT_SECRET,
    "base_url": f"http://127.0.0.1:{PORT}",
}


@pytest.fixture(scope="module", autouse=True)
def standard_sandbox() -> Iterator[Sandbox]:
    with Sandbox(350, port=PORT) as api:
        yield api


TestTapFileStore = get_tap_test_class(
    TapFileStore,
    config=CONFIG,
    parse_env_config=False,
    suite_config=SuiteConfig(max_records_limit=None),
)
