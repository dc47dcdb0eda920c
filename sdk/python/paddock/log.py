"""Logging into the host's log, tagged with the guest and the object."""

from wit_world.imports import log as _host


def trace(message: str) -> None:
    """Writes one line to the host's log at trace level."""
    _host.log(_host.Level.TRACE, message)


def debug(message: str) -> None:
    """Writes one line to the host's log at debug level."""
    _host.log(_host.Level.DEBUG, message)


def info(message: str) -> None:
    """Writes one line to the host's log at info level."""
    _host.log(_host.Level.INFO, message)


def warn(message: str) -> None:
    """Writes one line to the host's log at warn level."""
    _host.log(_host.Level.WARN, message)


def error(message: str) -> None:
    """Writes one line to the host's log at error level."""
    _host.log(_host.Level.ERROR, message)
