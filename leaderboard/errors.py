"""The leaderboard's own errors: problems with result files and folders that the user fixes. The
command line prints them as one line, without a traceback, as it does the engine's errors."""


class ResultsError(Exception):
    """A results folder or file that cannot be used as given; the message names it and the fix."""


class ResultFileError(ResultsError):
    """A result file could not be read; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
