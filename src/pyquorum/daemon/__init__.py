"""pyquorum.daemon: the asyncio shell around ``NodeEngine`` (``pyquorumd``).

Modules: ``main`` (command line, start-up checks, daemonizing), ``driver`` (the one
pump: engine events, datagrams, one timer; signals; stall warning), ``transport``
(UDP), ``ipcserver`` (the Unix-socket server) with its pure half ``ipcproto``
(admission, request/response/event mapping, framing), ``cmap`` (the read-only key
view), ``storage`` (durable ``StoredState``), ``authkey``, ``localnode`` and ``logsys``
(Corosync-style logging).
"""
