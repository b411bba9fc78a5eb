"""Benchmark pages in flight across a network: latency with jitter, and a rate limit.

`bash benchmarks/run network [--repeat N]`. For each scenario one sandbox
process answers every page after its latency (give or take 30%); the
rate-limited one also answers 429 with `Retry-After` above its budget. The tap
with its defaults (adaptive width, rate learned from 429s) runs against the
same tap with its width fixed at 1, 4 and 16 (`fixed_width.py`) and dlt's
`rest_api_source`, interleaved in rounds; each contender's best round counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench import BIN, DLT_PYTHON, PAGE, ROOT, measure, start_sandbox

JITTER = 0.3
TAP = "tap-filestore (defaults)"
FIXED = (1, 4, 16)
#: (name, files, latency s, rate limit per s or None)
SCENARIOS = (
    ("20 ms a page", 20_000, 0.02, None),
    ("100 ms a page", 20_000, 0.1, None),
    ("300 ms a page", 10_000, 0.3, None),
    ("100 ms a page, 20 requests/s limit", 60_000, 0.1, 20),
)


def contenders(config: dict, limit: int | None, workdir: Path) -> dict[str, list[str]]:
    """Return each contender's command line."""

    def config_file(name: str, **overrides: object) -> str:
        path = workdir / f"{name}.json"
        path.write_text(json.dumps({**config, **overrides}))
        return str(path)

    runs = {TAP: [str(BIN / "tap-filestore"), "--config", config_file("tap")]}
    if limit:
        runs[f"tap-filestore, max_requests_per_second {limit}"] = [
            str(BIN / "tap-filestore"),
            "--config",
            config_file("limited", max_requests_per_second=limit),
        ]
    for width in FIXED:
        runs[f"tap-filestore, fixed width {width}"] = [
            str(BIN / "python"),
            str(ROOT / "benchmarks" / "fixed_width.py"),
            "--config",
            config_file(f"fixed-{width}", max_concurrent_requests=width),
        ]
    if DLT_PYTHON.exists():
        runs["dlt rest_api_source"] = [
            str(DLT_PYTHON),
            str(ROOT / "benchmarks" / "dlt_client.py"),
            config_file("dlt"),
        ]
    return runs


def sandbox_stats(base_url: str) -> dict[str, float]:
    """Return the sandbox's answers by status since the last call, and their span."""
    with urllib.request.urlopen(f"{base_url}/_sandbox/stats") as answer:  # noqa: S310
        return json.load(answer)


#: A run: its wall seconds and the sandbox's stats for it.
Run = tuple[float, dict[str, float]]


def run_scenario(
    files: int, latency: float, limit: int | None, repeat: int
) -> dict[str, list[Run]]:
    """Return each contender's runs, fastest first."""
    extra = ["--jitter", str(JITTER)]
    if limit:
        extra += ["--rate-limit", str(limit)]
    done: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, config = start_sandbox(files, latency, workdir, extra)
        try:
            runs = contenders(config, limit, workdir)
            for _ in range(repeat):
                for name, argv in runs.items():
                    sandbox_stats(config["base_url"])
                    wall, _rss = measure(argv)
                    stats = sandbox_stats(config["base_url"])
                    done.setdefault(name, []).append((wall, stats))
        finally:
            server.terminate()
            server.wait()
    return {name: sorted(runs, key=lambda run: run[0]) for name, runs in done.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="rounds per scenario")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; page size {PAGE}; answer times +-"
        f"{JITTER:.0%}; best of {args.repeat} rounds (slowest in brackets)\n"
    )
    print("| scenario | contender | files | seconds | files/s | requests | 429s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    verdicts = []
    for scenario, files, latency, limit in SCENARIOS:
        runs = run_scenario(files, latency, limit, args.repeat)
        for name, done in runs.items():
            (wall, stats), slowest = done[0], done[-1][0]
            print(
                f"| {scenario} | {name} | {files:,} | {wall:.2f} ({slowest:.2f}) | "
                f"{files / wall:,.0f} | {stats['requests']:,} | "
                f"{stats.get('429', 0):,} |",
                flush=True,
            )
        best = {name: runs[name][0][0] for name in runs}
        fixed = min(best[f"tap-filestore, fixed width {w}"] for w in FIXED)
        verdicts.append(
            f"{scenario}: defaults / best fixed width = {fixed / best[TAP]:.2f}x"
        )
        if "dlt rest_api_source" in best:
            dlt = best["dlt rest_api_source"]
            verdicts.append(f"{scenario}: defaults / dlt = {dlt / best[TAP]:.2f}x")
        if limit:
            verdicts += [_rate_verdict(scenario, files, limit, r) for r in runs[TAP]]
    print()
    print("\n".join(verdicts))


def _rate_verdict(scenario: str, files: int, limit: int, run: Run) -> str:
    """Say what share of the rate limit's throughput a run reached."""
    wall, stats = run
    share = files / wall / (limit * PAGE)
    talking = files / stats["seconds"] / (limit * PAGE)
    refused = stats.get("429", 0) / stats["requests"]
    return (
        f"{scenario}: defaults reach {share:.0%} of the limit's {limit * PAGE:,} "
        f"files/s in {wall:.2f} s ({talking:.0%} from their first request to their "
        f"last answer), 429s {refused:.1%} of requests"
    )


if __name__ == "__main__":
    sys.exit(main())
