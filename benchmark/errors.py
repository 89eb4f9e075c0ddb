"""Errors that are the user's to fix: the CLI prints them as one clear line, without a traceback."""


class UserError(Exception):
    """Bad input (a dataset spec, a knob value, a path): the message names the parameter and the fix."""


class DataError(UserError):
    """A data file could not be read; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler preempting or timing out the job), handled like Ctrl-C: finished work is
    kept and the same command resumes."""
