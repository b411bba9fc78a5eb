"""The failures tap-filestore reports: one type per kind, messages a user can act on."""

from __future__ import annotations


class FileStoreError(Exception):
    """A failure whose message alone tells the user what failed and what to do."""


class AuthenticationError(FileStoreError):
    """The token endpoint refused the client, or the API refused a fresh token."""


class APIRequestError(FileStoreError):
    """The API refused a request with a non-retryable status."""


class RetriesExhaustedError(FileStoreError):
    """A request kept failing after every allowed retry."""


class MalformedPageError(FileStoreError):
    """A 200 answer that is not the page the contract describes."""


class PaginationLoopError(FileStoreError):
    """The API returned the same page again: it ignores `offset`."""
