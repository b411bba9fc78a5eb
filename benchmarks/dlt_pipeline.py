"""The peer's whole job: dlt's rest_api_source into PostgreSQL, merged on file_id.

Usage: python dlt_pipeline.py TAP_CONFIG POSTGRES_URL DATASET PIPELINES_DIR
"""

import sys

import dlt
from dlt_client import files_source


def main() -> None:
    """Load every file of the API into DATASET.files; fail if the load failed."""
    config_path, postgres_url, dataset, pipelines_dir = sys.argv[1:5]
    pipeline = dlt.pipeline(
        pipeline_name="filestore_bench",
        pipelines_dir=pipelines_dir,
        destination=dlt.destinations.postgres(credentials=postgres_url),
        dataset_name=dataset,
    )
    info = pipeline.run(files_source(config_path))
    info.raise_on_failed_jobs()


if __name__ == "__main__":
    main()
