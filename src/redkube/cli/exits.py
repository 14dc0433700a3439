"""Every exit code redkube uses, in one place."""

from enum import IntEnum


class ExitStatus(IntEnum):
    SUCCESS = 0
    ERROR = 1
    USAGE = 2
    TIMEOUT = 3
    INTERRUPTED = 130


class UserError(Exception):
    """Something the user can fix; printed as one line, never as a traceback."""

    def __init__(self, message: str, status: ExitStatus = ExitStatus.ERROR) -> None:
        super().__init__(message)
        self.status = status
