"""Benchmark tap-filestore against the raw HTTP ceiling, dlt and tap-rest-api-msdk.

Each contender runs as its own process against one sandbox process, one after
another on the same machine; wall time, CPU seconds (user and system) and peak
RSS come from the OS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
DLT_PYTHON = ROOT / "benchmarks" / ".venv-dlt" / "bin" / "python"
MSDK = ROOT / "benchmarks" / ".venv-msdk" / "bin" / "tap-rest-api-msdk"
PAGE = 100
TAP = "tap-filestore (defaults)"
TAP_BATCH = "tap-filestore, BATCH files"


def start_sandbox(
    files: int, latency: float, workdir: Path, extra: list[str] | None = None
) -> tuple[subprocess.Popen, dict]:
    config_path = workdir / "sandbox.json"
    server = subprocess.Popen(
        [
            str(BIN / "filestore-sandbox"),
            "--files",
            str(files),
            "--port",
            "0",
            "--precompute",
            str(PAGE),
            "--latency",
            str(latency),
            "--write-config",
            str(config_path),
            *(extra or []),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    server.stdout.readline()  # the banner comes once every page is rendered
    return server, json.loads(config_path.read_text())


def measure(argv: list[str]) -> tuple[float, float, float]:
    """Run argv; return its wall seconds, CPU seconds and peak RSS in MB."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed: {lines[-1] if lines else status}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def contenders(config: dict, workdir: Path) -> dict[str, list[str]]:
    tap_config = workdir / "tap.json"
    tap_config.write_text(json.dumps(config))
    one_at_a_time = workdir / "tap-1.json"
    one_at_a_time.write_text(json.dumps({**config, "max_concurrent_requests": 1}))
    batches = workdir / "tap-batch.json"
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": str(workdir / "batches")},
        "batch_size": 100_000,  # as meltano.yml ships it
    }
    batches.write_text(json.dumps({**config, "batch_config": batch_config}))
    runs = {
        "raw requests loop": [
            str(BIN / "python"),
            str(ROOT / "benchmarks" / "raw_client.py"),
            str(tap_config),
        ],
        TAP: [str(BIN / "tap-filestore"), "--config", str(tap_config)],
        TAP_BATCH: [str(BIN / "tap-filestore"), "--config", str(batches)],
        "tap-filestore, 1 in flight": [
            str(BIN / "tap-filestore"),
            "--config",
            str(one_at_a_time),
        ],
    }
    if DLT_PYTHON.exists():
        runs["dlt rest_api_source"] = [
            str(DLT_PYTHON),
            str(ROOT / "benchmarks" / "dlt_client.py"),
            str(tap_config),
        ]
    if MSDK.exists():
        base = config["base_url"]
        msdk_config = workdir / "msdk.json"
        msdk_config.write_text(
            json.dumps(
                {
                    "api_url": base,
                    "auth_method": "oauth",
                    "grant_type": "client_credentials",
                    "client_id": config["client_id"],
                    "client_secret": config["client_secret"],
                    "access_token_url": f"{base}/oauth/token",
                    "pagination_request_style": "simple_offset_paginator",
                    "pagination_response_style": "offset",
                    "pagination_page_size": PAGE,
                    "pagination_initial_offset": 0,
                    "offset_records_jsonpath": "$.files",
                    "pagination_limit_per_page_param": "limit",
                    "streams": [
                        {
                            "name": "files",
                            "path": "/v1/files",
                            "primary_keys": ["file_id"],
                            "records_path": "$.files[*]",
                        }
                    ],
                }
            )
        )
        runs["tap-rest-api-msdk"] = [str(MSDK), "--config", str(msdk_config)]
    return runs


def rounds(
    runs: dict[str, list[str]], repeat: int
) -> tuple[dict[str, list[tuple[float, float, float]]], dict[str, str]]:
    """Run every contender once per round; return (wall, CPU, RSS) and failures.

    Rounds interleave the contenders, so a slow spell of a shared machine
    slows all of them rather than one. A contender that fails is not run again.
    """
    measured: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    failed: dict[str, str] = {}
    for _ in range(repeat):
        for name, argv in runs.items():
            if name in failed:
                continue
            try:
                measured[name].append(measure(argv))
            except RuntimeError as exc:
                failed[name] = str(exc)
    return measured, failed


def sandbox_ceiling(tap_config: Path, clients: int) -> float:
    """Files/s the sandbox serves to `clients` raw loops at once."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                str(BIN / "python"),
                str(ROOT / "benchmarks" / "raw_client.py"),
                str(tap_config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(clients)
    ]
    for proc in procs:
        proc.wait()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sizes", nargs="*", type=int, default=[10_000, 100_000, 1_000_000]
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds per page answer"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds per size; each contender's best round is reported",
    )
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}; sandbox latency "
        f"{args.latency * 1000:.0f} ms/page, page size {PAGE}; best of "
        f"{args.repeat} rounds (slowest round in brackets; CPU seconds: the "
        "least of the rounds)\n"
    )
    print(
        "| contender | files | seconds | CPU seconds | records/s | requests/s "
        "| peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    results: dict[tuple[str, int], tuple[float, float]] = {}
    for files in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            server, config = start_sandbox(files, args.latency, workdir)
            try:
                runs = contenders(config, workdir)
                measured, failed = rounds(runs, args.repeat)
                requests_made = math.ceil(files / PAGE) + 1
                for name in runs:
                    if name in failed:
                        print(
                            f"| {name} | {files:,} | failed: {failed[name]} | | | | |"
                        )
                        continue
                    best = min(wall for wall, _, _ in measured[name])
                    worst = max(wall for wall, _, _ in measured[name])
                    cpu = min(cpu for _, cpu, _ in measured[name])
                    rss = max(rss for _, _, rss in measured[name])
                    results[name, files] = (files / best, rss)
                    print(
                        f"| {name} | {files:,} | {best:.2f} ({worst:.2f}) | "
                        f"{cpu:.1f} | "
                        f"{files / best:,.0f} | {requests_made / best:,.0f} | "
                        f"{rss:.0f} |",
                        flush=True,
                    )
                two = min(
                    sandbox_ceiling(workdir / "tap.json", 2) for _ in range(args.repeat)
                )
                name = "sandbox ceiling (2 raw loops at once)"
                print(
                    f"| {name} | {2 * files:,} | {two:.2f} | | "
                    f"{2 * files / two:,.0f} | {2 * requests_made / two:,.0f} | |",
                    flush=True,
                )
            finally:
                server.terminate()
                server.wait()

    print()
    for files in args.sizes:
        tap = results.get((TAP, files))
        if not tap:
            continue
        for peer in ("raw requests loop", "dlt rest_api_source", "tap-rest-api-msdk"):
            if (peer, files) in results:
                ratio = tap[0] / results[peer, files][0]
                print(f"{files:,} files: tap / {peer} = {ratio:.2f}x")
    small, large = min(args.sizes), max(args.sizes)
    if (TAP, small) in results and (TAP, large) in results:
        growth = results[TAP, large][1] / results[TAP, small][1]
        print(f"tap peak RSS at {large:,} / at {small:,} files = {growth:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
