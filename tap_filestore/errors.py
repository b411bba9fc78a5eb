"""The failures tap-filestore reports: one type per kind, messages a user can act on."""

from __future__ import annotations

from tap_filestore.redact import redact


class FileStoreError(Exception):
    """A failure whose message alone tells the user what failed and what to do.

    Its message never holds a secret the tap knows, whatever the API echoed.
    """

    def __init__(self, message: str) -> None:
        """Keep `message`, secrets masked."""
        super().__init__(redact(message))


class AuthenticationError(FileStoreError):
    """The token endpoint refused the client, or the API refused a fresh token."""


class APIRequestError(FileStoreError):
    """The API refused a request with a non-retryable status."""


class RetriesExhaustedError(FileStoreError):
    """A request kept failing after every allowed retry."""


class CertificateError(FileStoreError):
    """The API's TLS certificate failed verification: nothing was sent to it."""


class BodyTooLargeError(FileStoreError):
    """An answer grew past the ceiling on bodies once decompressed."""


class IncompleteListingError(FileStoreError):
    """The listing ended before the `total` the API reported."""


class MalformedPageError(FileStoreError):
    """A 200 answer that is not the page the contract describes."""


class PaginationLoopError(FileStoreError):
    """The API answers pages it answered before: paging would never end."""


class InvalidConfigError(FileStoreError):
    """The config is missing a key, has an unknown one, or a bad value."""


class InvalidStateError(FileStoreError):
    """The input state is not JSON, has the wrong shape, or a bad bookmark."""


class SyncStoppedError(FileStoreError):
    """The sync was stopped before every record went out (a signal, closed output)."""

    def __init__(self, message: str, exit_code: int) -> None:
        """Keep the message and the exit code the process ends with."""
        super().__init__(message)
        self.exit_code = exit_code


class BatchWriteError(FileStoreError):
    """A batch file or folder could not be written (read-only, full, not a folder)."""


class IncompleteBatchError(FileStoreError):
    """Records of a BATCH sync are missing from the files it announced."""
