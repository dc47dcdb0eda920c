"""Why a reconcile failed: raise one of these from ``reconcile``."""


class Transient(Exception):
    """Worth retrying: the host retries with per-object exponential backoff."""


class Permanent(Exception):
    """Not worth retrying until the object changes."""
