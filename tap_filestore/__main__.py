"""`python -m tap_filestore`."""

from tap_filestore.tap import TapFileStore

TapFileStore.cli()
