"""User-facing errors: the CLI prints them without a traceback (exit status 2)."""


class RlcgError(Exception):
    """Base of errors caused by input (files, arguments, data), not by a bug."""


class CommandError(RlcgError):
    """A bad combination of command-line arguments."""
