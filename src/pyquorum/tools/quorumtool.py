"""``pyquorumtool``: corosync-quorumtool (Corosync 3.1.7) for pyquorumd.

Theory of operation
-------------------
Three layers, so that everything but the socket traffic is testable without a daemon:

1. ``parse_args`` (pure) turns argv into ``ToolOptions`` or a ``ParseExit`` with the
   exact messages and exit code, following the C tool's getopt loop
   (``VHaslpmfe:v:hin:o:``): options are handled left to right, the last command option
   wins, the default command is ``-s``, invalid numbers stop with a message and exit 1,
   an unknown option or a missing argument prints the usage and exits 1.  Long options
   are added: ``--json``, ``--run-dir DIR`` and two commands, ``--reload`` and
   ``--cancel-wait-for-all`` (see below).
2. ``QuorumTool`` runs one command through a ``ClientApi`` (the corosync-shaped client
   calls, injectable): it reproduces the call sequence of spec 7.2 (getquorate; quorum
   trackstart CURRENT + dispatch ONE until the snapshot is handled + trackstop;
   votequorum trackstart CURRENT + dispatch ONE until its nodelist event gives the
   ring representative; getinfo per node) and collects plain values.
3. ``pyquorum.tools.qtformat`` renders those values byte for byte like the real tool.

Deliberate differences from the C tool (all documented in ``--help``):

* the command line is parsed before connecting, so ``-h``/``-V`` and bad options work
  without a daemon; the quorum service is connected first (a stopped daemon prints
  ``Cannot initialize QUORUM service``);
* ``-V`` prints ``pyquorumtool version: <pyquorum version>``; ``-h`` exits 0;
* every error exits 1 (``-s`` not quorate: 2), where 3.1.7 sometimes exits 2 or 255;
* ``-m`` waits on both event fds: after a quorum event it waits (at most
  ``VQ_NODELIST_WAIT_S``) for votequorum's nodelist event of the same ring instead of
  blocking until the next membership change; Ctrl-C ends it with exit 0.

pyquorum extensions (corosync-quorumtool has neither; Corosync does these with other
tools, whose messages they print):

* ``--reload``: ``corosync-cfgtool -R``, through the cfg service only: prints
  ``Reloading corosync.conf...`` then ``Done`` (exit 0), or ``Could not reload
  configuration. Error <cs_strerror>`` (exit 1);
* ``--cancel-wait-for-all``: ``corosync-cmapctl -s quorum.cancel_wait_for_all u8 1``,
  through cmap only: prints nothing (exit 0), or ``Failed to set key
  quorum.cancel_wait_for_all. Error <cs_strerror>`` (exit 1).

With ``--json`` they print ``{"ok": true}`` on success instead; errors stay text on
stderr, as for ``-e``/``-v``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol, TextIO

from pyquorum import __version__
from pyquorum.client import cfg, cmap, quorum, votequorum
from pyquorum.errors import CsErr, CsError, cs_strerror
from pyquorum.tools.qtformat import (
    INFO_QDEVICE_REGISTERED,
    VOTEQUORUM_PROVIDER,
    DisplayOptions,
    MemberRow,
    NodelistEntry,
    NodeVqInfo,
    SortOrder,
    StatusSnapshot,
    format_membership,
    format_status,
    membership_to_json,
    node_display_name,
    parse_nodelist,
    status_to_json,
)

PROG: Final = "pyquorumtool"
DEFAULT_RUN_DIR: Final = "/run/pyquorum"
RUN_DIR_ENV: Final = "PYQUORUM_RUN_DIR"

CS_DISPATCH_ONE: Final = 1
CS_DISPATCH_ALL: Final = 2
CS_DISPATCH_ONE_NONBLOCKING: Final = 4
CS_TRACK_CURRENT: Final = 1
CS_TRACK_CHANGES: Final = 2
QUORUM_FREE: Final = 0

INT_MAX: Final = 0x7FFFFFFF
UINT_MAX: Final = 0xFFFFFFFF
VQ_NODELIST_WAIT_S: Final = 2.0
"""-m: how long to wait for votequorum's nodelist event after a quorum event."""
_POLL_GONE: Final = select.POLLHUP | select.POLLERR | select.POLLNVAL
"""-m: poll bits of an event fd whose daemon is gone (or that was closed)."""

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_NOT_QUORATE: Final = 2

CANCEL_WAIT_FOR_ALL_KEY: Final = "quorum.cancel_wait_for_all"

Command = Literal["status", "nodes", "monitor", "setexpected", "setvotes", "unregister",
                  "reload", "cancel_wfa", "usage"]

_OPTSTRING: Final = "VHaslpmfe:v:hin:o:"
_LONGOPTS: Final = frozenset({"json", "run-dir", "help", "version", "reload",
                              "cancel-wait-for-all"})
_LONGOPTS_WITH_ARG: Final = frozenset({"run-dir"})


# ====================================================================== arguments
@dataclass(frozen=True, slots=True)
class ToolOptions:
    """A parsed command line."""

    command: Command = "status"
    display: DisplayOptions = field(default_factory=DisplayOptions)
    ip: bool = False
    all_addrs: bool = False
    votes: int = 0
    nodeid: int | None = None
    json: bool = False
    run_dir: str = DEFAULT_RUN_DIR
    warnings: str = ""
    """getopt messages of unknown options that a later command option overrode."""


@dataclass(frozen=True, slots=True)
class ParseExit:
    """The command line ends the program before any daemon call."""

    code: int
    stdout: str = ""
    stderr: str = ""


def usage_text(prog: str = PROG) -> str:
    """The usage text (the C tool's, plus the two long options)."""
    return (
        "usage: \n"
        f"{prog} <options>\n"
        "\n"
        "  options:\n"
        "\n"
        "  -s             show quorum status\n"
        "  -m             constantly monitor quorum status\n"
        "  -l             list nodes\n"
        "  -a             show all names or addresses for each node\n"
        "  -p             when used with -s or -l, generates machine parsable output\n"
        "  -v <votes>     change the number of votes for a node (*)\n"
        "  -n <nodeid>    optional nodeid of node for -v\n"
        "  -e <expected>  change expected votes for the cluster (*)\n"
        "  -H             show nodeids in hexadecimal rather than decimal\n"
        "  -i             show node IP addresses instead of the resolved name\n"
        "  -o <a|n|i>     order by [a] IP address (default), [n] name, [i] nodeid\n"
        "  -f             forcefully unregister a quorum device *DANGEROUS* (*)\n"
        "  -h             show this help text\n"
        "  -V             show version and exit\n"
        "  --reload       tell every node of the cluster to reload its configuration\n"
        "                 file (like corosync-cfgtool -R)\n"
        "  --cancel-wait-for-all\n"
        "                 cancel wait_for_all on every node (*) (like corosync-cmapctl\n"
        "                 -s quorum.cancel_wait_for_all u8 1)\n"
        "  --json         print one JSON object (per event with -m) instead of text\n"
        "  --run-dir DIR  the daemon's run directory (default: $PYQUORUM_RUN_DIR,\n"
        f"                 else {DEFAULT_RUN_DIR})\n"
        "\n"
        "  (*) Starred items only work if votequorum is the quorum provider for corosync\n"
        "\n"
        "  Exit status: 0 quorate (or success), 2 not quorate (-s), 1 any error.\n"
        "\n"
    )


def c_strtol(text: str) -> int | None:
    """``strtol(text, &end, 0)``: the value of the longest numeric prefix, or None.

    Leading whitespace and a sign are accepted, ``0x`` selects hex and a leading ``0``
    octal; trailing characters are ignored, as in the C tool.  None means no digits.
    """
    s = text.lstrip(" \t\n\r\f\v")
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    base = 10
    if s[:2].lower() == "0x" and len(s) > 2 and s[2] in "0123456789abcdefABCDEF":
        base, s = 16, s[2:]
    elif s[:1] == "0":
        base = 8
    digits = "0123456789abcdef"[:base]
    n = 0
    while n < len(s) and s[n].lower() in digits:
        n += 1
    if n == 0:
        return None
    return sign * int(s[:n], base)


def _iter_opts(argv: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """getopt-like scan: (option, argument, error) triples, left to right.

    ``option`` is one character for short options or ``--name`` for long ones; ``error``
    is set (and option is ``?``) for unknown options and missing arguments.  Non-option
    arguments are skipped (glibc permutes them to the end; the tool ignores them).
    """
    out: list[tuple[str, str | None, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in _LONGOPTS:
                out.append(("?", None, f"unrecognized option '{arg}'"))
                continue
            if name in _LONGOPTS_WITH_ARG:
                if not eq:
                    if i >= len(argv):
                        out.append(("?", None, f"option '--{name}' requires an argument"))
                        continue
                    value = argv[i]
                    i += 1
                out.append((f"--{name}", value, None))
            elif eq:
                out.append(("?", None, f"option '--{name}' doesn't allow an argument"))
            else:
                out.append((f"--{name}", None, None))
            continue
        if not arg.startswith("-") or arg == "-":
            continue
        j = 1
        while j < len(arg):
            ch = arg[j]
            j += 1
            pos = _OPTSTRING.find(ch)
            if ch == ":" or pos < 0:
                out.append(("?", None, f"invalid option -- '{ch}'"))
                continue
            if pos + 1 < len(_OPTSTRING) and _OPTSTRING[pos + 1] == ":":
                if j < len(arg):
                    value = arg[j:]
                elif i < len(argv):
                    value = argv[i]
                    i += 1
                else:
                    out.append(("?", None, f"option requires an argument -- '{ch}'"))
                    break
                out.append((ch, value, None))
                break
            out.append((ch, None, None))
    return out


def parse_args(
    argv: Sequence[str], *, prog: str = PROG, env_run_dir: str | None = None
) -> ToolOptions | ParseExit:
    """Parse ``argv`` (without the program name) like the C tool's getopt loop."""
    opts = ToolOptions(run_dir=env_run_dir or DEFAULT_RUN_DIR)
    display = DisplayOptions()
    errors: list[str] = []
    for opt, value, error in _iter_opts(argv):
        if error is not None:
            errors.append(f"{prog}: {error}\n")
            opts = replace(opts, command="usage")
        elif opt == "s":
            opts = replace(opts, command="status")
        elif opt == "l":
            opts = replace(opts, command="nodes")
        elif opt == "m":
            opts = replace(opts, command="monitor")
        elif opt == "f":
            opts = replace(opts, command="unregister")
        elif opt == "a":
            opts = replace(opts, all_addrs=True)
        elif opt == "i":
            opts = replace(opts, ip=True)
        elif opt == "H":
            display = replace(display, hex_ids=True)
        elif opt == "p":
            display = replace(display, machine_parsable=True)
        elif opt == "e":
            n = c_strtol(value or "")
            if n is None or not 1 <= n <= INT_MAX:
                return ParseExit(EXIT_FAILURE, stderr="".join(errors) + (
                    "New expected votes value was not valid, try a positive number\n"))
            opts = replace(opts, command="setexpected", votes=n)
        elif opt == "v":
            n = c_strtol(value or "")
            if n is None or not 0 <= n <= INT_MAX:
                return ParseExit(EXIT_FAILURE, stderr="".join(errors) + (
                    "New votes value was not valid, try a positive number or zero\n"))
            opts = replace(opts, command="setvotes", votes=n)
        elif opt == "n":
            n = c_strtol(value or "")
            if n is None or not 1 <= n <= UINT_MAX:
                return ParseExit(EXIT_FAILURE, stderr="".join(errors) + (
                    "The nodeid was not valid, try a positive number\n"))
            opts = replace(opts, nodeid=n)
        elif opt == "o":
            order = (value or "")[:1]
            if order not in ("a", "n", "i"):
                return ParseExit(EXIT_FAILURE, stderr="".join(errors) + (
                    "Invalid ordering option. valid orders are a(address), i(node ID) "
                    "or n(name)\n"))
            sort: SortOrder = "a" if order == "a" else "n" if order == "n" else "i"
            display = replace(display, sort=sort)
        elif opt in ("V", "--version"):
            return ParseExit(EXIT_OK, stdout=f"{prog} version: {__version__}\n",
                             stderr="".join(errors))
        elif opt in ("h", "--help"):
            return ParseExit(EXIT_OK, stdout=usage_text(prog), stderr="".join(errors))
        elif opt == "--reload":
            opts = replace(opts, command="reload")
        elif opt == "--cancel-wait-for-all":
            opts = replace(opts, command="cancel_wfa")
        elif opt == "--json":
            opts = replace(opts, json=True)
        elif opt == "--run-dir":
            opts = replace(opts, run_dir=value or DEFAULT_RUN_DIR)
    if opts.command == "usage":
        return ParseExit(EXIT_FAILURE, stdout=usage_text(prog), stderr="".join(errors))
    return replace(opts, display=display, warnings="".join(errors))


# ====================================================================== client calls
QuorumNotify = Callable[[int, int, int, list[int]], None]
"""V0 quorum callback: (handle, quorate, ring_seq, view_list)."""
VqNodelistNotify = Callable[[int, int, int], None]
"""Votequorum nodelist callback as the tool needs it: (ring_rep, ring_seq, n_members)."""


class ClientApi(Protocol):
    """The corosync-shaped calls the tool makes (``pyquorum.client`` or a test double).

    Every method raises ``CsError`` on failure, like ``pyquorum.client``.
    """

    def quorum_initialize(self, notify: QuorumNotify) -> tuple[int, int]:
        """``quorum_initialize`` with a V0 callback: (handle, quorum_type)."""
        ...

    def quorum_finalize(self, handle: int) -> None:
        """``quorum_finalize``."""
        ...

    def quorum_fd_get(self, handle: int) -> int:
        """``quorum_fd_get``."""
        ...

    def quorum_dispatch(self, handle: int, flags: int) -> None:
        """``quorum_dispatch``."""
        ...

    def quorum_getquorate(self, handle: int) -> int:
        """``quorum_getquorate``."""
        ...

    def quorum_trackstart(self, handle: int, flags: int) -> None:
        """``quorum_trackstart``."""
        ...

    def quorum_trackstop(self, handle: int) -> None:
        """``quorum_trackstop``."""
        ...

    def votequorum_initialize(self, nodelist_notify: VqNodelistNotify) -> int:
        """``votequorum_initialize`` with only a nodelist callback."""
        ...

    def votequorum_finalize(self, handle: int) -> None:
        """``votequorum_finalize``."""
        ...

    def votequorum_fd_get(self, handle: int) -> int:
        """``votequorum_fd_get``."""
        ...

    def votequorum_dispatch(self, handle: int, flags: int) -> None:
        """``votequorum_dispatch``."""
        ...

    def votequorum_trackstart(self, handle: int, context: int, flags: int) -> None:
        """``votequorum_trackstart``."""
        ...

    def votequorum_getinfo(self, handle: int, nodeid: int) -> NodeVqInfo:
        """``votequorum_getinfo``."""
        ...

    def votequorum_setexpected(self, handle: int, expected_votes: int) -> None:
        """``votequorum_setexpected``."""
        ...

    def votequorum_setvotes(self, handle: int, nodeid: int, votes: int) -> None:
        """``votequorum_setvotes``."""
        ...

    def votequorum_qdevice_unregister(self, handle: int, name: str) -> None:
        """``votequorum_qdevice_unregister``."""
        ...

    def cmap_get_prefix(self, prefix: str) -> dict[str, str]:
        """``cmap`` keys starting with ``prefix``."""
        ...

    def cmap_set_uint8(self, key: str, value: int) -> None:
        """``cmap_set_uint8`` (a short-lived cmap connection)."""
        ...

    def corosync_cfg_initialize(self) -> int:
        """``corosync_cfg_initialize`` without callbacks."""
        ...

    def corosync_cfg_finalize(self, handle: int) -> None:
        """``corosync_cfg_finalize``."""
        ...

    def corosync_cfg_reload_config(self, handle: int) -> None:
        """``corosync_cfg_reload_config``."""
        ...


class RealClientApi:
    """``ClientApi`` over ``pyquorum.client`` for the daemon of one run directory."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def quorum_initialize(self, notify: QuorumNotify) -> tuple[int, int]:
        """See ``ClientApi``."""
        return quorum.quorum_initialize(quorum.QuorumCallbacks(quorum_notify_fn=notify),
                                        run_dir=self.run_dir)

    def quorum_finalize(self, handle: int) -> None:
        """See ``ClientApi``."""
        quorum.quorum_finalize(handle)

    def quorum_fd_get(self, handle: int) -> int:
        """See ``ClientApi``."""
        return quorum.quorum_fd_get(handle)

    def quorum_dispatch(self, handle: int, flags: int) -> None:
        """See ``ClientApi``."""
        quorum.quorum_dispatch(handle, flags)

    def quorum_getquorate(self, handle: int) -> int:
        """See ``ClientApi``."""
        return quorum.quorum_getquorate(handle)

    def quorum_trackstart(self, handle: int, flags: int) -> None:
        """See ``ClientApi``."""
        quorum.quorum_trackstart(handle, flags)

    def quorum_trackstop(self, handle: int) -> None:
        """See ``ClientApi``."""
        quorum.quorum_trackstop(handle)

    def votequorum_initialize(self, nodelist_notify: VqNodelistNotify) -> int:
        """See ``ClientApi``."""
        def on_nodelist(_handle: int, _context: int, ring_id: Any, nodeids: list[int]) -> None:
            nodelist_notify(int(ring_id.nodeid), int(ring_id.seq), len(nodeids))

        callbacks = votequorum.VotequorumCallbacks(nodelist_notify_fn=on_nodelist)
        return votequorum.votequorum_initialize(callbacks, run_dir=self.run_dir)

    def votequorum_finalize(self, handle: int) -> None:
        """See ``ClientApi``."""
        votequorum.votequorum_finalize(handle)

    def votequorum_fd_get(self, handle: int) -> int:
        """See ``ClientApi``."""
        return votequorum.votequorum_fd_get(handle)

    def votequorum_dispatch(self, handle: int, flags: int) -> None:
        """See ``ClientApi``."""
        votequorum.votequorum_dispatch(handle, flags)

    def votequorum_trackstart(self, handle: int, context: int, flags: int) -> None:
        """See ``ClientApi``."""
        votequorum.votequorum_trackstart(handle, context, flags)

    def votequorum_getinfo(self, handle: int, nodeid: int) -> NodeVqInfo:
        """See ``ClientApi``."""
        i = votequorum.votequorum_getinfo(handle, nodeid)
        return NodeVqInfo(
            node_id=i.node_id, node_state=i.node_state, node_votes=i.node_votes,
            node_expected_votes=i.node_expected_votes, highest_expected=i.highest_expected,
            total_votes=i.total_votes, quorum=i.quorum, flags=i.flags,
            qdevice_votes=i.qdevice_votes, qdevice_name=i.qdevice_name,
        )

    def votequorum_setexpected(self, handle: int, expected_votes: int) -> None:
        """See ``ClientApi``."""
        votequorum.votequorum_setexpected(handle, expected_votes)

    def votequorum_setvotes(self, handle: int, nodeid: int, votes: int) -> None:
        """See ``ClientApi``."""
        votequorum.votequorum_setvotes(handle, nodeid, votes)

    def votequorum_qdevice_unregister(self, handle: int, name: str) -> None:
        """See ``ClientApi``."""
        votequorum.votequorum_qdevice_unregister(handle, name)

    def cmap_get_prefix(self, prefix: str) -> dict[str, str]:
        """See ``ClientApi``."""
        return dict(cmap.cmap_get_prefix(prefix, run_dir=self.run_dir))

    def cmap_set_uint8(self, key: str, value: int) -> None:
        """See ``ClientApi``."""
        cmap.cmap_set_uint8(key, value, run_dir=self.run_dir)

    def corosync_cfg_initialize(self) -> int:
        """See ``ClientApi``."""
        return cfg.corosync_cfg_initialize(None, run_dir=self.run_dir)

    def corosync_cfg_finalize(self, handle: int) -> None:
        """See ``ClientApi``."""
        cfg.corosync_cfg_finalize(handle)

    def corosync_cfg_reload_config(self, handle: int) -> None:
        """See ``ClientApi``."""
        cfg.corosync_cfg_reload_config(handle)


def reverse_lookup(addr: str) -> str:
    """``getnameinfo`` without flags: the host name of ``addr``, else its numeric form."""
    try:
        return socket.getnameinfo((addr, 0), 0)[0]
    except (OSError, UnicodeError):
        return addr


# ====================================================================== the tool
class ToolFailed(Exception):
    """A step failed; its message was already printed."""


@dataclass(slots=True)
class _QuorumView:
    called: bool = False
    quorate: bool = False
    ring_seq: int = 0
    members: tuple[int, ...] = ()


@dataclass(slots=True)
class _VqRing:
    called: bool = False
    rep: int = 0
    seq: int = -1


class QuorumTool:
    """One run of pyquorumtool against one daemon (see the module docstring)."""

    def __init__(
        self,
        api: ClientApi,
        options: ToolOptions,
        *,
        out: TextIO,
        err: TextIO,
        clock: Callable[[], float] = time.time,
        lookup: Callable[[str], str] = reverse_lookup,
    ) -> None:
        self.api = api
        self.opts = options
        self.out = out
        self.err = err
        self.clock = clock
        self.lookup = lookup
        self.q_handle: int | None = None
        self.q_type = QUORUM_FREE
        self.v_handle: int | None = None
        self.c_handle: int | None = None
        self.provider: str | None = None
        self.our_nodeid = 0
        self.view = _QuorumView()
        self.vq_ring = _VqRing()

    # ------------------------------------------------------------ plumbing
    def _error(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def _fail(self, text: str) -> ToolFailed:
        self._error(text)
        return ToolFailed(text)

    def _on_quorum(self, _handle: int, quorate: int, ring_seq: int, view: list[int]) -> None:
        self.view = _QuorumView(True, bool(quorate), int(ring_seq), tuple(int(n) for n in view))

    def _on_vq_nodelist(self, rep: int, seq: int, _count: int) -> None:
        self.vq_ring = _VqRing(True, rep, seq)

    def using_votequorum(self) -> int:
        """The C helper: 1 votequorum, 0 another provider, -1 none (QUORUM_FREE or unset)."""
        if self.provider is None:
            return -1
        return 1 if self.provider == VOTEQUORUM_PROVIDER else 0

    # ------------------------------------------------------------ set-up
    def init_all(self) -> None:
        """Connect quorum, read cmap, connect votequorum if it is the provider."""
        try:
            self.q_handle, self.q_type = self.api.quorum_initialize(self._on_quorum)
        except CsError:
            raise self._fail("Cannot initialize QUORUM service") from None
        try:
            keys = self.api.cmap_get_prefix("quorum.")
            runtime = self.api.cmap_get_prefix("runtime.votequorum.")
        except CsError:
            raise self._fail("Cannot initialize CMAP service") from None
        if self.q_type != QUORUM_FREE:
            self.provider = keys.get("quorum.provider")
        if self.using_votequorum() <= 0:
            return
        try:
            self.v_handle = self.api.votequorum_initialize(self._on_vq_nodelist)
        except CsError:
            raise self._fail("Cannot initialise VOTEQUORUM service") from None
        this_node = c_strtol(runtime.get("runtime.votequorum.this_node_id", ""))
        if this_node is None:
            raise self._fail("Unable to retrieve this_node_id")
        self.our_nodeid = this_node

    def close_all(self) -> None:
        """Finalize every handle that was opened (errors ignored)."""
        if self.c_handle is not None:
            with contextlib.suppress(CsError):
                self.api.corosync_cfg_finalize(self.c_handle)
            self.c_handle = None
        if self.q_handle is not None:
            with contextlib.suppress(CsError):
                self.api.quorum_finalize(self.q_handle)
            self.q_handle = None
        if self.v_handle is not None:
            with contextlib.suppress(CsError):
                self.api.votequorum_finalize(self.v_handle)
            self.v_handle = None

    def run(self) -> int:
        """Run the command; returns the exit status."""
        try:
            cmd = self.opts.command
            if cmd == "reload":  # the cfg service only
                return self.reload_config()
            if cmd == "cancel_wfa":  # cmap only
                return self.cancel_wait_for_all()
            self.init_all()
            if cmd in ("setexpected", "setvotes", "unregister") and self.using_votequorum() <= 0:
                what = {"setexpected": "change expected votes",
                        "setvotes": "change node votes",
                        "unregister": "unregister quorum device"}[cmd]
                raise self._fail(f"You cannot {what}, corosync is not using votequorum")
            if cmd == "status":
                return self.show_status()
            if cmd == "nodes":
                return self.show_nodes()
            if cmd == "monitor":
                return self.monitor()
            if cmd == "setexpected":
                return self.set_expected()
            if cmd == "setvotes":
                return self.set_votes()
            return self.unregister_qdevice()
        except ToolFailed:
            return EXIT_FAILURE
        except KeyboardInterrupt:
            return EXIT_OK if self.opts.command == "monitor" else EXIT_FAILURE
        finally:
            self.close_all()

    # ------------------------------------------------------------ collection
    def _quorum_snapshot(self) -> None:
        assert self.q_handle is not None
        try:
            self.api.quorum_trackstart(self.q_handle, CS_TRACK_CURRENT)
        except CsError as e:
            raise self._fail(f"Unable to start quorum status tracking: {cs_strerror(e.code)}"
                             ) from None
        self.view = _QuorumView()
        while not self.view.called:
            try:
                self.api.quorum_dispatch(self.q_handle, CS_DISPATCH_ONE)
            except CsError as e:
                raise self._fail(f"Unable to dispatch quorum status: {cs_strerror(e.code)}"
                                 ) from None

    def _vq_ring_snapshot(self) -> None:
        if self.v_handle is None:
            raise self._fail("Unable to start votequorum status tracking: "
                             f"{cs_strerror(CsErr.CS_ERR_BAD_HANDLE)}")
        try:
            self.api.votequorum_trackstart(self.v_handle, 0, CS_TRACK_CURRENT)
        except CsError as e:
            raise self._fail("Unable to start votequorum status tracking: "
                             f"{cs_strerror(e.code)}") from None
        self.vq_ring = _VqRing()
        while not self.vq_ring.called:
            try:
                self.api.votequorum_dispatch(self.v_handle, CS_DISPATCH_ONE)
            except CsError as e:
                raise self._fail(f"Unable to dispatch votequorum status: {cs_strerror(e.code)}"
                                 ) from None

    def _nodelist(self) -> dict[int, NodelistEntry]:
        try:
            return parse_nodelist(self.api.cmap_get_prefix("nodelist."))
        except CsError:
            return {}

    def _members(self) -> tuple[MemberRow, ...]:
        nodelist = self._nodelist()
        rows: list[MemberRow] = []
        for nodeid in self.view.members:
            info: NodeVqInfo | None = None
            if self.v_handle is not None:
                try:
                    info = self.api.votequorum_getinfo(self.v_handle, nodeid)
                except CsError:
                    info = None
            name = node_display_name(nodeid, nodelist, ip=self.opts.ip,
                                     all_addrs=self.opts.all_addrs, reverse_lookup=self.lookup)
            rows.append(MemberRow(nodeid=nodeid, name=name, info=info))
        return tuple(rows)

    def collect_status(self, quorate: bool) -> StatusSnapshot:
        """Gather one ``StatusSnapshot`` from the current view and getinfo calls."""
        local_info: NodeVqInfo | None = None
        local_error: int | None = None
        if self.v_handle is not None:
            try:
                local_info = self.api.votequorum_getinfo(self.v_handle, self.our_nodeid)
            except CsError as e:
                local_error = int(e.code)
        return StatusSnapshot(
            date=time.ctime(self.clock()),
            quorum_provider=self.provider,
            local_nodeid=self.our_nodeid,
            ring_seq=self.view.ring_seq,
            quorate=quorate,
            votequorum=self.v_handle is not None,
            ring_rep=self.vq_ring.rep,
            local_info=local_info,
            local_info_error=local_error,
            members=self._members(),
        )

    def _print_status(self, snapshot: StatusSnapshot) -> None:
        if self.opts.json:
            self.out.write(json.dumps(status_to_json(snapshot, self.opts.display)) + "\n")
        else:
            self.out.write(format_status(snapshot, self.opts.display))
        self.out.flush()
        if snapshot.local_info_error is not None:
            raise self._fail(f"Unable to get node info: {cs_strerror(snapshot.local_info_error)}")

    # ------------------------------------------------------------ commands
    def show_status(self) -> int:
        """``-s``: returns 0 quorate, 2 not quorate (1 via ToolFailed)."""
        assert self.q_handle is not None
        try:
            quorate = bool(self.api.quorum_getquorate(self.q_handle))
        except CsError as e:
            raise self._fail(f"Unable to get cluster quorate status: {cs_strerror(e.code)}"
                             ) from None
        self._quorum_snapshot()
        try:
            self.api.quorum_trackstop(self.q_handle)
        except CsError as e:
            self._error(f"Unable to stop quorum status tracking: {cs_strerror(e.code)}")
        if self.using_votequorum():
            self._vq_ring_snapshot()
        self._print_status(self.collect_status(quorate))
        return EXIT_OK if quorate else EXIT_NOT_QUORATE

    def show_nodes(self) -> int:
        """``-l``: the membership block only."""
        self._quorum_snapshot()
        members = self._members()
        vq = self.v_handle is not None
        if self.opts.json:
            obj = {"nodes": len(members), "node_id": self.our_nodeid}
            obj.update(membership_to_json(members, local_nodeid=self.our_nodeid,
                                          votequorum=vq, options=self.opts.display))
            self.out.write(json.dumps(obj) + "\n")
        else:
            self.out.write(format_membership(members, local_nodeid=self.our_nodeid,
                                             votequorum=vq, options=self.opts.display))
        self.out.flush()
        return EXIT_OK

    def monitor(self) -> int:
        """``-m``: print now and after every quorum event until Ctrl-C or an error."""
        if self.q_type == QUORUM_FREE:
            self.out.write("\nQuorum is not configured - cannot monitor\n")
            return self.show_status()
        assert self.q_handle is not None
        try:
            self.api.quorum_trackstart(self.q_handle, CS_TRACK_CHANGES)
        except CsError as e:
            raise self._fail(f"Unable to start quorum status tracking: {cs_strerror(e.code)}"
                             ) from None
        use_vq = bool(self.using_votequorum())
        if use_vq:
            if self.v_handle is None:
                raise self._fail("Unable to start votequorum status tracking: "
                                 f"{cs_strerror(CsErr.CS_ERR_BAD_HANDLE)}")
            try:
                self.api.votequorum_trackstart(self.v_handle, 0, CS_TRACK_CHANGES)
            except CsError as e:
                raise self._fail("Unable to start votequorum status tracking: "
                                 f"{cs_strerror(e.code)}") from None
        qfd = self.api.quorum_fd_get(self.q_handle)
        vfd = self.api.votequorum_fd_get(self.v_handle) if use_vq and self.v_handle else None
        pending = False
        deadline = 0.0
        poller = select.poll()
        while True:
            timeout_ms: int | None = None
            # While pending only votequorum's nodelist event can complete the block: the
            # quorum fd is then watched for a hang-up only (poll reports POLLHUP/POLLERR/
            # POLLNVAL whatever the mask), so a lost daemon ends -m in every state.
            poller.register(qfd, 0 if pending else select.POLLIN)
            if vfd is not None:
                poller.register(vfd, select.POLLIN)
            if pending:
                timeout_ms = max(0, math.ceil((deadline - time.monotonic()) * 1000))
            ready = dict(poller.poll(timeout_ms))
            if vfd is not None and vfd in ready:
                assert self.v_handle is not None
                try:
                    self.api.votequorum_dispatch(self.v_handle, CS_DISPATCH_ALL)
                except CsError as e:
                    raise self._fail("Unable to dispatch votequorum status: "
                                     f"{cs_strerror(e.code)}") from None
                if ready[vfd] & _POLL_GONE:  # lost, though dispatch did not say so
                    raise self._fail("Unable to dispatch votequorum status: "
                                     f"{cs_strerror(CsErr.CS_ERR_LIBRARY)}")
            if qfd in ready and not pending:
                self.view.called = False
                try:
                    self.api.quorum_dispatch(self.q_handle, CS_DISPATCH_ONE_NONBLOCKING)
                except CsError as e:
                    if e.code != CsErr.CS_ERR_TRY_AGAIN:
                        raise self._fail("Unable to dispatch quorum status: "
                                         f"{cs_strerror(e.code)}") from None
                if self.view.called:
                    pending = True
                    deadline = time.monotonic() + VQ_NODELIST_WAIT_S
                elif ready[qfd] & _POLL_GONE:  # no event and hung up: never readable again
                    raise self._fail("Unable to dispatch quorum status: "
                                     f"{cs_strerror(CsErr.CS_ERR_LIBRARY)}")
            elif qfd in ready and ready[qfd] & _POLL_GONE:  # hung up while pending
                raise self._fail("Unable to dispatch quorum status: "
                                 f"{cs_strerror(CsErr.CS_ERR_LIBRARY)}")
            if pending and (vfd is None or self.vq_ring.seq == self.view.ring_seq
                            or time.monotonic() >= deadline):
                pending = False
                snapshot = self.collect_status(self.view.quorate)
                self._print_status(snapshot)
                if not self.opts.json:
                    self.out.write("\n")
                    self.out.flush()

    def set_expected(self) -> int:
        """``-e``."""
        assert self.v_handle is not None
        try:
            self.api.votequorum_setexpected(self.v_handle, self.opts.votes)
        except CsError as e:
            raise self._fail(f"Unable to set expected votes: {cs_strerror(e.code)}") from None
        if self.opts.json:
            self.out.write(json.dumps({"ok": True, "expected_votes": self.opts.votes}) + "\n")
        return EXIT_OK

    def set_votes(self) -> int:
        """``-v`` (with ``-n``, default the local node)."""
        assert self.v_handle is not None
        nodeid = self.opts.nodeid if self.opts.nodeid is not None else self.our_nodeid
        try:
            self.api.votequorum_setvotes(self.v_handle, nodeid, self.opts.votes)
        except CsError as e:
            raise self._fail(f"Unable to set votes {self.opts.votes} for nodeid: {nodeid}: "
                             f"{cs_strerror(e.code)}") from None
        if self.opts.json:
            self.out.write(json.dumps({"ok": True, "nodeid": nodeid,
                                       "votes": self.opts.votes}) + "\n")
        return EXIT_OK

    def unregister_qdevice(self) -> int:
        """``-f``: force-unregister the local quorum device (0 also when none)."""
        assert self.v_handle is not None
        try:
            info = self.api.votequorum_getinfo(self.v_handle, self.our_nodeid)
        except CsError as e:
            raise self._fail(f"Unable to get quorum device info: {cs_strerror(e.code)}"
                             ) from None
        if info.flags & INFO_QDEVICE_REGISTERED:
            try:
                self.api.votequorum_qdevice_unregister(self.v_handle, info.qdevice_name)
            except CsError as e:
                raise self._fail(f"Unable to unregister quorum device: {cs_strerror(e.code)}"
                                 ) from None
        if self.opts.json:
            self.out.write(json.dumps({"ok": True, "unregistered": bool(
                info.flags & INFO_QDEVICE_REGISTERED)}) + "\n")
        return EXIT_OK


    def _print_ok(self) -> None:
        """``--json``: the success object of the pyquorum-only commands."""
        if self.opts.json:
            self.out.write(json.dumps({"ok": True}) + "\n")
            self.out.flush()

    def reload_config(self) -> int:
        """``--reload``: ``corosync-cfgtool -R`` (cluster-wide reload of the config file)."""
        if not self.opts.json:
            self.out.write("Reloading corosync.conf...\n")
            self.out.flush()
        try:
            self.c_handle = self.api.corosync_cfg_initialize()
        except CsError as e:
            raise self._fail("Could not initialize corosync configuration API error "
                             f"{cs_strerror(e.code)}") from None
        try:
            self.api.corosync_cfg_reload_config(self.c_handle)
        except CsError as e:
            raise self._fail(f"Could not reload configuration. Error {cs_strerror(e.code)}"
                             ) from None
        if self.opts.json:
            self._print_ok()
        else:
            self.out.write("Done\n")
            self.out.flush()
        return EXIT_OK

    def cancel_wait_for_all(self) -> int:
        """``--cancel-wait-for-all``: ``corosync-cmapctl -s quorum.cancel_wait_for_all u8 1``."""
        try:
            self.api.cmap_set_uint8(CANCEL_WAIT_FOR_ALL_KEY, 1)
        except CsError as e:
            raise self._fail(f"Failed to set key {CANCEL_WAIT_FOR_ALL_KEY}. Error "
                             f"{cs_strerror(e.code)}") from None
        self._print_ok()
        return EXIT_OK


def run_tool(
    argv: Sequence[str],
    *,
    out: TextIO,
    err: TextIO,
    api_factory: Callable[[str], ClientApi] = RealClientApi,
    env_run_dir: str | None = None,
) -> int:
    """Parse ``argv`` and run; the testable core of ``main``."""
    parsed = parse_args(argv, env_run_dir=env_run_dir)
    if isinstance(parsed, ParseExit):
        err.write(parsed.stderr)
        out.write(parsed.stdout)
        out.flush()
        return parsed.code
    err.write(parsed.warnings)
    return QuorumTool(api_factory(parsed.run_dir), parsed, out=out, err=err).run()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pyquorumtool``."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_tool(args, out=sys.stdout, err=sys.stderr,
                        env_run_dir=os.environ.get(RUN_DIR_ENV))
    except BrokenPipeError:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
