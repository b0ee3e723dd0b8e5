"""The handle table (libqb's hdb): never 0, check bits, reuse, references, threads."""

from __future__ import annotations

import threading

import pytest

from pyquorum.client._handles import HandleTable
from pyquorum.errors import CsErr, CsError


class Res:
    def __init__(self) -> None:
        self.released = 0

    def release(self) -> None:
        self.released += 1


class Other(Res):
    pass


def bad(fn: object, *args: object) -> None:
    assert callable(fn)
    with pytest.raises(CsError) as info:
        fn(*args)
    assert info.value.code == CsErr.CS_ERR_BAD_HANDLE


def test_handles_are_never_zero_and_carry_check_bits() -> None:
    table = HandleTable()
    handles = [table.create(Res()) for _ in range(50)]
    assert 0 not in handles
    assert len(set(handles)) == 50
    for index, h in enumerate(handles):
        assert h & 0xFFFFFFFF == index
        assert 0 < h >> 32 < 0xFFFFFFFF


def test_garbage_and_stale_handles_are_bad() -> None:
    table = HandleTable()
    h = table.create(Res())
    for garbage in (0, -1, 2**64, 0x123456789, h ^ (1 << 40), h + 1, "x", None, 1.5):
        bad(table.get, garbage, Res)
    bad(table.get, h | (0xFFFFFFFF << 32), Res)  # libqb's "no check" form is rejected
    bad(table.get, h, Other)  # a handle of another kind of resource
    assert table.get(h, Res) is not None
    table.put(h)


def test_destroy_marks_pending_and_releases_at_the_last_reference() -> None:
    table = HandleTable()
    res = Res()
    h = table.create(res)
    table.get(h, Res)          # e.g. a dispatch in progress
    table.destroy(h)           # finalize
    bad(table.get, h, Res)     # new lookups fail at once
    bad(table.destroy, h)
    assert res.released == 0   # the dispatch still holds a reference
    table.put(h)
    assert res.released == 1
    assert len(table) == 0


def test_slots_are_reused_with_a_fresh_check() -> None:
    table = HandleTable()
    first = table.create(Res())
    keep = table.create(Res())
    table.destroy(first)
    again = table.create(Res())
    assert again & 0xFFFFFFFF == first & 0xFFFFFFFF
    if again != first:  # the check is random: equal with probability 2**-31
        bad(table.get, first, Res)
    assert len(table) == 2
    table.destroy(again)
    table.destroy(keep)


def test_acquire_puts_on_exception() -> None:
    table = HandleTable()
    res = Res()
    h = table.create(res)
    with pytest.raises(RuntimeError), table.acquire(h, Res):
        table.destroy(h)
        raise RuntimeError
    assert res.released == 1


def test_concurrent_create_get_destroy() -> None:
    table = HandleTable()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        try:
            barrier.wait(5)
            for _ in range(200):
                res = Res()
                h = table.create(res)
                with table.acquire(h, Res) as got:
                    assert got is res
                table.destroy(h)
                assert res.released == 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert len(table) == 0
