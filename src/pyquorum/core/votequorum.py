"""votequorum: the vote arithmetic and state of Corosync's provider (spec section 4).

INTERFACE CONTRACT (implementation in progress). Sans-IO: no clock, no files; time is
``now_ms``; durable state goes out as ``BarrierPersisted`` events.

The engine drives one ``VoteQuorum`` per node exactly as Corosync's sync drives it:

    vq.sync_init(transitional, members, ring, now_ms)     # a new view, before nodeinfo
    for info in infos_of_all_members_in_install_order:
        vq.deliver_nodeinfo(info, now_ms)                 # NODEINFO in total order
    vq.sync_activate(now_ms)                              # always emits QuorumNotified

Outside a sync, ordered messages arrive via ``deliver_nodeinfo``/``deliver_reconfigure``
(and the qdevice ones in issue 4), and ``handle_timer`` runs the LMS window.
Events are pulled with ``next_event()``.
"""
