"""The one exception type for mistakes a user can fix (the CLI prints it as one line, exit code 2)."""


class CnnlabError(Exception):
    """A bad option value, a missing or corrupt file: something the user can fix."""


class TrainingInterrupted(BaseException):
    """Raised by cnnlab's SIGINT handler during training.

    A BaseException (like KeyboardInterrupt) so no ``except Exception`` swallows it, but not a
    KeyboardInterrupt, which Lightning would turn into ``sys.exit(1)``.
    """
