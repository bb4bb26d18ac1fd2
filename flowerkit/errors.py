"""The one exception type that the CLIs turn into a single line on stderr."""


class FlowerkitError(ValueError):
    """A user-facing error: bad input, a missing file, an impossible setting.

    Subclasses `ValueError` so that library users can catch it as one.
    """
