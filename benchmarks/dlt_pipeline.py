"""The peer's whole job: dlt's rest_api_source into PostgreSQL, merged on file_id.

Usage: python dlt_pipeline.py TAP_CONFIG POSTGRES_URL DATASET PIPELINES_DIR
"""

import json
import sys

import dlt
from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
from dlt.sources.rest_api import rest_api_source


def main() -> None:
    """Load every file of the API into DATASET.files; fail if the load failed."""
    config_path, postgres_url, dataset, pipelines_dir = sys.argv[1:5]
    config = json.load(open(config_path))  # noqa: PTH123, SIM115
    base = config["base_url"]
    source = rest_api_source(
        {
            "client": {
                "base_url": base,
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
    pipeline = dlt.pipeline(
        pipeline_name="filestore_bench",
        pipelines_dir=pipelines_dir,
        destination=dlt.destinations.postgres(credentials=postgres_url),
        dataset_name=dataset,
    )
    info = pipeline.run(source)
    info.raise_on_failed_jobs()


if __name__ == "__main__":
    main()
