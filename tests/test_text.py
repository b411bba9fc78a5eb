"""Any text the API sends comes out as valid UTF-8 JSON (issue 9, class 8)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.conftest import expected_records, run_cli

if TYPE_CHECKING:
    from pathlib import Path

    from tap_filestore.sandbox import Sandbox


def test_lone_surrogates_are_replaced_with_one_warning_naming_a_file(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path
) -> None:
    # `"fil_\ud800"` and `"half \udc00 of a pair"`: JSON escapes that decode to
    # strings UTF-8 cannot encode.
    sandbox.inject("malformed", body="lone_surrogates")

    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 0, run.stderr
    (record,) = [
        m["record"]
        for m in map(json.loads, run.stdout.splitlines())
        if m["type"] == "RECORD"
    ]
    assert record["file_id"] == "fil_\ufffd"
    assert record["file_name"] == "half \ufffd of a pair"
    warnings = [line for line in run.stderr.splitlines() if "U+FFFD" in line]
    assert len(warnings) == 1
    assert "fil_\ufffd" in warnings[0]


def test_names_in_any_script_pass_unchanged_and_unwarned(
    sandbox: Sandbox, config: dict[str, Any], tmp_path: Path
) -> None:
    run = run_cli(config=config, tmp_path=tmp_path)

    assert run.returncode == 0, run.stderr
    names = {
        m["record"]["file_id"]: m["record"]["file_name"]
        for m in map(json.loads, run.stdout.splitlines())
        if m["type"] == "RECORD"
    }
    expected = {i: r["file_name"] for i, r in expected_records(sandbox).items()}
    assert names == expected
    assert any(name and not name.isascii() for name in names.values())
    assert "U+FFFD" not in run.stderr
