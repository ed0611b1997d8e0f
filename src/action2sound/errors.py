"""The one error type users see for bad input: what was wrong, with which file, and what to do."""


class Action2SoundError(ValueError):
    """A user-facing error; the CLI prints its message on one line and exits with status 2."""
