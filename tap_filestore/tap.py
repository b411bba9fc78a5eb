"""tap-filestore: the Singer tap for the file-storage API."""

from __future__ import annotations

import copy
import io
import logging
import sys
import time
import typing as t
from datetime import datetime, timezone
from functools import cached_property

import click
from singer_sdk import Tap
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities, TapCapabilities
from typing_extensions import override

from tap_filestore import config, redact
from tap_filestore.client import FilesClient
from tap_filestore.errors import FileStoreError, InvalidConfigError, SyncStoppedError
from tap_filestore.output import BufferedMsgSpecWriter
from tap_filestore.sdk_private import SignalsLeftAlone, install_log_filters
from tap_filestore.state import load_state, parse_state, read_state_text
from tap_filestore.stopping import exit_at_once, stop_on_signals
from tap_filestore.streams import FilesStream

if t.TYPE_CHECKING:
    from types import TracebackType

    from singer_sdk.streams import Stream

    from tap_filestore.pacing import Clock


class TapFileStore(SignalsLeftAlone, Tap):
    """Extracts the `files` collection of the file-storage API."""

    name = "tap-filestore"
    package_name = "tap-filestore"
    message_writer_class = BufferedMsgSpecWriter
    #: What retries, pacing and progress read and sleep on (a test hands in its own).
    clock: Clock = time
    capabilities: t.ClassVar = [
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        TapCapabilities.TEST,
        PluginCapabilities.ACTIVATE_VERSION,
        PluginCapabilities.BATCH,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]
    config_jsonschema = config.SCHEMA

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Create the tap; a bad config or state raises one clear error."""
        if isinstance(kwargs.get("catalog"), dict):
            kwargs["catalog"] = _honour_replication_method(kwargs["catalog"])
        now = datetime.fromtimestamp(self.clock.time(), timezone.utc)
        kwargs["state"] = load_state(kwargs.get("state"), now)
        try:
            super().__init__(*args, **kwargs)
        except ConfigValidationError as exc:
            raise InvalidConfigError(config.problem(exc.errors)) from None
        redact.add_client_credentials(
            str(self.config.get("client_id", "")),
            str(self.config.get("client_secret", "")),
        )
        if kwargs.get("validate_config", True):
            config.check(self.config)
            config.warn_of_clear_text(self.config, self.logger)

    @override
    def discover_streams(self) -> list[Stream]:
        writer = t.cast("BufferedMsgSpecWriter", self.message_writer)
        return [FilesStream(self, self.client, writer)]

    @cached_property
    def client(self) -> FilesClient:
        """The request path every stream of this tap shares (nothing sent yet)."""
        return FilesClient(self.config, clock=self.clock)

    @classmethod
    @override
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        # Secrets masked in every log record, the SDK's noisy lines quieted,
        # one line for an uncaught error: for a run from the command line only,
        # never at import or when a `TapFileStore` is built. --test and
        # --discover run in click callbacks, before the SDK installs its hook:
        # install ours now (and again in `invoke`, after the SDK's).
        prepare_logging()
        sys.excepthook = _report_error
        return command

    @classmethod
    @override
    def invoke(cls, *, state: t.IO[str] | None = None, **kwargs: t.Any) -> None:
        """Run the sync; end the process at once if it is stopped."""
        sys.excepthook = _report_error
        stop_on_signals()
        if state is not None:
            # Read here to name the file in the error if it is not JSON.
            source = getattr(state, "name", "--state")
            text = read_state_text(state, source)
            parse_state(text, source)
            state = io.StringIO(text)
        try:
            super().invoke(state=state, **kwargs)
        except SyncStoppedError as exc:
            exit_at_once(exc)

    @classmethod
    @override
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> t.Any:
        try:
            return super().cb_config(ctx, param, value)
        except (OSError, TypeError, ValueError) as exc:
            msg = f"cannot read the config ({exc}); pass a JSON object file or ENV"
            raise click.BadParameter(msg) from None


def prepare_logging() -> None:
    """Mask secrets in every log record and quiet the SDK's noisy lines."""
    redact.install()
    install_log_filters(f"tap-filestore.{FilesStream.name}")


def _honour_replication_method(catalog: dict[str, t.Any]) -> dict[str, t.Any]:
    """Let stream metadata choose the replication method, as Meltano's `metadata:` does.

    The SDK prefers the entry's `replication_method` (which its own discovery
    fills in) and never reads the Singer `replication-method` metadata, so
    `replication-method: FULL_TABLE` would be ignored.
    """
    catalog = copy.deepcopy(catalog)
    for entry in catalog.get("streams", []):
        for item in entry.get("metadata", []):
            meta = item.get("metadata", {})
            chosen = meta.get("replication-method") or meta.get(
                "forced-replication-method"
            )
            if not item.get("breadcrumb") and chosen:
                entry["replication_method"] = chosen
    return catalog


def _report_error(
    exc_type: type[BaseException],
    exc: BaseException,
    traceback: TracebackType | None,
) -> None:
    """Log a known failure as its one-line message; anything else with a traceback."""
    logger = logging.getLogger(TapFileStore.name)
    info = (exc_type, exc, traceback)
    if isinstance(exc, FileStoreError):
        logger.error("%s", exc)
        logger.debug("Traceback", exc_info=info)
    elif isinstance(exc, KeyboardInterrupt):
        sys.__excepthook__(*info)
    else:
        logger.error("Unexpected %s: %s", exc_type.__name__, exc, exc_info=info)
