"""One base class for errors a user can fix; the CLI prints them without a traceback. And how messages count."""


def counted(n: int, noun: str) -> str:
    """'1 file', '2 files': a count as a message says it (one broken file read '1 files rejected'). `noun` is
    singular and takes an s."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


class AvdisError(Exception):
    """An error whose message names the input (file, field, URL) and what to do."""

    exit_code = 1
    # whether a restart may not meet it again (storage that did not answer): Ray Train restarts a run only for these
    # (`avdis.train.launch.stop_on_input_fault`); a fault in the input itself comes back at every restart
    retryable = False
    # where the traceback of this error, kept off the console, was written (`avdis.train.launch.train_worker`: a
    # Ray Train worker's log); the message names it, so the traceback is never lost
    traceback_log: str | None = None

    def __str__(self) -> str:
        said = super().__str__()
        return f"{said} (its traceback: {self.traceback_log})" if self.traceback_log else said


class UsageError(AvdisError, ValueError):
    """Bad command-line or config input, rejected before any work starts."""

    exit_code = 2
