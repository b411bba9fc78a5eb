"""One `/v1/files` answer, decoded once and checked against the contract."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from tap_filestore.errors import MalformedPageError

if TYPE_CHECKING:
    import requests


@dataclass(frozen=True)
class Page:
    """The decoded body of a page: its files and the optional `total`."""

    offset: int
    files: list[dict]
    total: int | None


def url_params(url: str | None) -> dict[str, str]:
    """Return the query parameters of a URL, one value each."""
    return dict(parse_qsl(urlsplit(url or "").query))


def url_offset(url: str | None) -> int:
    """Return the `offset` a page request's URL asks for."""
    return int(url_params(url).get("offset", 0))


def decode_page(response: requests.Response) -> Page:
    """Decode and check a page, once per response (the paginator reads it too).

    Raises:
        MalformedPageError: If the body is not JSON, has no `files` list, or a
            file has no `file_id`.
    """
    cached = getattr(response, "_filestore_page", None)
    if cached is not None:
        return cached
    offset = url_offset(response.request.url)
    where = f"The page at offset {offset} of {urlsplit(response.url).path}"
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        msg = f"{where} is not JSON ({exc}). The API or a proxy sent an error page."
        raise MalformedPageError(msg) from exc
    files = body.get("files") if isinstance(body, dict) else None
    if not isinstance(files, list):
        msg = f"{where} has no `files` list. Check base_url points at the files API."
        raise MalformedPageError(msg)
    for position, record in enumerate(files):
        file_id = record.get("file_id") if isinstance(record, dict) else None
        if not _usable_id(file_id):
            msg = f"{where} has a file without `file_id` (item {position})."
            raise MalformedPageError(msg)
    total = body.get("total")
    page = Page(offset, files, total if isinstance(total, int) else None)
    response._filestore_page = page  # type: ignore[attr-defined]  # noqa: SLF001
    return page


def _usable_id(file_id: object) -> bool:
    """Return whether `file_id` is a non-empty string or an integer."""
    if isinstance(file_id, bool):
        return False
    return isinstance(file_id, int) or (isinstance(file_id, str) and file_id != "")
