"""The peer: dlt's rest_api_source configured as shared/seed-spec.md, items iterated."""

import json
import sys

from dlt.sources import DltSource
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from dlt.sources.rest_api import rest_api_source


def files_source(config_path: str) -> DltSource:
    """Return the seed spec's source for the API in a tap config file."""
    config = json.load(open(config_path))  # noqa: PTH123, SIM115
    base = config["base_url"]
    return rest_api_source(
        {
            "client": {
                "base_url": base,
                # The spec's "type": "oauth2" is dlt's client-credentials auth.
                "auth": OAuth2ClientCredentials(
                    access_token_url=f"{base}/oauth/token",
                    client_id=config["client_id"],
                    client_secret=config["client_secret"],
                ),
            },
            "resource_defaults": {
                "primary_key": "file_id",
                "write_disposition": "merge",
            },
            "resources": [
                {
                    "name": "files",
                    "endpoint": {
                        "path": "/v1/files",
                        "data_selector": "files",
                        "paginator": {"type": "offset", "limit": 100},
                    },
                }
            ],
        }
    )


def main() -> None:
    """Iterate every file of the API in the config file; print the count."""
    print(sum(1 for _ in files_source(sys.argv[1])), file=sys.stderr)


if __name__ == "__main__":
    main()
