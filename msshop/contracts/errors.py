"""Errors a person can act on: each carries one line that names the problem and the fix.

The CLI prints `error: <message>` and exits with `exit_code`; it never shows a traceback
for these. Anything else escaping is a bug in msshop.
"""

from __future__ import annotations

from collections.abc import Callable


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


class InvalidArgument(MsshopError):
    """A value (or a mix of values) a library function cannot take, in the words of its
    parameters, not of a command line: the instruments and the runtime do not know which
    flag set a value. `template` writes each parameter it names as `{parameter}`; the CLI
    turns the error into a usage error by writing in the flags (see `worded`), so a person
    reads `--timeout 9000 is out of range`, a caller of the library `timeout 9000 is …`.
    Exit 2, as any usage error."""

    exit_code = 2

    def __init__(self, template: str, *parameters: str) -> None:
        self.template = template
        self.parameters = parameters
        super().__init__(self.worded(lambda parameter: parameter))

    def worded(self, name: Callable[[str], str]) -> str:
        """The message with each `{parameter}` written as `name(parameter)`."""
        text = self.template
        for parameter in self.parameters:
            text = text.replace("{" + parameter + "}", name(parameter))
        return text
