"""The local file-storage API that the demo, tests and benchmarks run against."""

from tap_filestore.sandbox.dataset import Dataset, FileVersion
from tap_filestore.sandbox.server import Fault, Sandbox

__all__ = ["Dataset", "Fault", "FileVersion", "Sandbox"]
