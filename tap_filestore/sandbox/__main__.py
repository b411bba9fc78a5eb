"""`filestore-sandbox`: serve the sandbox API until interrupted."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from tap_filestore.sandbox.server import Sandbox


def main(argv: list[str] | None = None) -> None:
    """Start the sandbox, print where it listens and how to log in, and serve."""
    parser = argparse.ArgumentParser(
        prog="filestore-sandbox", description="Serve the file-storage sandbox API."
    )
    parser.add_argument("--files", type=int, default=1000, help="files to serve")
    parser.add_argument("--seed", type=int, default=42, help="dataset seed")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--token-ttl", type=int, default=3600, help="token lifetime (s)"
    )
    parser.add_argument("--no-total", action="store_true", help="omit `total` in pages")
    parser.add_argument(
        "--write-config", type=Path, help="also write a tap config file here"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds each page answer waits"
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="answer times vary by this fraction of --latency (0.3: +-30%%)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        help="answer 429 with Retry-After above this many requests a second",
    )
    parser.add_argument(
        "--serve-at-most",
        type=int,
        metavar="FILES",
        help="serve at most this many files a page, whatever `limit` asks",
    )
    parser.add_argument(
        "--precompute", type=int, metavar="LIMIT", help="render pages of LIMIT first"
    )
    args = parser.parse_args(argv)

    try:
        sandbox = Sandbox(
            args.files,
            seed=args.seed,
            port=args.port,
            token_ttl=args.token_ttl,
            include_total=not args.no_total,
        )
    except OSError as exc:
        sys.exit(f"filestore-sandbox: cannot listen on port {args.port} ({exc})")
    sandbox.latency = args.latency
    sandbox.jitter = args.jitter
    sandbox.rate_limit = args.rate_limit
    sandbox.serve_at_most = args.serve_at_most
    if args.precompute:
        sandbox.precompute(args.precompute)
    config = sandbox.config()
    if args.write_config:
        args.write_config.write_text(json.dumps(config, indent=2) + "\n")
    print(
        f"filestore-sandbox serving {args.files} files at {sandbox.base_url}\n"
        f"  client_id={sandbox.client_id} client_secret={sandbox.client_secret}",
        flush=True,
    )
    sandbox.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sandbox.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
