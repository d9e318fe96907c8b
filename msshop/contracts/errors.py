"""Errors a person can act on: each carries one line that names the problem and the fix.

The CLI prints `error: <message>` and exits with `exit_code`; it never shows a traceback
for these. Anything else escaping is a bug in msshop.
"""


class MsshopError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(MsshopError):
    """A bad argument or setting: the same exit code as a command-line usage error."""

    exit_code = 2


class ConfigError(UsageError):
    pass


class SandboxError(MsshopError):
    """The sandbox is not in the state the command needs (running, stopped, healthy)."""


class ServiceError(MsshopError):
    """A running service answered with an error."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status
