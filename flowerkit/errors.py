"""The exception the CLIs turn into one line, and the warning for data that
flowerkit works around."""


class FlowerkitError(ValueError):
    """A user-facing error: bad input, a missing file, an impossible setting.

    Subclasses `ValueError` so that library users can catch it as one.
    """


class FlowerkitWarning(UserWarning):
    """Data problems that flowerkit works around (skipped files, ...)."""
