"""The one exception type for mistakes a user can fix (the CLI prints it as one line, exit code 2)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when empty), for one-line error messages."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__


class CnnlabError(Exception):
    """A bad option value, a missing or corrupt file: something the user can fix."""


class TrainingInterrupted(BaseException):
    """Raised by cnnlab's SIGINT handler during training.

    A BaseException (like KeyboardInterrupt) so no ``except Exception`` swallows it, but not a
    KeyboardInterrupt, which Lightning would turn into ``sys.exit(1)``.
    """
