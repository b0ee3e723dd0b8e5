"""Garbage from the network is dropped and counted; the daemon keeps serving.

Node 3 of a 3-node configuration is never started: the test binds its UDP port, so
the running daemons send it real sealed datagrams, which the test tampers with,
truncates, replays, or forges with another key, and sends to node 2.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable

from harness import LocalCluster, RawIpcClient, v1_tracker, view_reached, wait_until

from pyquorum.errors import CsErr
from pyquorum.wire import ipc
from pyquorum.wire.crypto import HEADER_SIZE, SecureChannel

WAIT_S = 20.0
_SENDER = struct.Struct(">I")
_COUNTER_OFFSET = HEADER_SIZE - 8


def capture_from(spy: socket.socket, sender: int, timeout: float) -> bytes:
    """The next datagram the spy receives from node ``sender`` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no datagram from node {sender} within {timeout} s"
        r, _, _ = select.select([spy], [], [], left)
        if not r:
            continue
        data, _ = spy.recvfrom(65536)
        if len(data) >= 6 and _SENDER.unpack_from(data, 2)[0] == sender:
            return data


def rejected(c: LocalCluster, nodeid: int) -> dict[str, int]:
    prefix = "runtime.pyquorum.stats.rejected"
    return {k.removeprefix(prefix).lstrip(".") or "total": int(v)
            for k, v in c.cmap(nodeid, prefix).items()}


def test_bad_datagrams_are_dropped_counted_and_harmless(
        local_cluster: Callable[..., LocalCluster]) -> None:
    c = local_cluster(3)
    spy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spy.bind(("127.0.0.1", c.port(3)))
    try:
        c.start(1)
        c.start(2)
        tracker = v1_tracker(c.run_dir(2))
        try:
            tracker.collect_events(view_reached((1, 2), quorate=1), WAIT_S)
            ring_before = c.cmap(2, "runtime.pyquorum.ring_id")["runtime.pyquorum.ring_id"]
            good = capture_from(spy, 1, WAIT_S)
            before = rejected(c, 2)
            body = bytearray(good[HEADER_SIZE:])
            body[-1] ^= 0x01
            tampered = (good[:_COUNTER_OFFSET] + (1 << 62).to_bytes(8, "big") + bytes(body))
            foreign = SecureChannel(os.urandom(64), "aes256", "sha256", 3, 1,
                                    os.urandom(8)).seal(b"\x01\x01forged")
            target = ("127.0.0.1", c.port(2))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                for data in (good[:12], tampered, good, good, foreign, b"\xff" * 40):
                    out.sendto(data, target)

            def counted() -> bool:
                now = rejected(c, 2)
                return (now.get("truncated", 0) >= before.get("truncated", 0) + 1
                        and now.get("auth_failed", 0) >= before.get("auth_failed", 0) + 2
                        and now.get("replayed", 0) >= before.get("replayed", 0) + 1
                        and now.get("bad_version", 0) >= before.get("bad_version", 0) + 1)

            wait_until(counted, WAIT_S, "node 2 to count every bad datagram")
            after = rejected(c, 2)
            assert after["total"] >= before["total"] + 5
            # still serving, still in the same view
            with RawIpcClient(c.run_dir(2), ipc.SERVICE_QUORUM) as q:
                assert q.ok
                res = q.request(ipc.QuorumGetQuorateReq())
                assert res == ipc.QuorumGetQuorateRes(CsErr.CS_OK, 1)
            keys = c.cmap(2, "runtime.pyquorum.")
            assert keys["runtime.pyquorum.members"] == "1 2"
            assert keys["runtime.pyquorum.ring_id"] == ring_before
            assert int(keys["runtime.pyquorum.stats.udp_received"]) > 0
            assert c.running(2)
        finally:
            tracker.close()
    finally:
        spy.close()
