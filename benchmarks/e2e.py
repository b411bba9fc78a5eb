"""Benchmark the whole job: the sandbox API into PostgreSQL, end to end.

Every contender loads every file into an empty schema of one throwaway
PostgreSQL 15 (started here, as the tests start theirs); rounds interleave the
contenders, and after each run the table is checked row for row (ids, names,
how many `modified_at` are set). Wall time per job; CPU seconds and peak RSS
per process (sampled from /proc), and the database's CPU seconds; and the
batch files a job leaves on disk (which the next run, given its state, deletes).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench import BIN, start_sandbox  # noqa: E402

from tap_filestore.sandbox.dataset import Dataset  # noqa: E402
from tests.postgres import Cluster, start_cluster  # noqa: E402

DLT_PYTHON = ROOT / "benchmarks" / ".venv-dlt" / "bin" / "python"
DATABASE = "bench"
TICKS = os.sysconf("SC_CLK_TCK")
MELTANO = "meltano run tap-filestore target-postgres (as shipped: BATCH files)"
RECORDS = "meltano run tap-filestore--records target-postgres (RECORD messages)"
DLT = "dlt rest_api_source -> postgres (merge)"
#: The jobs by the short names `--jobs` takes.
JOB_NAMES = {"shipped": MELTANO, "records": RECORDS, "dlt": DLT}
#: Process roles, by what their command line holds (first match wins).
ROLES = (
    ("bin/meltano", "meltano"),
    ("target-postgres", "target"),
    ("tap-filestore", "tap"),
    ("tap_filestore", "tap"),
    ("dlt_pipeline", "dlt"),
)


@dataclass
class Usage:
    """What one run cost: wall seconds, and per role CPU seconds and peak RSS."""

    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    #: MB of batch files the job left on disk.
    disk: float = 0.0

    @property
    def peak(self) -> float:
        """The job's processes' peak RSS added up (an upper bound of its peak)."""
        return sum(self.rss.values())


#: Where BATCH jobs write: meltano.yml's default.
BATCH_ROOTS = (ROOT / ".meltano" / "batches",)


def run_folders(roots: tuple[Path, ...]) -> set[Path]:
    """The batch run folders under `roots`."""
    return {p for root in roots if root.is_dir() for p in root.iterdir()}


def take_new_folders(before: set[Path], roots: tuple[Path, ...]) -> float:
    """Return the MB of run folders made since `before`, and delete them."""
    size = 0
    for folder in run_folders(roots) - before:
        size += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder, ignore_errors=True)
    return size / 2**20


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd on


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                tree.setdefault(int(_stat(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
            except (OSError, ValueError, IndexError):
                continue
    return tree


def _role(pid: int) -> str | None:
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return next((role for mark, role in ROLES if mark in command), None)


class Sampler(threading.Thread):
    """Samples the processes under `roots` every 50 ms until stopped."""

    def __init__(self, roots: list[int]) -> None:
        """Watch `roots` and their descendants."""
        super().__init__(daemon=True)
        self.roots = roots
        self.stopped = threading.Event()
        self.last: dict[int, tuple[str, float, float]] = {}

    def run(self) -> None:
        """Keep the last CPU seconds and peak RSS seen of each process."""
        while not self.stopped.wait(0.05):
            tree = _children()
            pending = list(self.roots)
            while pending:
                pid = pending.pop()
                pending += tree.get(pid, [])
                try:
                    role = _role(pid)
                    if role is None:
                        continue
                    fields = _stat(pid)
                    cpu = (int(fields[11]) + int(fields[12])) / TICKS
                    status = Path(f"/proc/{pid}/status").read_text()
                except (OSError, ValueError, IndexError):
                    continue
                hwm = next(
                    (int(x.split()[1]) for x in status.splitlines() if "VmHWM" in x),
                    0,
                )
                # A process that has exited but is not yet reaped shows no
                # VmHWM: keep the largest values seen.
                _, seen_cpu, seen_rss = self.last.get(pid, (role, 0.0, 0.0))
                self.last[pid] = (role, max(cpu, seen_cpu), max(hwm / 1024, seen_rss))

    def usage(self) -> tuple[dict[str, float], dict[str, float]]:
        cpu: dict[str, float] = {}
        rss: dict[str, float] = {}
        for role, seconds, peak in self.last.values():
            cpu[role] = cpu.get(role, 0.0) + seconds
            rss[role] = max(rss.get(role, 0.0), peak)
        return cpu, rss


def database_cpu(cluster: Cluster) -> float:
    """CPU seconds of the whole cluster so far (ended backends included)."""
    postmaster = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
    fields = _stat(postmaster)
    total = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    for pid in _children().get(postmaster, []):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += sum(int(x) for x in _stat(pid)[11:13])
    return total / TICKS


def run_job(
    argv_list: list[list[str]], env: dict, cluster: Cluster, log: Path
) -> Usage:
    """Run one job (a command, or a pipe of two); fail on a non-zero exit."""
    env = {**os.environ, **env}
    before = database_cpu(cluster)
    started = time.perf_counter()
    with log.open("wb") as err:
        procs: list[subprocess.Popen] = []
        for index, argv in enumerate(argv_list):
            last = index == len(argv_list) - 1
            procs.append(
                subprocess.Popen(
                    argv,
                    stdin=procs[-1].stdout if procs else subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                    stderr=err,
                    env=env,
                    cwd=ROOT,
                )
            )
            if index:
                procs[-2].stdout.close()  # the next process owns the pipe now
        sampler = Sampler([p.pid for p in procs])
        sampler.start()
        try:
            codes = [p.wait() for p in procs]
        except BaseException:  # stopped: leave no job behind
            for proc in procs:
                proc.kill()
            raise
        finally:
            wall = time.perf_counter() - started
            sampler.stopped.set()
            sampler.join()
    if any(codes):
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        msg = f"exit {codes}: {' / '.join(tail)}"
        raise RuntimeError(msg)
    cpu, rss = sampler.usage()
    cpu["database"] = database_cpu(cluster) - before
    return Usage(wall, cpu, rss)


def expected_table(files: int) -> tuple[int, str, int]:
    """Rows, a digest of (id, name) in id order, and set `modified_at`s."""
    rows = sorted(Dataset(files).files(), key=lambda f: f.file_id)
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(
        "\n".join(
            f"{f.file_id}\t{'-' if f.file_name is None else '=' + f.file_name}"
            for f in rows
        ).encode()
    )
    return len(rows), digest.hexdigest(), sum(f.modified_us is not None for f in rows)


def loaded_table(cluster: Cluster, schema: str) -> tuple[int, str, int]:
    """The same of `schema.files`, without rows the target marked deleted."""
    with cluster.connect(DATABASE) as conn:
        soft_deletes = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'files' AND column_name = '_sdc_deleted_at'",
            (schema,),
        ).fetchone()
        where = "WHERE _sdc_deleted_at IS NULL" if soft_deletes else ""
        rows, digest, modified = conn.execute(
            "SELECT count(*), md5(string_agg("  # noqa: S608
            "file_id || chr(9) || coalesce('=' || file_name, '-'), chr(10)"
            ' ORDER BY file_id COLLATE "C")),'
            f" count(modified_at) FROM {schema}.files {where}"
        ).fetchone()
    return rows, digest, modified


def jobs(config: dict, cluster: Cluster, workdir: Path) -> dict[str, tuple]:
    """Each contender: (commands, environment, schema)."""
    tap_config = workdir / "tap.json"
    tap_config.write_text(json.dumps(config))
    connection = {
        "host": "127.0.0.1",
        "port": cluster.port,
        "user": "postgres",
        "password": "unused-with-trust-auth",
        "database": DATABASE,
    }
    meltano_env = {
        "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
        "MELTANO_ENVIRONMENT": "sandbox",
        "TAP_FILESTORE_BASE_URL": config["base_url"],
        "TAP_FILESTORE_CLIENT_SECRET": config["client_secret"],
        **{f"TARGET_POSTGRES_{k.upper()}": str(v) for k, v in connection.items()},
    }

    def meltano_run(
        extractor: str, schema: str
    ) -> tuple[list[list[str]], dict[str, str], str]:
        argv = [str(BIN / "meltano"), "run", "--full-refresh", extractor]
        env = {**meltano_env, "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema}
        return [[*argv, "target-postgres"]], env, schema

    runs = {
        MELTANO: meltano_run("tap-filestore", "bench_meltano"),
        RECORDS: meltano_run("tap-filestore--records", "bench_records"),
    }
    if DLT_PYTHON.exists():
        url = f"postgresql://postgres:unused@127.0.0.1:{cluster.port}/{DATABASE}"
        runs[DLT] = (
            [
                [
                    str(DLT_PYTHON),
                    str(ROOT / "benchmarks" / "dlt_pipeline.py"),
                    str(tap_config),
                    url,
                    "bench_dlt",
                    str(workdir / "dlt"),
                ]
            ],
            {"RUNTIME__LOG_LEVEL": "WARNING"},
            "bench_dlt",
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=2, help="rounds per size")
    parser.add_argument(
        "--jobs",
        default=",".join(JOB_NAMES),
        help=f"the jobs to run, comma-separated, of {', '.join(JOB_NAMES)}",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; PostgreSQL 15 (fsync off), sandbox pages "
        f"pre-rendered; best of {args.repeat} rounds (slowest in brackets); CPU "
        "seconds, peak RSS MB and batch files left on disk of the best round (a "
        "job's new batch folders are measured after it, then deleted)\n"
    )
    print(
        "| job | files | seconds | files/s | dlt / job | CPU s: tap / target / "
        "meltano / dlt / database | peak RSS MB: tap / target / meltano / dlt "
        "(the job's) | batch files left MB |"
    )
    print("|---|---:|---:|---:|---:|---|---|---:|")
    chosen = {JOB_NAMES[name.strip()] for name in args.jobs.split(",")}
    # SIGTERM and SIGINT stop the benchmark, its jobs, sandbox and cluster.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    cluster = start_cluster()
    best_of: dict[tuple[str, int], Usage] = {}
    try:
        cluster.create_database(DATABASE, "UTC")
        for files in args.sizes:
            expected = expected_table(files)
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp)
                server, config = start_sandbox(files, 0.0, workdir)
                try:
                    runs = {
                        name: job
                        for name, job in jobs(config, cluster, workdir).items()
                        if name in chosen
                    }
                    measured: dict[str, list[Usage]] = {name: [] for name in runs}
                    failed: dict[str, str] = {}
                    for _ in range(args.repeat):
                        for name, (argv_list, env, schema) in runs.items():
                            if name in failed:
                                continue
                            with cluster.connect(DATABASE) as conn:
                                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                            before = run_folders(BATCH_ROOTS)
                            try:
                                usage = run_job(
                                    argv_list, env, cluster, workdir / "job.log"
                                )
                                usage.disk = take_new_folders(before, BATCH_ROOTS)
                                loaded = loaded_table(cluster, schema)
                            except Exception as exc:  # noqa: BLE001
                                failed[name] = str(exc)
                                continue
                            if loaded != expected:
                                failed[name] = (
                                    f"table not exact: {loaded} != {expected}"
                                )
                                continue
                            measured[name].append(usage)
                    report(files, runs, measured, failed, best_of)
                finally:
                    server.terminate()
                    server.wait()
    finally:
        cluster.stop()
    summary(args.sizes, best_of)


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def report(
    files: int,
    runs: dict,
    measured: dict[str, list[Usage]],
    failed: dict[str, str],
    best_of: dict[tuple[str, int], Usage],
) -> None:
    dlt = min((u.wall for u in measured.get(DLT, [])), default=None)
    for name in runs:
        if name in failed:
            print(f"| {name} | {files:,} | failed: {failed[name]} | | | | | |")
            continue
        best = min(measured[name], key=lambda u: u.wall)
        worst = max(u.wall for u in measured[name])
        best_of[name, files] = best
        roles = ("tap", "target", "meltano", "dlt")
        cpu = " / ".join(
            f"{best.cpu[r]:.1f}" if r in best.cpu else "-" for r in (*roles, "database")
        )
        rss = " / ".join(f"{best.rss[r]:.0f}" if r in best.rss else "-" for r in roles)
        rss += f" ({best.peak:.0f})"
        ratio = f"{dlt / best.wall:.2f}x" if dlt else ""
        print(
            f"| {name} | {files:,} | {best.wall:.1f} ({worst:.1f}) | "
            f"{files / best.wall:,.0f} | {ratio} | {cpu} | {rss} | "
            f"{best.disk:.0f} |",
            flush=True,
        )


def summary(sizes: list[int], best_of: dict[tuple[str, int], Usage]) -> None:
    print()
    small, large = min(sizes), max(sizes)
    for files in sizes:
        if (MELTANO, files) in best_of and (RECORDS, files) in best_of:
            batch, records = best_of[MELTANO, files].peak, best_of[RECORDS, files].peak
            print(
                f"{files:,} files: the BATCH job's peak RSS {batch:.0f} MB is "
                f"{batch / records:.2f}x the RECORD job's {records:.0f} MB"
            )
    for name in JOB_NAMES.values():
        if (name, small) in best_of and (name, large) in best_of and small != large:
            growth = ", ".join(
                f"{role} {peak / best_of[name, small].rss[role]:.2f}x"
                for role, peak in best_of[name, large].rss.items()
                if best_of[name, small].rss.get(role)
            )
            print(f"{name}: peak RSS at {large:,} / at {small:,} files: {growth}")


if __name__ == "__main__":
    main()
