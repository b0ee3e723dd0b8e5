"""Error codes (identical to corotypes.h) and typed exceptions."""

from __future__ import annotations

from enum import IntEnum


class CsErr(IntEnum):
    """``cs_error_t`` with Corosync's numbers (29 is unused there too)."""

    CS_OK = 1
    CS_ERR_LIBRARY = 2
    CS_ERR_VERSION = 3
    CS_ERR_INIT = 4
    CS_ERR_TIMEOUT = 5
    CS_ERR_TRY_AGAIN = 6
    CS_ERR_INVALID_PARAM = 7
    CS_ERR_NO_MEMORY = 8
    CS_ERR_BAD_HANDLE = 9
    CS_ERR_BUSY = 10
    CS_ERR_ACCESS = 11
    CS_ERR_NOT_EXIST = 12
    CS_ERR_NAME_TOO_LONG = 13
    CS_ERR_EXIST = 14
    CS_ERR_NO_SPACE = 15
    CS_ERR_INTERRUPT = 16
    CS_ERR_NAME_NOT_FOUND = 17
    CS_ERR_NO_RESOURCES = 18
    CS_ERR_NOT_SUPPORTED = 19
    CS_ERR_BAD_OPERATION = 20
    CS_ERR_FAILED_OPERATION = 21
    CS_ERR_MESSAGE_ERROR = 22
    CS_ERR_QUEUE_FULL = 23
    CS_ERR_QUEUE_NOT_AVAILABLE = 24
    CS_ERR_BAD_FLAGS = 25
    CS_ERR_TOO_BIG = 26
    CS_ERR_NO_SECTIONS = 27
    CS_ERR_CONTEXT_NOT_FOUND = 28
    CS_ERR_TOO_MANY_GROUPS = 30
    CS_ERR_SECURITY = 100


def cs_strerror(code: int) -> str:
    """Return Corosync's ``cs_strerror`` text: "success", the symbolic name, or "unknown error"."""
    if code == CsErr.CS_OK:
        return "success"
    try:
        return CsErr(code).name
    except ValueError:
        return "unknown error"


class CsError(Exception):
    """A call failed with a Corosync error code (the caller's or the daemon's fault)."""

    def __init__(self, code: CsErr, message: str = "") -> None:
        self.code = CsErr(code)
        super().__init__(message or cs_strerror(self.code))


class ConfigError(Exception):
    """The configuration is wrong: names the file and line at fault."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")
