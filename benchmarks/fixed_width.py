"""The tap with its pages in flight fixed at `max_concurrent_requests`: a baseline.

`python benchmarks/fixed_width.py --config CONFIG`: the same tap and CLI, but
the width starts at its ceiling and never shrinks, as before it adapted.
"""

from tap_filestore.prefetch import Width
from tap_filestore.tap import TapFileStore

Width.START = 16
Width.SLOWDOWN = float("inf")
Width.shrink = lambda _self, _now: False  # type: ignore[method-assign]

if __name__ == "__main__":
    TapFileStore.cli()
