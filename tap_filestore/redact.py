"""Secrets masked in every log line and error message, whatever the API echoes.

An API's error body, reason or header may quote the bearer token, the client
secret or `base64(id:secret)`. Rather than trusting every message to be careful,
every log record is masked as it is created (the record factory runs for the
tap's, the SDK's and the libraries' loggers alike), and so is every
`FileStoreError` message.
"""

from __future__ import annotations

import base64
import logging
import threading
import traceback
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from collections.abc import Callable

MASK = "********"
#: Shorter values would mask ordinary words.
MIN_SECRET_LENGTH = 6

_secrets: tuple[str, ...] = ()
_lock = threading.Lock()


def add_secret(value: str | None) -> None:
    """Mask `value`, and the forms it takes in a URL or form body, from now on."""
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value)}
    global _secrets  # noqa: PLW0603
    with _lock:
        # Longest first, so a secret inside another one does not break it up.
        _secrets = tuple(sorted({*_secrets, *forms}, key=len, reverse=True))


def add_client_credentials(client_id: str, client_secret: str) -> None:
    """Mask the client secret and the HTTP Basic form of the pair."""
    add_secret(client_secret)
    pair = f"{client_id}:{client_secret}".encode()
    add_secret(base64.b64encode(pair).decode())


def redact(text: str) -> str:
    """Return `text` with every known secret masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _masking_factory(
    make_record: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def make_masked_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        if not _secrets:
            return record
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return record  # the handler reports the broken format itself
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            trace = "".join(traceback.format_exception(*record.exc_info))
            masked_trace = redact(trace)
            record.exc_text = masked_trace.rstrip("\n")
            if masked_trace != trace:
                # Formatters that read exc_info itself (the SDK's structured
                # one, which Meltano asks for) would print the secret: they
                # get the masked text only.
                record.exc_info = None
        return record

    return make_masked_record


def install() -> None:
    """Mask secrets in every log record created from now on (once per process)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "masks_secrets", False):
        masked = _masking_factory(factory)
        masked.masks_secrets = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(masked)
