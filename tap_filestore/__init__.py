"""tap-filestore: a Singer tap for the file-storage API."""
