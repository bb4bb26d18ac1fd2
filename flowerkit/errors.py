"""The exception the CLIs turn into one line, and the warning for data that
flowerkit works around."""

import difflib


class FlowerkitError(ValueError):
    """A user-facing error: bad input, a missing file, an impossible setting.

    Subclasses `ValueError` so that library users can catch it as one.
    """


class OfflineError(FlowerkitError):
    """A download failed: `what` (e.g. "tf_flowers", "weights") could not be
    fetched. The CLI answers it with the command that works offline."""

    def __init__(self, message: str, what: str):
        super().__init__(message)
        self.what = what


class FlowerkitWarning(UserWarning):
    """Data problems that flowerkit works around (skipped files, ...)."""


def did_you_mean(text: str, choices) -> str:
    """` Did you mean 'codelab'?` for the closest of `choices`, else ``: for
    messages about an unknown name (presets, backbones, subcommands)."""
    close = difflib.get_close_matches(str(text), [str(choice) for choice in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""
