"""The one exception type for mistakes a user can fix (the CLI prints it as one line, exit code 2)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for one-line error messages."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


class CnnlabError(Exception):
    """A bad option value, a missing or corrupt file: something the user can fix."""


class TrainingInterrupted(BaseException):
    """Training stopped at an epoch boundary on request (training/interrupts.py): a signal, or a study being stopped.

    A BaseException (like KeyboardInterrupt) so no ``except Exception`` swallows it, but not a
    KeyboardInterrupt, which Lightning would turn into ``sys.exit(1)``. ``signum`` gives the exit code (128 +
    signum: 130 for Ctrl-C, 143 for SIGTERM, as a shell reports a process the signal ended).
    """

    def __init__(self, message: str = "", reason: str = "", signum: int = 2) -> None:
        super().__init__(message)
        self.reason, self.signum = reason, signum
