"""The IPC server with a scripted backend (no daemon): cfg reload and cmap set routes,
and the request order of answers when a cmap set waits for the engine."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyquorum.config.model import UidGidConfig
from pyquorum.core.engine import CfgReload, Command, Replied, VqCancelWaitForAll
from pyquorum.daemon.ipcserver import IpcServer
from pyquorum.errors import CsErr
from pyquorum.wire import ipc

KEY = "quorum.cancel_wait_for_all"
OK = int(CsErr.CS_OK)


class Backend:
    """``IpcBackend`` that records commands; the test answers them."""

    def __init__(self) -> None:
        self.ready = True
        self.has_votequorum = True
        self.opened: list[int] = []
        self.closed: list[int] = []
        self.commands: list[tuple[int, Command]] = []

    def ipc_opened(self, conn: int) -> None:
        self.opened.append(conn)

    def ipc_command(self, conn: int, command: Command) -> None:
        self.commands.append((conn, command))

    def ipc_closed(self, conn: int) -> None:
        self.closed.append(conn)

    def cmap_items(self, prefix: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in [("quorum.provider", "corosync_votequorum")]
                if k.startswith(prefix)]

    def test_block(self, nodeids: tuple[int, ...]) -> None:
        raise AssertionError("not used")


class Harness:
    def __init__(self, run_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.backend = Backend()
        self.logs: list[str] = []
        self.server = IpcServer(run_dir, self.backend,
                                lambda lvl, sub, text: self.logs.append(text),
                                hooks=False, uidgid=UidGidConfig())
        self.server.open(self.loop)

    def spin(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "timed out"
            self.loop.run_until_complete(asyncio.sleep(0.005))

    def close(self) -> None:
        self.server.close()
        self.loop.close()


class Client:
    """A raw client: Hello, then pipelined requests; keeps the event channel open."""

    def __init__(self, h: Harness, service: int) -> None:
        self.h = h
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(h.server.path))
        self.sock.setblocking(False)
        self.reader = ipc.FrameReader()
        self.msgs: list[object] = []
        self.fds: list[int] = []
        self.sock.sendall(ipc.encode_frame(ipc.Hello(service)))
        h.spin(self._got(1))
        hello = self.msgs.pop(0)
        assert isinstance(hello, ipc.HelloReply) and hello.error == OK, hello
        self.conn_id = hello.conn_id

    def _got(self, n: int) -> Callable[[], bool]:
        def check() -> bool:
            try:
                data, fds, _f, _a = socket.recv_fds(self.sock, 65536, 4)
            except BlockingIOError:
                return len(self.msgs) >= n
            self.fds += fds
            self.msgs += self.reader.feed(data)
            return len(self.msgs) >= n
        return check

    def send(self, *msgs: object) -> None:
        self.sock.sendall(b"".join(ipc.encode_frame(m) for m in msgs))

    def wait(self, n: int) -> list[object]:
        self.h.spin(self._got(n))
        out, self.msgs = self.msgs[:n], self.msgs[n:]
        return out

    def nothing_for(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        self.h.spin(lambda: time.monotonic() >= end)
        self._got(1)()
        return not self.msgs

    def close(self) -> None:
        self.sock.close()
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def h() -> Iterator[Harness]:
    path = Path(tempfile.mkdtemp(prefix="pqs", dir="/tmp"))
    harness = Harness(path)
    yield harness
    harness.close()
    shutil.rmtree(path, ignore_errors=True)


def test_cmap_set_waits_for_the_engine_in_request_order(h: Harness) -> None:
    c = Client(h, ipc.SERVICE_CMAP)
    c.send(ipc.CmapSetReq(KEY, "1"), ipc.CmapSetReq(KEY, "0"),
           ipc.CmapSetReq("totem.token", "5000"), ipc.CmapSetReq(KEY, "x"),
           ipc.CmapGetPrefixReq("quorum."), ipc.Sync(7))
    h.spin(lambda: len(h.backend.commands) == 1)
    conn, cmd = h.backend.commands[0]
    assert conn == c.conn_id and cmd == VqCancelWaitForAll()
    assert c.nothing_for(0.1)  # every later answer waits behind the engine's
    h.server.on_replied(Replied(conn, cmd, CsErr.CS_OK))
    assert c.wait(6) == [
        ipc.CmapSetRes(OK), ipc.CmapSetRes(OK), ipc.CmapSetRes(int(CsErr.CS_ERR_ACCESS)),
        ipc.CmapSetRes(int(CsErr.CS_ERR_INVALID_PARAM)),
        ipc.CmapGetPrefixRes(OK, (ipc.KeyValue("quorum.provider", "corosync_votequorum"),)),
        ipc.SyncReply(7)]
    assert len(h.backend.commands) == 1  # value 0 and the refusals never reach the engine
    assert h.backend.opened == []         # cmap connections are not announced to the engine
    c.close()
    h.spin(lambda: h.server.client_count == 0)
    assert h.backend.closed == []


def test_two_pipelined_triggers_are_answered_in_order(h: Harness) -> None:
    c = Client(h, ipc.SERVICE_CMAP)
    c.send(ipc.CmapSetReq(KEY, "1"), ipc.CmapSetReq(KEY, "2"))
    h.spin(lambda: len(h.backend.commands) == 2)
    (_, first), (_, second) = h.backend.commands
    h.server.on_replied(Replied(c.conn_id, second, CsErr.CS_ERR_LIBRARY))
    h.server.on_replied(Replied(c.conn_id, first, CsErr.CS_OK))
    # each answer fills the slot of its own command object; they leave in request order
    assert c.wait(2) == [ipc.CmapSetRes(OK), ipc.CmapSetRes(int(CsErr.CS_ERR_LIBRARY))]
    c.close()


def test_cmap_set_without_votequorum(h: Harness) -> None:
    h.backend.has_votequorum = False
    c = Client(h, ipc.SERVICE_CMAP)
    c.send(ipc.CmapSetReq(KEY, "1"), ipc.CmapSetReq("quorum.provider", "x"))
    assert c.wait(2) == [ipc.CmapSetRes(int(CsErr.CS_ERR_NOT_EXIST)),
                         ipc.CmapSetRes(int(CsErr.CS_ERR_ACCESS))]
    assert h.backend.commands == []
    c.close()


def test_cfg_reload_goes_to_the_engine(h: Harness) -> None:
    h.backend.has_votequorum = False  # cfg is offered without votequorum
    c = Client(h, ipc.SERVICE_CFG)
    c.send(ipc.CfgReloadReq(), ipc.CmapSetReq(KEY, "1"), ipc.QuorumGetQuorateReq())
    h.spin(lambda: len(h.backend.commands) == 1)
    conn, cmd = h.backend.commands[0]
    assert conn == c.conn_id and cmd == CfgReload()
    assert c.nothing_for(0.05)
    h.server.on_replied(Replied(conn, cmd, CsErr.CS_ERR_LIBRARY))
    assert c.wait(3) == [ipc.CfgReloadRes(int(CsErr.CS_ERR_LIBRARY)),
                         ipc.ErrorReply(int(CsErr.CS_ERR_INVALID_PARAM), 72),
                         ipc.ErrorReply(int(CsErr.CS_ERR_INVALID_PARAM), 10)]
    c.send(ipc.CfgReloadReq())
    h.spin(lambda: len(h.backend.commands) == 2)
    h.server.on_replied(Replied(conn, h.backend.commands[1][1], CsErr.CS_OK))
    assert c.wait(1) == [ipc.CfgReloadRes(OK)]
    assert h.backend.opened == []
    c.close()


def test_a_cfg_request_on_another_service_is_invalid(h: Harness) -> None:
    c = Client(h, ipc.SERVICE_CMAP)
    c.send(ipc.CfgReloadReq())
    assert c.wait(1) == [ipc.ErrorReply(int(CsErr.CS_ERR_INVALID_PARAM), 80)]
    assert h.backend.commands == []
    c.close()


def test_an_answer_for_a_closed_cfg_connection_is_dropped(h: Harness) -> None:
    c = Client(h, ipc.SERVICE_CFG)
    c.send(ipc.CfgReloadReq())
    h.spin(lambda: len(h.backend.commands) == 1)
    conn, cmd = h.backend.commands[0]
    c.close()
    h.spin(lambda: h.server.client_count == 0)
    h.server.on_replied(Replied(conn, cmd, CsErr.CS_OK))  # no error, nothing sent


def test_set_uidgid_replaces_the_admission_rule(h: Harness) -> None:
    rule = UidGidConfig(uids=frozenset({1000}))
    h.server.set_uidgid(rule)
    assert h.server._uidgid is rule
