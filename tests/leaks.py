"""What the secret-leak check scans besides pytest's own captures."""

from __future__ import annotations

#: Output of child processes (tap, meltano) that the leak check scans too.
CHILD_OUTPUTS: list[str] = []


def leaked(secrets: set[str], outputs: list[str]) -> set[str]:
    """Return the secrets that appear in any of the outputs."""
    return {secret for secret in secrets if any(secret in out for out in outputs)}
