"""The raw ceiling: a plain requests.Session fetching and decoding every page."""

import json
import sys

import requests


def main() -> None:
    """Fetch every page of the API in the config file; print the file count."""
    config = json.load(open(sys.argv[1]))  # noqa: PTH123, SIM115
    base = config["base_url"]
    session = requests.Session()
    token = session.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": config["client_id"],
            "client_secret": config["client_secret"],
        },
        timeout=60,
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    files, offset, limit = 0, 0, 100
    while True:
        page = session.get(
            f"{base}/v1/files", params={"offset": offset, "limit": limit}, timeout=60
        ).json()
        files += len(page["files"])
        offset += limit
        if len(page["files"]) < limit or offset >= page.get("total", offset + 1):
            break
    print(files, file=sys.stderr)


if __name__ == "__main__":
    main()
