"""Errors a user can act on. The CLI prints them as one line, never a traceback."""


class TingxieError(Exception):
    """Base class: anything raised as this is shown to the user as its message."""


class AudioDecodeError(TingxieError):
    """The input is missing, empty, not audio, truncated or corrupt."""


class OptionError(TingxieError, ValueError):
    """An option has a value tingxie cannot use."""


class ModelNotFoundError(TingxieError):
    """A model name or path cannot be resolved to weights on this machine."""


class OutOfMemoryError(TingxieError):
    """Even the smallest possible batch does not fit in memory."""
