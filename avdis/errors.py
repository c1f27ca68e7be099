"""One base class for errors a user can fix; the CLI prints them without a traceback."""


class AvdisError(Exception):
    """An error whose message names the input (file, field, URL) and what to do."""

    exit_code = 1


class UsageError(AvdisError, ValueError):
    """Bad command-line or config input, rejected before any work starts."""

    exit_code = 2
