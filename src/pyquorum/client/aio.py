"""asyncio clients: ``AsyncQuorumClient`` and ``AsyncVotequorumClient``.

Built on the same connection code as ``pyquorum.client.facade``: the event fd is
watched with ``loop.add_reader`` and dispatched (never blocking) in the loop thread;
requests run in a worker thread (``asyncio.to_thread``) because a quorum request waits
while a view change is agreed::

    async with AsyncQuorumClient() as client:
        print(await client.getquorate())
        await client.track()
        async for event in client.events():   # ends after Disconnected
            print(event)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Generic, Self, TypeVar

from pyquorum.client import quorum as q
from pyquorum.client import votequorum as vq
from pyquorum.client.events import Disconnected, Event
from pyquorum.client.facade import QuorumClient, VotequorumClient, _EventClient
from pyquorum.errors import CsError

__all__ = ["AsyncQuorumClient", "AsyncVotequorumClient"]

_DEFAULT_TRACK = q.CS_TRACK_CURRENT | q.CS_TRACK_CHANGES

C = TypeVar("C", bound=_EventClient)


class _AsyncEventClient(Generic[C]):
    """Connection life cycle and the event stream shared by both async clients."""

    def __init__(self, *, run_dir: str | os.PathLike[str] | None = None) -> None:
        self._run_dir = run_dir
        self._client: C | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_fd: int | None = None
        self._queue: asyncio.Queue[Event | None] | None = None

    def _make(self) -> C:
        raise NotImplementedError

    @property
    def sync(self) -> C:
        """The underlying synchronous client (raises RuntimeError before ``connect``)."""
        if self._client is None:
            raise RuntimeError("the client is not connected (use 'async with')")
        return self._client

    @property
    def handle(self) -> int:
        """The Corosync-shaped handle."""
        return self.sync.handle

    def fileno(self) -> int:
        """The event fd."""
        return self.sync.fileno()

    async def connect(self) -> Self:
        """Connect (in a worker thread); raises ``CsError`` (LIBRARY: no daemon)."""
        if self._client is None:
            self._client = await asyncio.to_thread(self._make)
            self._loop = asyncio.get_running_loop()
        return self

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def _stop_reader(self) -> None:
        if self._reader_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._reader_fd)
        self._reader_fd = None

    async def events(self) -> AsyncIterator[Event]:
        """The events in order; the stream ends after ``Disconnected`` (or when the
        client is closed).  One stream at a time per client: a new ``events()`` ends
        the previous one (e.g. left by ``break``)."""
        client = self.sync
        if self._queue is not None:
            self._stop_reader()
            self._queue.put_nowait(None)
        loop = asyncio.get_running_loop()
        self._loop = loop
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queue = queue

        def on_readable() -> None:
            if self._queue is not queue:
                return
            try:
                new = client.dispatch(q.CS_DISPATCH_ALL)
            except CsError:
                new = []  # finalized under us
                ended = True
            else:
                ended = client.disconnected or client.closed
            for event in new:
                queue.put_nowait(event)
            if ended:
                self._stop_reader()
                queue.put_nowait(None)

        if not (client.disconnected or client.closed):
            loop.add_reader(client.fileno(), on_readable)
            self._reader_fd = client.fileno()
        on_readable()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
                if isinstance(item, Disconnected):
                    return
        finally:
            if self._queue is queue:
                self._stop_reader()
                self._queue = None

    async def aclose(self) -> None:
        """Stop the event stream and finalize the handle (idempotent)."""
        self._stop_reader()
        if self._queue is not None:
            self._queue.put_nowait(None)
        if self._client is not None:
            self._client.close()


class AsyncQuorumClient(_AsyncEventClient[QuorumClient]):
    """asyncio face of ``QuorumClient`` (a V1 quorum handle)."""

    def _make(self) -> QuorumClient:
        return QuorumClient(run_dir=self._run_dir)

    @property
    def quorum_type(self) -> int:
        """``QUORUM_SET`` (1) when a quorum provider is configured, else 0."""
        return self.sync.quorum_type

    async def getquorate(self) -> bool:
        """Whether the cluster is quorate."""
        return await asyncio.to_thread(self.sync.getquorate)

    async def track(self, flags: int = _DEFAULT_TRACK) -> None:
        """``quorum_trackstart(flags)``; EXIST raises after the snapshot was queued."""
        await asyncio.to_thread(self.sync.track, flags)

    async def untrack(self) -> None:
        """``quorum_trackstop``."""
        await asyncio.to_thread(self.sync.untrack)


class AsyncVotequorumClient(_AsyncEventClient[VotequorumClient]):
    """asyncio face of ``VotequorumClient``."""

    def _make(self) -> VotequorumClient:
        return VotequorumClient(run_dir=self._run_dir)

    async def getinfo(self, nodeid: int = 0) -> vq.VotequorumInfo:
        """Votes and flags of a node (0: the local node)."""
        return await asyncio.to_thread(self.sync.getinfo, nodeid)

    async def setexpected(self, expected_votes: int) -> None:
        """Set the cluster's expected votes."""
        await asyncio.to_thread(self.sync.setexpected, expected_votes)

    async def setvotes(self, nodeid: int, votes: int) -> None:
        """Set a node's votes."""
        await asyncio.to_thread(self.sync.setvotes, nodeid, votes)

    async def track(self, flags: int = _DEFAULT_TRACK, context: int = 0) -> None:
        """``votequorum_trackstart(context, flags)``."""
        await asyncio.to_thread(self.sync.track, flags, context)

    async def untrack(self) -> None:
        """``votequorum_trackstop``."""
        await asyncio.to_thread(self.sync.untrack)
