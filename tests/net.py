"""Loopback ports for the servers tests start."""

from __future__ import annotations

import socket
from typing import cast


def free_port() -> int:
    """Return a loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return cast("int", probe.getsockname()[1])
