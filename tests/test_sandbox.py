"""The sandbox API itself: a faithful, deterministic stand-in for the real one."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import cast

import requests

from tap_filestore.sandbox import Dataset, Sandbox


def token(api: Sandbox) -> str:
    answer = requests.post(
        f"{api.base_url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": api.client_id,
            "client_secret": api.client_secret,
        },
        timeout=5,
    )
    answer.raise_for_status()
    return cast("str", answer.json()["access_token"])


def files(api: Sandbox, bearer: str, **params: str | int) -> requests.Response:
    return requests.get(
        f"{api.base_url}/v1/files",
        params=params,
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=5,
    )


def test_the_dataset_is_deterministic_per_seed_with_unique_ids() -> None:
    first, again, other = Dataset(5000, seed=7), Dataset(5000, seed=7), Dataset(5000)

    assert first.current() == again.current()
    assert first.current() != other.current()
    assert len({f["file_id"] for f in first.current()}) == 5000


def test_a_million_files_cost_nothing_until_served() -> None:
    huge = Dataset(1_000_000)

    assert len(huge) == 1_000_000
    assert huge.file(999_999).file_id.startswith("fil_")


def test_edits_additions_and_deletions_change_the_listing() -> None:
    data = Dataset(10)
    before = {f["file_id"]: f for f in data.current()}

    (touched,) = data.touch([2])
    added = data.add(2)
    (deleted,) = data.delete([5])

    after = {f["file_id"]: f for f in data.current()}
    assert len(after) == 11
    assert deleted not in after
    assert set(added) <= set(after)
    assert after[touched]["file_name"].endswith("(edited)")
    assert after[touched]["modified_at"] != before[touched]["modified_at"]


def test_pages_need_a_valid_token_and_tokens_expire() -> None:
    with Sandbox(10, token_ttl=1) as api:
        bearer = token(api)

        assert files(api, bearer).status_code == 200
        assert files(api, "forged").status_code == 401
        time.sleep(1.1)
        assert files(api, bearer).status_code == 401


def test_wrong_client_credentials_get_invalid_client() -> None:
    with Sandbox(1) as api:
        answer = requests.post(
            f"{api.base_url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "x",
                "client_secret": "y",
            },
            timeout=5,
        )

        assert answer.status_code == 401
        assert answer.json() == {"error": "invalid_client"}


def test_offset_limit_total_and_modified_since() -> None:
    with Sandbox(30) as api:
        bearer = token(api)

        page = files(api, bearer, offset=25, limit=10).json()
        assert len(page["files"]) == 5
        assert page["total"] == 30
        since = files(api, bearer, modified_since="2024-06-01T00:00:00Z").json()
        assert 0 < since["total"] < 30
        assert files(api, bearer, limit=0).status_code == 400
        assert files(api, bearer, offset="x").status_code == 400


def test_the_cli_prints_url_and_credentials_and_serves() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "tap_filestore.sandbox", "--port", "0", "--files", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None  # stdout=PIPE
        banner = server.stdout.readline() + server.stdout.readline()
        url = banner.split(" at ")[1].split()[0]
        assert "client_id=sandbox-client" in banner
        assert "client_secret=" in banner
        answer = requests.post(f"{url}/oauth/token", data={}, timeout=5)
        assert answer.status_code == 400
    finally:
        server.terminate()
        server.communicate(timeout=10)
