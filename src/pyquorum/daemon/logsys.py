"""Corosync-style logging (``logging`` section): stderr, a log file and syslog.

A line looks like Corosync 3.1.7's (``timestamp: hires``)::

    Nov 22 01:00:02.880 [22200] vm pyquorumd notice  [QUORUM] Members[3]: 1 2 3

that is ``<time> [<pid>] <host> pyquorumd <priority padded to 7> [<subsys padded to 6>]
<message>``; ``timestamp: on`` drops the milliseconds, ``off`` the time.  Syslog gets
``[<subsys>] <message>`` with the priority and ``syslog_facility``.

Thresholds follow Corosync's logsys: a record passes a target when its priority is at
least as severe as the target's (``logfile_priority`` for the file and stderr,
``syslog_priority`` for syslog); ``debug: on`` opens every target to debug and
``debug: trace`` to trace.  A ``logger_subsys`` section overrides any of these (and
the ``to_*`` switches) for one subsystem.  Thresholds are computed once per subsystem.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import syslog
import time
from dataclasses import dataclass
from typing import Final, TextIO

from pyquorum.config.model import LoggerSubsys, LoggingConfig
from pyquorum.daemon.errors import StartupError

PRIORITIES: Final = {
    "emerg": 0, "alert": 1, "crit": 2, "error": 3, "err": 3, "warning": 4, "warn": 4,
    "notice": 5, "info": 6, "debug": 7, "trace": 8,
}  # fmt: skip
"""Priority names to syslog numbers (lower is more severe); trace is below debug."""
_NAMES: Final = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug", "trace")
_FACILITIES: Final = {
    "daemon": syslog.LOG_DAEMON, "auth": syslog.LOG_AUTH, "authpriv": syslog.LOG_AUTHPRIV,
    "cron": syslog.LOG_CRON, "ftp": getattr(syslog, "LOG_FTP", syslog.LOG_DAEMON),
    "kern": syslog.LOG_KERN, "lpr": syslog.LOG_LPR, "mail": syslog.LOG_MAIL,
    "news": syslog.LOG_NEWS, "syslog": syslog.LOG_SYSLOG, "user": syslog.LOG_USER,
    "uucp": syslog.LOG_UUCP,
    **{f"local{i}": getattr(syslog, f"LOG_LOCAL{i}") for i in range(8)},
}  # fmt: skip
APP_NAME: Final = "pyquorumd"


def priority_of(level: str) -> int:
    """The syslog number of a priority name (unknown names count as info)."""
    return PRIORITIES.get(level.lower(), PRIORITIES["info"])


@dataclass(frozen=True, slots=True)
class _Thresholds:
    stderr: int
    logfile: int
    syslog: int


def _threshold(enabled: bool, priority: str, debug: str) -> int:
    if not enabled:
        return -1
    if debug == "trace":
        return PRIORITIES["trace"]
    if debug == "on":
        return PRIORITIES["debug"]
    return priority_of(priority)


def thresholds_for(cfg: LoggingConfig, subsys: str) -> tuple[int, int, int]:
    """(stderr, logfile, syslog) thresholds of ``subsys``; -1 means the target is off."""
    sub = next((s for s in cfg.subsys if s.subsys == subsys), LoggerSubsys(subsys))
    debug = sub.debug if sub.debug is not None else cfg.debug
    file_prio = sub.logfile_priority or cfg.logfile_priority
    syslog_prio = sub.syslog_priority or cfg.syslog_priority
    return (
        _threshold(_pick(sub.to_stderr, cfg.to_stderr), file_prio, debug),
        _threshold(_pick(sub.to_logfile, cfg.to_logfile), file_prio, debug),
        _threshold(_pick(sub.to_syslog, cfg.to_syslog), syslog_prio, debug),
    )


def _pick(own: bool | None, top: bool) -> bool:
    return top if own is None else own


def format_line(now: float, pid: int, host: str, priority: int, subsys: str, message: str,
                timestamp: str) -> str:
    """One Corosync-format line (without the newline)."""
    name = _NAMES[min(max(priority, 0), len(_NAMES) - 1)]
    head = ""
    if timestamp != "off":
        tm = time.localtime(now)
        head = time.strftime("%b %d %H:%M:%S", tm)
        if timestamp == "hires":
            head += f".{int(now * 1000) % 1000:03d}"
        head += " "
    return f"{head}[{pid}] {host} {APP_NAME} {name:<7} [{subsys:<6}] {message}"


class DaemonLog:
    """The daemon's logger: ``log(level, subsys, message)`` to the configured targets."""

    SUBSYSTEMS: Final = ("MAIN", "TOTEM", "QUORUM", "VOTEQ")

    def __init__(self, cfg: LoggingConfig, *, source: str = "<config>",
                 stderr: TextIO | None = None) -> None:
        self._cfg = cfg
        self._pid = os.getpid()
        self._host = socket.gethostname().split(".")[0]
        self._stderr: TextIO | None = stderr if stderr is not None else sys.stderr
        self._file: TextIO | None = None
        self._syslog = False
        self._levels: dict[str, _Thresholds] = {}
        subsystems = {*self.SUBSYSTEMS, *(s.subsys for s in cfg.subsys)}
        for name in sorted(subsystems):
            self._levels[name] = _Thresholds(*thresholds_for(cfg, name))
        wants_file = any(t.logfile >= 0 for t in self._levels.values())
        if wants_file:
            if not cfg.logfile:
                raise StartupError(
                    f"{source}: logging.to_logfile is on but logging.logfile is not set"
                )
            try:
                self._file = open(cfg.logfile, "a", buffering=1, encoding="utf-8",  # noqa: SIM115
                                  errors="replace")
            except OSError as exc:
                raise StartupError(
                    f"{cfg.logfile}: cannot open the log file: {exc.strerror}"
                ) from None
        if any(t.syslog >= 0 for t in self._levels.values()):
            facility = _FACILITIES.get(cfg.syslog_facility, syslog.LOG_DAEMON)
            syslog.openlog(APP_NAME, syslog.LOG_PID | syslog.LOG_NDELAY, facility)
            self._syslog = True

    def detach_stderr(self) -> None:
        """Stop writing to stderr (the daemon closed its stdio)."""
        self._stderr = None

    def refresh_pid(self) -> None:
        """Take the current pid (after daemonizing forked)."""
        self._pid = os.getpid()

    def log(self, level: str, subsys: str, message: str) -> None:
        """Write one record to every target whose threshold lets it through; never raises."""
        prio = priority_of(level)
        t = self._levels.get(subsys)
        if t is None:
            t = _Thresholds(*thresholds_for(self._cfg, subsys))
            if len(self._levels) < 64:
                self._levels[subsys] = t
        message = message.replace("\n", " ")
        line: str | None = None
        for stream, limit in ((self._stderr, t.stderr), (self._file, t.logfile)):
            if stream is None or prio > limit:
                continue
            if line is None:
                line = format_line(time.time(), self._pid, self._host, prio, subsys, message,
                                   self._cfg.timestamp)
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass
        if self._syslog and prio <= t.syslog:
            with contextlib.suppress(OSError, ValueError):
                syslog.syslog(min(prio, syslog.LOG_DEBUG), f"[{subsys}] {message}")

    def close(self) -> None:
        """Close the log file and syslog."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._syslog:
            syslog.closelog()
            self._syslog = False
