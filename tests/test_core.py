"""The Meltano SDK's standard tap tests, against a live sandbox."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_filestore.sandbox import Sandbox
from tap_filestore.sandbox.server import CLIENT_ID, CLIENT_SECRET
from tap_filestore.tap import TapFileStore
from tests.net import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator


PORT = free_port()
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
