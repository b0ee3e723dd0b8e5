"""Run inside pyquorumd's network namespace (``ip netns exec``): drive the daemon's libqb
endpoint through Corosync's own libquorum / libvotequorum (the ctypes backend of
``pyquorum.client``) and print one JSON object with what was seen.

Every call is one C library call; events are taken with ``CS_DISPATCH_ALL`` right after
the trackstart that queued them (the daemon sends them before the answer), so nothing
here blocks waiting for an event.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.client._common import CS_DISPATCH_ALL
from pyquorum.errors import CsError

CS_TRACK_CURRENT = 1
CS_TRACK_CHANGES = 2
BACKEND = "corosync"


def _code(fn: Any, *args: Any) -> int:
    try:
        fn(*args)
    except CsError as exc:
        return int(exc.code)
    return 0


def main() -> int:
    out: dict[str, Any] = {}
    events: list[list[Any]] = []

    def v1_quorum(_h: int, quorate: int, ring: q.QuorumRingId, members: list[int]) -> None:
        events.append(["v1_quorum", quorate, [ring.nodeid, ring.seq], members])

    def v1_nodelist(_h: int, ring: q.QuorumRingId, members: list[int], joined: list[int],
                    left: list[int]) -> None:
        events.append(["v1_nodelist", [ring.nodeid, ring.seq], members, joined, left])

    def v0_quorum(_h: int, quorate: int, ring_seq: int, members: list[int]) -> None:
        events.append(["v0_quorum", quorate, ring_seq, members])

    h1, qtype = q.quorum_model_initialize(
        q.QUORUM_MODEL_V1, q.QuorumModelV1Data(v1_quorum, v1_nodelist), None, backend=BACKEND)
    out["quorum_type"] = qtype
    out["quorate"] = q.quorum_getquorate(h1)
    q.quorum_trackstart(h1, CS_TRACK_CURRENT)
    q.quorum_dispatch(h1, CS_DISPATCH_ALL)
    out["trackstop"] = _code(q.quorum_trackstop, h1)
    q.quorum_trackstart(h1, CS_TRACK_CHANGES)
    q.quorum_dispatch(h1, CS_DISPATCH_ALL)
    out["trackstart_again"] = _code(q.quorum_trackstart, h1, CS_TRACK_CHANGES)
    q.quorum_dispatch(h1, CS_DISPATCH_ALL)
    q.quorum_finalize(h1)

    h0, qtype0 = q.quorum_initialize(q.QuorumCallbacks(v0_quorum), backend=BACKEND)
    out["quorum_type_v0"] = qtype0
    q.quorum_trackstart(h0, CS_TRACK_CURRENT)
    q.quorum_dispatch(h0, CS_DISPATCH_ALL)
    q.quorum_finalize(h0)

    def vq_quorum(_h: int, context: int, quorate: int, nodes: list[vq.VotequorumNode]) -> None:
        events.append(["vq_quorum", context, quorate, [list(n) for n in nodes]])

    def vq_nodelist(_h: int, context: int, ring: vq.VotequorumRingId,
                    nodeids: list[int]) -> None:
        events.append(["vq_nodelist", context, [ring.nodeid, ring.seq], nodeids])

    def vq_expected(_h: int, context: int, expected: int) -> None:
        events.append(["vq_expected", context, expected])

    vh = vq.votequorum_initialize(vq.VotequorumCallbacks(vq_quorum, vq_nodelist, vq_expected),
                                  backend=BACKEND)
    info = vq.votequorum_getinfo(vh, 0)
    out["getinfo"] = [info.node_id, info.node_state, info.node_votes, info.node_expected_votes,
                      info.highest_expected, info.total_votes, info.quorum, info.flags,
                      info.qdevice_votes, info.qdevice_name]
    out["getinfo_unknown"] = _code(vq.votequorum_getinfo, vh, 4242)
    vq.votequorum_trackstart(vh, 0x1122334455667788, CS_TRACK_CURRENT)
    vq.votequorum_dispatch(vh, CS_DISPATCH_ALL)
    out["vq_trackstop_not_tracking"] = _code(vq.votequorum_trackstop, vh)
    out["setexpected_too_high"] = _code(vq.votequorum_setexpected, vh, 5)
    out["setvotes_unknown_node"] = _code(vq.votequorum_setvotes, vh, 4242, 1)
    out["qdevice_unregister_none"] = _code(vq.votequorum_qdevice_unregister, vh, "Qdevice")
    vq.votequorum_finalize(vh)
    out["events"] = events
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
