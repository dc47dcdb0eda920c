"""The current time as a Kubernetes timestamp.

The guest's wall clock is the host's (or, under ``paddock test``, a fixed
instant, so fixture outputs are reproducible).
"""

import time as _time


def now() -> str:
    """The current time as an RFC 3339 timestamp with second precision
    (e.g. ``2025-01-01T00:00:00Z``), the format of ``metav1.Time``."""
    return _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime())
