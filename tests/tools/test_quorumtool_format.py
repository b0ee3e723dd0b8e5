"""pyquorumtool's pure formatter against real corosync-quorumtool output.

Every ``quorumtool-*.txt`` of the oracle traces holds, per node, the real tool's ``-s``
output (captured by ``../shared/oracle/scenarios.py``: a ``===== nodeN  (label) =====``
header, the output, then one blank line).  Each block is parsed back into plain data,
rendered by ``pyquorum.tools.qtformat`` and compared byte for byte (the Date value aside).
Layouts without a real capture (``-H``, ``-p``, qdevice rows, ``-l``) are checked
against text built from the rules of spec 7.2 and the C source.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pyquorum.tools.qtformat import (
    FLAG_TOKENS,
    INFO_QDEVICE_ALIVE,
    INFO_QDEVICE_CAST_VOTE,
    INFO_QDEVICE_MASTER_WINS,
    INFO_QDEVICE_REGISTERED,
    INFO_QUORATE,
    INFO_TWONODE,
    INFO_WAIT_FOR_ALL,
    DisplayOptions,
    MemberRow,
    NodelistEntry,
    NodeVqInfo,
    StatusSnapshot,
    format_membership,
    format_status,
    node_display_name,
    parse_nodelist,
    qdevice_cell,
    status_to_json,
)

TRACES = Path(__file__).resolve().parents[3] / "shared" / "oracle" / "traces"
HEADER = re.compile(r"^===== node(\d+)  \((.*)\) =====$")
DATE = "Sun Nov 22 01:07:07 2026"


def _blocks() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in sorted(TRACES.glob("*/quorumtool-*.txt")):
        parts = re.split(r"^(===== node\d+  \(.*\) =====)\n", path.read_text(), flags=re.M)
        assert parts[0] == "", path
        for header, body in zip(parts[1::2], parts[2::2], strict=True):
            assert HEADER.match(header) and body.endswith("\n\n"), (path, header)
            body = body[:-1]  # the blank line scenarios.py writes after each block
            if body.startswith("(daemon not running)"):
                continue
            out.append((f"{path.parent.name}/{path.name}:{header[6:11]}", body))
    return out


BLOCKS = _blocks()


def _value(text: str, label: str) -> str:
    m = re.search(rf"^{re.escape(label)}\s*(.*)$", text, re.M)
    assert m, label
    return m.group(1)


def parse_real_output(text: str) -> StatusSnapshot:
    """The data a real ``-s`` block shows (the inverse of the formatter)."""
    flags = 0
    for bit, token in FLAG_TOKENS:
        if f"{token} " in _value(text, "Flags:") + " ":
            flags |= bit
    rep, seq = _value(text, "Ring ID:").split(".")
    local = int(_value(text, "Node ID:"))
    local_info = NodeVqInfo(
        node_id=local,
        node_expected_votes=int(_value(text, "Expected votes:")),
        highest_expected=int(_value(text, "Highest expected:")),
        total_votes=int(_value(text, "Total votes:")),
        quorum=int(_value(text, "Quorum:").split()[0]),
        flags=flags,
    )
    members = []
    table = text.split("    Nodeid      Votes Name\n", 1)[1]
    for row in table.strip("\n").split("\n"):
        nodeid, votes, name = row.split()[:3]
        members.append(MemberRow(int(nodeid), name, NodeVqInfo(node_id=int(nodeid),
                                                               node_votes=int(votes),
                                                               flags=flags)))
    return StatusSnapshot(
        date=DATE,
        quorum_provider=_value(text, "Quorum provider:"),
        local_nodeid=local,
        ring_seq=int(seq, 16),
        quorate=_value(text, "Quorate:") == "Yes",
        votequorum=True,
        ring_rep=int(rep, 16),
        local_info=local_info,
        members=tuple(members),
    )


def _without_date(text: str) -> str:
    return re.sub(r"^Date:             .*$", "Date:             X", text, flags=re.M)


def test_the_oracle_captures_are_there() -> None:
    assert len(BLOCKS) > 40
    kinds = {b.split("Quorum:           ", 1)[1].split("\n", 1)[0] for _, b in BLOCKS}
    assert {"2  ", "2 Activity blocked", "1  "} <= kinds


@pytest.mark.parametrize(("where", "real"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_status_matches_the_real_tool(where: str, real: str) -> None:
    rendered = format_status(parse_real_output(real), DisplayOptions())
    assert _without_date(rendered) == _without_date(real)


def _trace_block(name: str, node: int) -> str:
    for where, body in BLOCKS:
        if where.startswith(name) and where.endswith(f"node{node}"):
            return body
    raise AssertionError(f"{name} node{node} not found")


QUORATE_3 = StatusSnapshot(
    date=DATE,
    quorum_provider="corosync_votequorum",
    local_nodeid=1,
    ring_seq=9,
    quorate=True,
    votequorum=True,
    ring_rep=1,
    local_info=NodeVqInfo(1, 1, 1, 3, 3, 3, 2, INFO_QUORATE),
    members=tuple(MemberRow(n, f"node{n}", NodeVqInfo(n, 1, 1, 3, 3, 3, 2, INFO_QUORATE))
                  for n in (1, 2, 3)),
)


def test_quorate_literal_against_api_edge() -> None:
    real = _trace_block("api_edge/quorumtool-quorate.txt", 1)
    assert format_status(QUORATE_3, DisplayOptions()) == real.replace(
        _value(real, "Date:"), DATE)
    assert "Quorum:           2  \nFlags:            Quorate \n" in real


def test_inquorate_literal_against_api_edge() -> None:
    real = _trace_block("api_edge/quorumtool-inquorate.txt", 1)
    snap = StatusSnapshot(
        date=_value(real, "Date:"), quorum_provider="corosync_votequorum", local_nodeid=1,
        ring_seq=0xD, quorate=False, votequorum=True, ring_rep=1,
        local_info=NodeVqInfo(1, 1, 1, 3, 3, 1, 2, 0),
        members=(MemberRow(1, "node1", NodeVqInfo(1, 1, 1, 3, 3, 1, 2, 0)),),
    )
    assert format_status(snap, DisplayOptions()) == real
    assert "Quorum:           2 Activity blocked\nFlags:            \n" in real


def test_two_node_literal_against_f_two_node() -> None:
    real = _trace_block("f_two_node/quorumtool-after-kill-2.txt", 1)
    flags = INFO_TWONODE | INFO_QUORATE | INFO_WAIT_FOR_ALL
    snap = StatusSnapshot(
        date=_value(real, "Date:"), quorum_provider="corosync_votequorum", local_nodeid=1,
        ring_seq=0xD, quorate=True, votequorum=True, ring_rep=1,
        local_info=NodeVqInfo(1, 1, 1, 2, 2, 1, 1, flags),
        members=(MemberRow(1, "node1", NodeVqInfo(1, 1, 1, 2, 2, 1, 1, flags)),),
    )
    assert format_status(snap, DisplayOptions()) == real


def test_hex_node_ids() -> None:
    text = format_status(QUORATE_3, DisplayOptions(hex_ids=True))
    assert "Node ID:          0x00000001\n" in text
    assert text.endswith(
        "    Nodeid      Votes Name\n"
        "0x00000001          1 node1 (local)\n"
        "0x00000002          1 node2\n"
        "0x00000003          1 node3\n")
    assert "Ring ID:          1.9\n" in text  # the ring id stays rep.seq in hex


def test_machine_parsable_without_qdevice_shows_nr_and_no_device_row() -> None:
    text = format_status(QUORATE_3, DisplayOptions(machine_parsable=True))
    assert text.endswith(
        "    Nodeid      Votes    Qdevice Name\n"
        "         1          1         NR node1 (local)\n"
        "         2          1         NR node2\n"
        "         3          1         NR node3\n")


def _qdevice_members(local_flags: int, other_flags: int) -> tuple[MemberRow, ...]:
    return (
        MemberRow(1, "node1", NodeVqInfo(1, 1, 1, 3, 3, 3, 2, local_flags, 1, "Qdevice")),
        MemberRow(2, "node2", NodeVqInfo(2, 1, 1, 3, 3, 3, 2, other_flags, 1, "Qdevice")),
    )


def test_qdevice_rows_as_in_the_spec() -> None:
    qd = (INFO_QDEVICE_REGISTERED | INFO_QDEVICE_ALIVE | INFO_QDEVICE_CAST_VOTE
          | INFO_QUORATE)
    text = format_membership(_qdevice_members(qd, qd), local_nodeid=1, votequorum=True,
                             options=DisplayOptions())
    assert text == (
        "\nMembership information\n"
        "----------------------\n"
        "    Nodeid      Votes    Qdevice Name\n"
        "         1          1    A,V,NMW node1 (local)\n"
        "         2          1    A,V,NMW node2\n"
        "         0          1            Qdevice\n")


def test_qdevice_not_casting_shows_zero_and_the_votes() -> None:
    local = INFO_QDEVICE_REGISTERED
    text = format_membership(_qdevice_members(local, INFO_QUORATE), local_nodeid=1,
                             votequorum=True, options=DisplayOptions(hex_ids=True))
    assert text.endswith(
        "    Nodeid      Votes    Qdevice Name\n"
        "0x00000001          1   NA,NV,NM node1 (local)\n"
        "0x00000002          1         NR node2\n"
        "0x00000000          0            Qdevice (votes 1)\n")


def test_qdevice_cell_values() -> None:
    assert qdevice_cell(0) == "NR"
    assert qdevice_cell(INFO_QDEVICE_REGISTERED | INFO_QDEVICE_MASTER_WINS) == "NA,NV,MW"
    assert qdevice_cell(INFO_QDEVICE_REGISTERED | INFO_QDEVICE_ALIVE) == "A,NV,NMW"
    # the C tool's char[10] with snprintf(buf, sizeof(buf) - 1): at most 8 characters
    assert qdevice_cell(INFO_QDEVICE_REGISTERED) == "NA,NV,NM"


def test_list_nodes_block() -> None:
    text = format_membership(QUORATE_3.members, local_nodeid=2, votequorum=True,
                             options=DisplayOptions())
    assert text == (
        "\nMembership information\n"
        "----------------------\n"
        "    Nodeid      Votes Name\n"
        "         1          1 node1\n"
        "         2          1 node2 (local)\n"
        "         3          1 node3\n")


def test_list_nodes_without_votequorum_has_no_votes_column() -> None:
    members = tuple(MemberRow(n, f"node{n}") for n in (1, 2))
    text = format_membership(members, local_nodeid=0, votequorum=False,
                             options=DisplayOptions(machine_parsable=True))
    assert text.endswith("    Nodeid Name\n         1 node1\n         2 node2\n")


def test_getinfo_failure_of_a_member_is_reported_on_stdout() -> None:
    members = (QUORATE_3.members[0], MemberRow(2, "node2", None))
    text = format_membership(members, local_nodeid=1, votequorum=True,
                             options=DisplayOptions())
    assert text.startswith("Unable to get node 2 info\n\nMembership information\n")
    assert "         2          0 node2\n" in text


def test_sort_orders() -> None:
    members = (MemberRow(3, "alpha", NodeVqInfo(3, node_votes=3)),
               MemberRow(1, "gamma", NodeVqInfo(1, node_votes=1)),
               MemberRow(2, "beta", NodeVqInfo(2, node_votes=2)))

    def rows(order: str) -> list[str]:
        text = format_membership(members, local_nodeid=1, votequorum=True,
                                 options=DisplayOptions(sort=order))  # type: ignore[arg-type]
        return text.strip("\n").split("\n")[3:]

    assert [r.split()[2] for r in rows("a")] == ["alpha", "gamma", "beta"]
    assert [r.split()[2] for r in rows("n")] == ["alpha", "beta", "gamma"]
    assert [r.split()[0] for r in rows("i")] == ["1", "2", "3"]
    # every row keeps its own votes (the C tool would mix them up after sorting)
    assert all(r.split()[0] == r.split()[1] for r in rows("n"))


def test_status_without_votequorum_stops_after_quorate() -> None:
    snap = StatusSnapshot(date=DATE, quorum_provider=None, local_nodeid=0, ring_seq=0x1c,
                          quorate=True, votequorum=False, members=(MemberRow(1, "n1"),))
    assert format_status(snap, DisplayOptions()) == (
        "Quorum information\n"
        "------------------\n"
        f"Date:             {DATE}\n"
        "Quorum provider:  Not configured\n"
        "Nodes:            1\n"
        "Node ID:          0\n"
        "Ring ID:          1c\n"
        "Quorate:          Yes\n")


def test_local_getinfo_not_exist_still_prints_the_section() -> None:
    snap = StatusSnapshot(date=DATE, quorum_provider="corosync_votequorum", local_nodeid=7,
                          ring_seq=1, quorate=False, votequorum=True, ring_rep=1,
                          local_info=None, local_info_error=12)
    assert "Votequorum information" in format_status(snap, DisplayOptions())
    snap2 = StatusSnapshot(date=DATE, quorum_provider="corosync_votequorum", local_nodeid=7,
                           ring_seq=1, quorate=False, votequorum=True, ring_rep=1,
                           local_info=None, local_info_error=2)
    assert "Votequorum information" not in format_status(snap2, DisplayOptions())


def test_all_flag_tokens_in_order() -> None:
    info = NodeVqInfo(1, flags=0x7F, quorum=3)
    snap = StatusSnapshot(date=DATE, quorum_provider="corosync_votequorum", local_nodeid=1,
                          ring_seq=2, quorate=True, votequorum=True, ring_rep=1,
                          local_info=info)
    assert ("Flags:            2Node Quorate WaitForAll LastManStanding AutoTieBreaker "
            "AllowDownscale Qdevice \n") in format_status(snap, DisplayOptions())


# ------------------------------------------------------------------ names
CMAP = {
    "nodelist.node.0.nodeid": "1", "nodelist.node.0.name": "node1",
    "nodelist.node.0.ring0_addr": "10.0.0.1", "nodelist.node.0.ring1_addr": "10.1.0.1",
    "nodelist.node.1.nodeid": "2", "nodelist.node.1.ring0_addr": "10.0.0.2",
    "nodelist.node.2.name": "no-id",
    "nodelist.local_node_pos": "0",
}


def test_parse_nodelist() -> None:
    nodes = parse_nodelist(CMAP)
    assert nodes == {1: NodelistEntry(1, "node1", ("10.0.0.1", "10.1.0.1")),
                     2: NodelistEntry(2, "", ("10.0.0.2",))}


@pytest.mark.parametrize(("nodeid", "ip", "all_addrs", "want"), [
    (1, False, False, "node1"),
    (1, False, True, "node1, host-10.1.0.1"),
    (1, True, False, "10.0.0.1"),
    (1, True, True, "10.0.0.1, 10.1.0.1"),
    (2, False, False, "host-10.0.0.2"),
    (2, True, False, "10.0.0.2"),
    (9, False, False, ""),
])
def test_node_display_name(nodeid: int, ip: bool, all_addrs: bool, want: str) -> None:
    got = node_display_name(nodeid, parse_nodelist(CMAP), ip=ip, all_addrs=all_addrs,
                            reverse_lookup=lambda a: f"host-{a}")
    assert got == want


# ------------------------------------------------------------------ JSON
def test_status_json_schema() -> None:
    obj = status_to_json(QUORATE_3, DisplayOptions())
    json.dumps(obj)
    assert set(obj) == {"date", "quorum_provider", "nodes", "node_id", "ring_id", "ring",
                        "quorate", "votequorum", "members", "qdevice"}
    assert obj["ring"] == "1.9" and obj["ring_id"] == {"rep": 1, "seq": 9}
    assert obj["quorate"] is True and obj["nodes"] == 3 and obj["node_id"] == 1
    assert obj["votequorum"] == {
        "expected_votes": 3, "highest_expected": 3, "total_votes": 3, "quorum": 2,
        "quorate": True, "flags": INFO_QUORATE, "flag_names": ["Quorate"],
        "qdevice_votes": 0, "qdevice_name": ""}
    assert [m["nodeid"] for m in obj["members"]] == [1, 2, 3]
    first = obj["members"][0]
    assert first["name"] == "node1" and first["local"] is True and first["votes"] == 1
    assert first["qdevice"] is None and first["info"]["node_votes"] == 1
    assert obj["qdevice"] is None


def test_status_json_with_qdevice() -> None:
    qd = INFO_QDEVICE_REGISTERED | INFO_QDEVICE_ALIVE | INFO_QDEVICE_CAST_VOTE
    snap = StatusSnapshot(date=DATE, quorum_provider="corosync_votequorum", local_nodeid=1,
                          ring_seq=4, quorate=True, votequorum=True, ring_rep=1,
                          local_info=NodeVqInfo(1, flags=qd), members=_qdevice_members(qd, qd))
    obj = status_to_json(snap, DisplayOptions())
    assert obj["members"][0]["qdevice"] == "A,V,NMW"
    assert obj["qdevice"] == {"nodeid": 0, "name": "Qdevice", "votes": 1, "casting_vote": True}


def test_status_json_without_votequorum() -> None:
    snap = StatusSnapshot(date=DATE, quorum_provider=None, local_nodeid=0, ring_seq=3,
                          quorate=True, votequorum=False, members=(MemberRow(1, "n1"),))
    obj = status_to_json(snap, DisplayOptions())
    assert obj["votequorum"] is None and obj["ring"] == "3"
    assert obj["ring_id"] == {"rep": None, "seq": 3}
    assert obj["members"] == [{"nodeid": 1, "name": "n1", "local": False}]
