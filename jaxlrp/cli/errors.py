"""The error a command raises for a mistake of its user (see :func:`jaxlrp.cli.main`)."""

from __future__ import annotations


class CLIError(Exception):
    """A user error: printed as one line, exit status 1."""
