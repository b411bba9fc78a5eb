"""Packaging: the installed tap shares no file with another distribution (issue 19)."""

from __future__ import annotations

import importlib.metadata


def test_no_installed_file_is_owned_by_two_distributions() -> None:
    # `backoff` and `python-backoff` both install `backoff/`: depending on the
    # first quietly replaced the SDK's retry library with an older one.
    owners: dict[str, set[str]] = {}
    for distribution in importlib.metadata.distributions():
        for path in distribution.files or []:
            if path.suffix == ".py":
                owners.setdefault(str(path), set()).add(distribution.metadata["Name"])

    shared = {path: names for path, names in owners.items() if len(names) > 1}
    assert not shared, shared


def test_the_tap_brings_no_backoff_but_the_sdks() -> None:
    def names(distribution: str) -> set[str]:
        requires = importlib.metadata.requires(distribution) or []
        return {r.split(">")[0].split("=")[0].split(";")[0].strip() for r in requires}

    backoffs = {"backoff", "python-backoff"}
    assert names("tap-filestore") & backoffs <= names("singer-sdk") & backoffs
    assert names("singer-sdk") & backoffs  # the test still means something
