"""The library's own error types.

Every problem a user can fix (bad data, a bad option, a missing file) is raised as a
:class:`PyroVAEError` whose message is one sentence naming the problem and the fix.
The CLI turns these into exit code 2 without a traceback; anything else is a bug.
"""


class PyroVAEError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(PyroVAEError):
    """An option or configuration file is wrong."""


class DataError(PyroVAEError):
    """A data file or data set is missing, corrupt, or unsuited to the likelihood."""


class CheckpointError(PyroVAEError):
    """A run directory or checkpoint cannot be used."""


class WriteError(PyroVAEError):
    """A file could not be written (full disk, read-only or missing directory); the previous
    version of the file, if any, is intact and no temporary file is left."""


class TrainingError(PyroVAEError):
    """Training cannot go on (for example, the loss became NaN)."""


class TrainingInterrupted(PyroVAEError):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint it can resume from."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived outside the training loop, which handles them itself: the
    CLI treats it as Ctrl-C from its first instant (no checkpoint is half-written)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
