"""The recipes of docs/production.md, each tried: a scheduled job, a state backend
that survives the machine, and JSON logs for a log shipper."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tap_filestore.sandbox import Sandbox
from tests.conftest import run_cli
from tests.meltano_cli import meltano
from tests.pipeline import Pipeline, live, source
from tests.test_redaction import secrets_of

if TYPE_CHECKING:
    from pathlib import Path

    from tests.postgres import Cluster

FILES = 2000


def test_the_scheduled_job_loads_every_file_into_postgres(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create_database("scheduled", "UTC")
    with Sandbox(FILES) as api:
        pipeline = Pipeline(cluster, api, "scheduled", tmp_path / "meltano.db")

        done = meltano(
            "schedule",
            "run",
            "filestore-daily",
            system_db=pipeline.system_db,
            env=pipeline.env(),
        )

        assert done.returncode == 0, done.stderr[-3000:]
        assert live(pipeline.rows()) == source(api)
        # The job and `meltano run tap-filestore target-postgres` share a state.
        assert pipeline.bookmark()


def test_a_file_state_backend_keeps_the_state_the_next_run_resumes_from(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.create_database("file_state", "UTC")
    # Meltano takes the URI's path as it is written (no %20 for a space).
    backend = tmp_path / "state"
    env = {"MELTANO_STATE_BACKEND_URI": f"file://{backend}"}
    with Sandbox(FILES) as api:
        pipeline = Pipeline(cluster, api, "file_state", tmp_path / "meltano.db", env)
        pipeline.run_ok()
        kept = [json.loads(p.read_text()) for p in backend.rglob("state.json")]
        bookmarks = [
            s["completed"]["singer_state"]["bookmarks"]["files"]
            for s in kept
            if "completed" in s
        ]
        assert [b["replication_key"] for b in bookmarks] == ["modified_at"]
        api.dataset.touch([1, 2, 3])
        api.requests.clear()

        done = pipeline.run_ok()

        assert "Reading state from" in done.stderr
        assert len(api.page_requests()) < FILES // 100  # from the bookmark
        assert live(pipeline.rows()) == source(api)


def test_json_logs_are_one_object_a_line_and_mask_the_secret(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path
) -> None:
    # As a log shipper wants them: the SDK's structured formatter for every line.
    logging_config = tmp_path / "logging.yml"
    logging_config.write_text(
        "version: 1\n"
        "disable_existing_loggers: false\n"
        "formatters:\n"
        "  json: {(): singer_sdk.logging.StructuredFormatter}\n"
        "handlers:\n"
        "  stderr: {class: logging.StreamHandler, formatter: json, stream: ext://sys.stderr}\n"
        "root: {level: INFO, handlers: [stderr]}\n"
    )
    sandbox.inject("echo", endpoint="token", status=401)  # the API echoes the secret

    run = run_cli(
        config=config,
        tmp_path=tmp_path,
        env={"SINGER_SDK_LOG_CONFIG": str(logging_config)},
    )

    assert run.returncode == 1
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    (error,) = [line for line in lines if line["level"] == "error"]
    assert "refused the client" in error["message"]
    assert not [s for s in secrets_of(sandbox) if s in run.stderr]
