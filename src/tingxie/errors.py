"""Errors a user can act on. The CLI prints them as one line, never a traceback."""


class TingxieError(Exception):
    """Base class: anything raised as this is shown to the user as its message."""


class AudioDecodeError(TingxieError):
    """The input is missing, empty, not audio, truncated or corrupt.

    Its message names the input ("a.wav: empty file"); `reason` is the part after the name, for
    a caller that prints the name itself (the CLI's one line per input names it once)."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class OptionError(TingxieError, ValueError):
    """An option has a value tingxie cannot use."""


class ModelNotFoundError(TingxieError):
    """A model name or path cannot be resolved to weights on this machine."""


class OutOfMemoryError(TingxieError):
    """Even the smallest possible batch does not fit in memory."""
