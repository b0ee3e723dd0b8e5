"""Pure formatting of corosync-quorumtool output (no I/O, no daemon).

Theory of operation
-------------------
``pyquorumtool`` collects everything it shows into plain frozen values
(``StatusSnapshot``, ``MemberRow``, ``NodeVqInfo``); the functions here turn those
values into the exact text of Corosync 3.1.7's ``corosync-quorumtool`` (spec section
7.2) or into the JSON form of ``--json``.  Every output byte is decided here, so the
layout is tested against the real tool's captured output without a daemon.

Layout rules reproduced from ``tools/corosync-quorumtool.c``:

* labels are padded so that values start in column 19;
* ``Quorum:`` is followed by one space and then ``" "`` when the local node is
  quorate (``VOTEQUORUM_INFO_QUORATE`` in the local ``getinfo`` flags) or
  ``"Activity blocked"``;
* every ``Flags:`` token is followed by one space (an empty flag set leaves the
  label's trailing spaces);
* membership cells are right-aligned in 10 characters and followed by one space
  (``print_string_padded``); hex node ids are ``0x%08x `` and not padded;
* the Qdevice cell is built in a ``char[10]`` with ``snprintf(buf, sizeof(buf) - 1)``,
  so it holds at most 8 characters (``NA,NV,NMW`` prints as ``NA,NV,NM``);
* the quorum-device row uses the *first* view entry's ``qdevice_votes`` and
  ``qdevice_name`` and the *local* node's flags.

One deliberate difference: the C tool caches ``getinfo`` results in view order and then
sorts only the view list for ``-o n``/``-o i``, so a reordered row can show another
node's votes.  Here every row keeps its own ``getinfo`` result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

# VOTEQUORUM_INFO_* (spec 1.3); duplicated here so formatting needs no client import.
INFO_TWONODE: Final = 1
INFO_QUORATE: Final = 2
INFO_WAIT_FOR_ALL: Final = 4
INFO_LAST_MAN_STANDING: Final = 8
INFO_AUTO_TIE_BREAKER: Final = 16
INFO_ALLOW_DOWNSCALE: Final = 32
INFO_QDEVICE_REGISTERED: Final = 64
INFO_QDEVICE_ALIVE: Final = 128
INFO_QDEVICE_CAST_VOTE: Final = 256
INFO_QDEVICE_MASTER_WINS: Final = 512

QDEVICE_NODEID: Final = 0
NOT_EXIST: Final = 12
"""CS_ERR_NOT_EXIST: a local getinfo failing with it still prints the votequorum block."""
VOTEQUORUM_PROVIDER: Final = "corosync_votequorum"

FLAG_TOKENS: Final[tuple[tuple[int, str], ...]] = (
    (INFO_TWONODE, "2Node"),
    (INFO_QUORATE, "Quorate"),
    (INFO_WAIT_FOR_ALL, "WaitForAll"),
    (INFO_LAST_MAN_STANDING, "LastManStanding"),
    (INFO_AUTO_TIE_BREAKER, "AutoTieBreaker"),
    (INFO_ALLOW_DOWNSCALE, "AllowDownscale"),
    (INFO_QDEVICE_REGISTERED, "Qdevice"),
)
"""The ``Flags:`` tokens in the order the C tool prints them."""

SortOrder = Literal["a", "n", "i"]
"""``-o``: a = as delivered (address order), n = by name, i = by node id."""

_LABEL_WIDTH: Final = 18
_CELL_WIDTH: Final = 10
_QDEVICE_CELL_MAX: Final = 8


@dataclass(frozen=True, slots=True)
class NodeVqInfo:
    """The fields of ``votequorum_getinfo`` (``struct votequorum_info``)."""

    node_id: int
    node_state: int = 1
    node_votes: int = 1
    node_expected_votes: int = 0
    highest_expected: int = 0
    total_votes: int = 0
    quorum: int = 0
    flags: int = 0
    qdevice_votes: int = 0
    qdevice_name: str = ""


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One entry of the quorum view, as the membership table shows it.

    ``info`` is None when ``votequorum_getinfo`` failed for the node (the C tool then
    prints ``Unable to get node N info`` and shows whatever the struct held; zeros here)
    or when votequorum is not in use.
    """

    nodeid: int
    name: str
    info: NodeVqInfo | None = None


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything ``-s`` prints, collected by the I/O layer.

    ``quorum_provider`` None prints ``Not configured``.  ``votequorum`` says whether a
    votequorum handle was opened (the C tool's ``v_handle``): without it the output stops
    after ``Quorate:``.  ``ring_rep`` comes from votequorum's nodelist snapshot.
    ``local_info_error`` is the ``CsErr`` number of a failed local ``getinfo``.
    """

    date: str
    quorum_provider: str | None
    local_nodeid: int
    ring_seq: int
    quorate: bool
    votequorum: bool
    ring_rep: int = 0
    local_info: NodeVqInfo | None = None
    local_info_error: int | None = None
    members: tuple[MemberRow, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class DisplayOptions:
    """The display switches: ``-H``, ``-p``, ``-o``."""

    hex_ids: bool = False
    machine_parsable: bool = False
    sort: SortOrder = "a"


@dataclass(frozen=True, slots=True)
class NodelistEntry:
    """A ``nodelist.node.<i>`` entry of the daemon's cmap view."""

    nodeid: int
    name: str = ""
    addrs: tuple[str, ...] = ()


# ---------------------------------------------------------------------- small helpers
def _label(label: str, value: str) -> str:
    return f"{label:<{_LABEL_WIDTH}}{value}"


def pad_cell(text: str) -> str:
    """``print_string_padded``: right-align in 10 characters, then one space."""
    return f"{text:>{_CELL_WIDTH}} "


def uint32(value: int) -> int:
    """The value as C's ``%u`` shows an ``int``."""
    return value & 0xFFFFFFFF


def format_nodeid(nodeid: int, hex_ids: bool) -> str:
    """A node id as shown in the ``Node ID:`` line (``%u`` or ``0x%08x``)."""
    return f"0x{uint32(nodeid):08x}" if hex_ids else str(uint32(nodeid))


def nodeid_cell(nodeid: int, hex_ids: bool) -> str:
    """A node id as the first cell of a membership row."""
    if hex_ids:
        return f"0x{uint32(nodeid):08x} "
    return pad_cell(str(uint32(nodeid)))


def format_ring_id(rep: int, seq: int, votequorum: bool) -> str:
    """``Ring ID:`` value: ``rep.seq`` in hex, or only ``seq`` without votequorum."""
    return f"{uint32(rep):x}.{seq:x}" if votequorum else f"{seq:x}"


def flag_tokens(flags: int) -> list[str]:
    """The ``Flags:`` tokens set in ``flags``, in print order."""
    return [name for bit, name in FLAG_TOKENS if flags & bit]


def qdevice_cell(flags: int) -> str:
    """The Qdevice column value (``NR`` or ``A|NA,V|NV,MW|NMW``, at most 8 characters)."""
    if not flags & INFO_QDEVICE_REGISTERED:
        return "NR"
    text = ",".join((
        "A" if flags & INFO_QDEVICE_ALIVE else "NA",
        "V" if flags & INFO_QDEVICE_CAST_VOTE else "NV",
        "MW" if flags & INFO_QDEVICE_MASTER_WINS else "NMW",
    ))
    return text[:_QDEVICE_CELL_MAX]


def sort_members(members: Sequence[MemberRow], order: SortOrder) -> list[MemberRow]:
    """Rows in display order: as delivered (``a``), by name (``n``) or by node id (``i``)."""
    if order == "i":
        return sorted(members, key=lambda m: uint32(m.nodeid))
    if order == "n":
        return sorted(members, key=lambda m: m.name.encode())
    return list(members)


def display_qdevice(members: Sequence[MemberRow]) -> bool:
    """True when some member has a quorum device registered (the column then appears)."""
    return any(m.info is not None and m.info.flags & INFO_QDEVICE_REGISTERED for m in members)


def local_flags(members: Sequence[MemberRow], local_nodeid: int) -> int:
    """The flags of the local node's row (0 when it is not in the view)."""
    for m in members:
        if m.nodeid == local_nodeid and m.info is not None:
            return m.info.flags
    return 0


# ---------------------------------------------------------------------- text output
def format_membership(
    members: Sequence[MemberRow],
    *,
    local_nodeid: int,
    votequorum: bool,
    options: DisplayOptions,
) -> str:
    """``display_nodes_data``: the membership block, starting with its blank line.

    Members whose ``info`` is None while votequorum is in use produce the C tool's
    ``Unable to get node N info`` line first (it prints those on stdout).
    """
    out: list[str] = []
    if votequorum:
        out.extend(f"Unable to get node {uint32(m.nodeid)} info\n"
                   for m in members if m.info is None)
    show_qdevice = votequorum and display_qdevice(members)
    qdevice_column = show_qdevice or (votequorum and options.machine_parsable)
    out.append("\nMembership information\n")
    out.append("----------------------\n")
    header = pad_cell("Nodeid")
    if votequorum:
        header += pad_cell("Votes")
        if qdevice_column:
            header += pad_cell("Qdevice")
    out.append(header + "Name\n")
    for m in sort_members(members, options.sort):
        info = m.info if m.info is not None else NodeVqInfo(node_id=m.nodeid, node_votes=0)
        row = nodeid_cell(m.nodeid, options.hex_ids)
        if votequorum:
            row += pad_cell(str(uint32(info.node_votes)))
            if qdevice_column:
                row += pad_cell(qdevice_cell(info.flags))
        row += m.name
        if m.nodeid == local_nodeid:
            row += " (local)"
        out.append(row + "\n")
    if show_qdevice:
        first = members[0].info if members and members[0].info is not None else None
        qd_votes = first.qdevice_votes if first is not None else 0
        qd_name = first.qdevice_name if first is not None else ""
        casting = bool(local_flags(members, local_nodeid) & INFO_QDEVICE_CAST_VOTE)
        row = nodeid_cell(QDEVICE_NODEID, options.hex_ids)
        row += pad_cell(str(uint32(qd_votes if casting else 0)))
        row += " " * 11 + qd_name
        if not casting:
            row += f" (votes {qd_votes})"
        out.append(row + "\n")
    return "".join(out)


def format_status(snapshot: StatusSnapshot, options: DisplayOptions) -> str:
    """``display_quorum_data``: the complete ``-s`` text (one ``-m`` block)."""
    s = snapshot
    lines = [
        "Quorum information",
        "------------------",
        _label("Date:", s.date),
        _label("Quorum provider:", s.quorum_provider or "Not configured"),
        _label("Nodes:", str(len(s.members))),
        _label("Node ID:", format_nodeid(s.local_nodeid, options.hex_ids)),
        _label("Ring ID:", format_ring_id(s.ring_rep, s.ring_seq, s.votequorum)),
        _label("Quorate:", "Yes" if s.quorate else "No"),
    ]
    text = "\n".join(lines) + "\n"
    if not s.votequorum:
        return text
    if s.local_info is not None or s.local_info_error == NOT_EXIST:
        info = s.local_info or NodeVqInfo(node_id=s.local_nodeid, node_votes=0)
        blocked = " " if info.flags & INFO_QUORATE else "Activity blocked"
        vq_lines = [
            "",
            "Votequorum information",
            "----------------------",
            _label("Expected votes:", str(info.node_expected_votes)),
            _label("Highest expected:", str(info.highest_expected)),
            _label("Total votes:", str(info.total_votes)),
            _label("Quorum:", f"{info.quorum} {blocked}"),
            _label("Flags:", "".join(tok + " " for tok in flag_tokens(info.flags))),
        ]
        text += "\n".join(vq_lines) + "\n"
    text += format_membership(s.members, local_nodeid=s.local_nodeid, votequorum=True,
                              options=options)
    return text


# ---------------------------------------------------------------------- names
def parse_nodelist(keys: Mapping[str, str]) -> dict[int, NodelistEntry]:
    """Build node id -> entry from cmap ``nodelist.node.<i>.*`` keys.

    Entries without a valid ``nodeid`` are skipped; ``ring<k>_addr`` keys give the
    addresses in link order.  The first entry for a node id wins.
    """
    slots: dict[int, dict[str, str]] = {}
    for key, value in keys.items():
        parts = key.split(".")
        if len(parts) != 4 or parts[0] != "nodelist" or parts[1] != "node":
            continue
        if not parts[2].isdigit():
            continue
        slots.setdefault(int(parts[2]), {})[parts[3]] = value
    out: dict[int, NodelistEntry] = {}
    for pos in sorted(slots):
        fields = slots[pos]
        try:
            nodeid = int(fields.get("nodeid", ""), 0)
        except ValueError:
            continue
        links = sorted(
            (int(k[4:-5]), v) for k, v in fields.items()
            if k.startswith("ring") and k.endswith("_addr") and k[4:-5].isdigit()
        )
        entry = NodelistEntry(nodeid=nodeid, name=fields.get("name", ""),
                              addrs=tuple(v for _, v in links))
        out.setdefault(nodeid, entry)
    return out


def node_display_name(
    nodeid: int,
    nodelist: Mapping[int, NodelistEntry],
    *,
    ip: bool,
    all_addrs: bool,
    reverse_lookup: Callable[[str], str] = lambda addr: addr,
) -> str:
    """``node_name``: the Name column of one node.

    Name mode: the nodelist ``name`` if set (followed, with ``-a``, by the node's other
    addresses), else the reverse lookup of the first address.  IP mode (``-i``): the
    first address, or every address with ``-a``; entries are joined with ``", "``.
    """
    entry = nodelist.get(nodeid)
    addrs = entry.addrs if entry is not None else ()
    parts: list[str] = []
    start = 0
    if not ip and entry is not None and entry.name:
        parts.append(entry.name)
        start = 1
    count = len(addrs) if all_addrs else min(1, len(addrs))
    for addr in addrs[start:count]:
        parts.append(addr if ip else reverse_lookup(addr))
    return ", ".join(parts)


# ---------------------------------------------------------------------- JSON output
def info_to_json(info: NodeVqInfo) -> dict[str, Any]:
    """A ``NodeVqInfo`` as a JSON object (flags both as a number and as tokens)."""
    return {
        "node_id": info.node_id,
        "node_state": info.node_state,
        "node_votes": info.node_votes,
        "node_expected_votes": info.node_expected_votes,
        "highest_expected": info.highest_expected,
        "total_votes": info.total_votes,
        "quorum": info.quorum,
        "flags": info.flags,
        "flag_names": flag_tokens(info.flags),
        "qdevice_votes": info.qdevice_votes,
        "qdevice_name": info.qdevice_name,
    }


def membership_to_json(
    members: Sequence[MemberRow],
    *,
    local_nodeid: int,
    votequorum: bool,
    options: DisplayOptions,
) -> dict[str, Any]:
    """The membership block as JSON: ``members`` in display order and the ``qdevice`` row."""
    qdevice_column = votequorum and (display_qdevice(members) or options.machine_parsable)
    rows: list[dict[str, Any]] = []
    for m in sort_members(members, options.sort):
        row: dict[str, Any] = {"nodeid": m.nodeid, "name": m.name,
                               "local": m.nodeid == local_nodeid}
        if votequorum:
            row["votes"] = m.info.node_votes if m.info is not None else None
            row["qdevice"] = qdevice_cell(m.info.flags if m.info else 0) if qdevice_column else None
            row["info"] = info_to_json(m.info) if m.info is not None else None
        rows.append(row)
    qdevice: dict[str, Any] | None = None
    if votequorum and display_qdevice(members):
        first = members[0].info
        casting = bool(local_flags(members, local_nodeid) & INFO_QDEVICE_CAST_VOTE)
        qdevice = {
            "nodeid": QDEVICE_NODEID,
            "name": first.qdevice_name if first is not None else "",
            "votes": first.qdevice_votes if first is not None else 0,
            "casting_vote": casting,
        }
    return {"members": rows, "qdevice": qdevice}


def status_to_json(snapshot: StatusSnapshot, options: DisplayOptions) -> dict[str, Any]:
    """The ``--json`` object of ``-s`` (and of each ``-m`` event).

    Keys: ``date``, ``quorum_provider`` (null when not configured), ``nodes``,
    ``node_id``, ``ring_id`` ({rep, seq}; rep null without votequorum), ``ring`` (the
    text of the ``Ring ID:`` line), ``quorate``, ``votequorum`` (null without it: else
    expected_votes, highest_expected, total_votes, quorum, quorate, flags, flag_names,
    qdevice_votes, qdevice_name), ``members`` and ``qdevice`` (see
    ``membership_to_json``).
    """
    s = snapshot
    vq: dict[str, Any] | None = None
    if s.votequorum and s.local_info is not None:
        info = s.local_info
        vq = {
            "expected_votes": info.node_expected_votes,
            "highest_expected": info.highest_expected,
            "total_votes": info.total_votes,
            "quorum": info.quorum,
            "quorate": bool(info.flags & INFO_QUORATE),
            "flags": info.flags,
            "flag_names": flag_tokens(info.flags),
            "qdevice_votes": info.qdevice_votes,
            "qdevice_name": info.qdevice_name,
        }
    out: dict[str, Any] = {
        "date": s.date,
        "quorum_provider": s.quorum_provider,
        "nodes": len(s.members),
        "node_id": s.local_nodeid,
        "ring_id": {"rep": s.ring_rep if s.votequorum else None, "seq": s.ring_seq},
        "ring": format_ring_id(s.ring_rep, s.ring_seq, s.votequorum),
        "quorate": s.quorate,
        "votequorum": vq,
    }
    if s.votequorum:
        out.update(membership_to_json(s.members, local_nodeid=s.local_nodeid, votequorum=True,
                                      options=options))
    else:
        out.update({"members": [{"nodeid": m.nodeid, "name": m.name,
                                 "local": m.nodeid == s.local_nodeid}
                                for m in sort_members(s.members, options.sort)],
                    "qdevice": None})
    return out
