"""Logging into the host's log, tagged with the guest and the object."""

from wit_world.imports import log as _host


def trace(message: str) -> None:
    _host.log(_host.Level.TRACE, message)


def debug(message: str) -> None:
    _host.log(_host.Level.DEBUG, message)


def info(message: str) -> None:
    _host.log(_host.Level.INFO, message)


def warn(message: str) -> None:
    _host.log(_host.Level.WARN, message)


def error(message: str) -> None:
    _host.log(_host.Level.ERROR, message)
